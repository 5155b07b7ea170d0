"""Dataset sources: where a split's images are and what their raw labels say.

A source resolves a split name (``train``, ``val``, ``test``) into a :class:`SplitSpec`, which
the dataset doctor (:mod:`detector.data.verify`) checks and turns into a compact index. Every
source yields the same thing, so everything downstream is format-agnostic.

- :class:`YoloSource`: an Ultralytics-style ``data.yaml`` (or the same keys given inline).
- :class:`CocoJsonSource`: COCO instances JSON files plus image folders.
- :class:`ShapesSource`, :class:`CrowdSource`: the built-in generated datasets (YOLO sources
  whose folder is generated on first use, :class:`GeneratedSource`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detector.datafiles import IMAGE_SUFFIXES, coco_categories, read_coco_json, read_yolo_yaml
from detector.errors import DataError

if TYPE_CHECKING:
    from detector.data.generated import GeneratedDataset


@dataclass
class CocoAnnotation:
    """One raw COCO annotation, as written in the JSON (``bbox`` is ``[x, y, w, h]`` in pixels)."""

    ann_id: Any
    category_id: Any
    bbox: Any
    iscrowd: Any = 0


@dataclass
class SplitSpec:
    """One split of one dataset, before any file is read.

    ``images`` are absolute paths. For YOLO text labels ``label_files[i]`` is the label path of
    ``images[i]`` (it may not exist: a background image). For COCO, ``coco_annotations[i]`` holds
    the raw annotations of ``images[i]``, ``coco_sizes[i]`` the JSON's ``(height, width)`` and
    ``category_ids`` maps COCO category ids to contiguous classes.
    """

    name: str
    source: str  # where it came from, for messages and the cache key: a data.yaml, a JSON file
    names: list[str]
    images: list[Path]
    label_files: list[Path] | None = None
    coco_annotations: list[list[CocoAnnotation]] | None = None
    coco_sizes: list[tuple[int, int]] | None = None
    category_ids: dict[Any, int] = field(default_factory=dict)
    image_ids: list[int] | None = None

    @property
    def kind(self) -> str:
        return "coco" if self.coco_annotations is not None else "yolo"


def image_to_label_path(image: Path) -> Path:
    """The Ultralytics convention: the last ``images`` folder in the path becomes ``labels``, suffix ``.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")  # no images/ folder: label beside the image


def list_images(entry: Path, where: str) -> list[Path]:
    """Image paths of a split entry: a folder (searched recursively), a ``.txt`` list of paths, or one image."""
    if entry.is_dir():
        return sorted(p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if entry.suffix == ".txt" and entry.is_file():
        base = entry.parent
        lines = [line.strip() for line in entry.read_text().splitlines() if line.strip()]
        return [(base / line).resolve() if not os.path.isabs(line) else Path(line) for line in lines]
    if entry.suffix.lower() in IMAGE_SUFFIXES and entry.is_file():
        return [entry]
    raise DataError(f"{where}: {entry} does not exist (expected an image folder, a .txt list of images, or an image)")


class YoloSource:
    """An Ultralytics-style dataset: ``file`` (a ``data.yaml``) or the same keys given inline.

    Keys: ``path`` (root, relative to the yaml's folder), ``train`` / ``val`` / ``test`` (a folder, a
    ``.txt`` list of images, or a list of those, relative to ``path``), ``names`` (list or mapping).
    Labels are found by replacing the last ``images`` folder of an image path with ``labels``.
    ``download`` is the text shown when the dataset is missing.
    """

    def __init__(
        self,
        names: Sequence[str],
        num_classes: int,
        file: str | None = None,
        path: str | None = None,
        train: Any = None,
        val: Any = None,
        test: Any = None,
        download: str | None = None,
    ) -> None:
        self.names = list(names)
        self.num_classes = int(num_classes)
        self.download = download
        if file is not None:
            spec = read_yolo_yaml(file)
            self.where = str(Path(file).resolve())
            base = Path(file).resolve().parent
            root = base / spec["path"] if spec.get("path") else base
            self.splits = {k: spec.get(k) for k in ("train", "val", "test")}
        else:
            if path is None:
                raise DataError("data: give either 'file' (a data.yaml) or 'path' with 'train' / 'val'")
            root = Path(path).expanduser()
            self.where = str(root.resolve())
            self.splits = {"train": train, "val": val, "test": test}
        self.root = root.resolve()

    def entries(self, name: str) -> list[Path]:
        """The folders / ``.txt`` lists / images a split names, as absolute paths."""
        entries = self.splits.get(name)
        if entries is None:
            raise DataError(f"{self.where}: no '{name}' split defined")
        if not self.root.exists():
            hint = f". To get it: {self.download}" if self.download else ""
            raise DataError(f"dataset not found at {self.root}{hint}")
        entries = [entries] if isinstance(entries, (str, os.PathLike)) else list(entries)
        return [(self.root / str(entry)).resolve() for entry in entries]

    def split(self, name: str) -> SplitSpec:
        entries = self.entries(name)
        images: list[Path] = []
        for entry in entries:
            images += list_images(entry, f"{self.where} [{name}]")
        if not images:
            raise DataError(f"{self.where} [{name}]: no images found under {', '.join(map(str, entries))}")
        return SplitSpec(
            name=name,
            source=self.where,
            names=self.names,
            images=images,
            label_files=[image_to_label_path(p) for p in images],
        )


class CocoJsonSource:
    """COCO instances JSON files plus image folders, one pair per split.

    Category ids are remapped to contiguous classes in the order of their ids; the names are
    the categories' names. Crowd annotations (``iscrowd: 1``) are kept as such, so that training
    can skip them and evaluation can ignore detections on them.
    """

    def __init__(
        self,
        names: Sequence[str],
        num_classes: int,
        train_json: str | None = None,
        train_images: str | None = None,
        val_json: str | None = None,
        val_images: str | None = None,
        test_json: str | None = None,
        test_images: str | None = None,
        download: str | None = None,
    ) -> None:
        self.names = list(names)
        self.num_classes = int(num_classes)
        self.download = download
        self.splits = {
            "train": (train_json, train_images),
            "val": (val_json, val_images),
            "test": (test_json, test_images),
        }

    def split(self, name: str) -> SplitSpec:
        json_path, image_dir = self.splits.get(name, (None, None))
        if json_path is None:
            raise DataError(f"data: no '{name}' split: set data.{name}_json and data.{name}_images")
        if image_dir is None:
            raise DataError(f"data.{name}_images is not set (the folder holding the images of {json_path})")
        content = read_coco_json(json_path, self.download)
        folder = Path(image_dir).expanduser().resolve()
        if not folder.is_dir():
            hint = f". To get it: {self.download}" if self.download else ""
            raise DataError(f"image folder not found: {folder}{hint}")
        categories = coco_categories(content, json_path)
        by_image: dict[Any, list[CocoAnnotation]] = {}
        for ann in content.get("annotations", []):
            if not isinstance(ann, dict) or "image_id" not in ann:
                continue  # reported by the doctor through the image it belongs to, when it has one
            by_image.setdefault(ann["image_id"], []).append(
                CocoAnnotation(ann.get("id"), ann.get("category_id"), ann.get("bbox"), ann.get("iscrowd", 0))
            )
        images, annotations, sizes, ids = [], [], [], []
        for img in content.get("images", []):
            images.append(folder / str(img.get("file_name", "")))
            annotations.append(by_image.get(img.get("id"), []))
            sizes.append((int(img.get("height", 0) or 0), int(img.get("width", 0) or 0)))
            ids.append(img.get("id"))
        if not images:
            raise DataError(f"{json_path}: no images listed")
        int_ids = ids if all(isinstance(i, int) for i in ids) else None
        return SplitSpec(
            name=name,
            source=str(Path(json_path).resolve()),
            names=self.names,
            images=images,
            coco_annotations=annotations,
            coco_sizes=sizes,
            category_ids={cid: i for i, (cid, _) in enumerate(categories)},
            image_ids=int_ids,
        )


class GeneratedSource(YoloSource):
    """A built-in generated dataset: generated into ``root`` on first use and reused while its
    generation.json records the same parameters (see :mod:`detector.data.generated`). A subclass
    names the dataset in :meth:`dataset` (imported there, so reading a config loads no OpenCV)."""

    def __init__(
        self,
        names: Sequence[str],
        num_classes: int,
        root: str,
        num_train: int,
        num_val: int,
        imgsz: int,
        seed: int = 0,
    ) -> None:
        from detector.data.generated import ensure_generated

        dataset = self.dataset()
        if list(names) != list(dataset.names):
            raise DataError(
                f"the {dataset.name} dataset has the classes {list(dataset.names)}; data.names says {list(names)}"
            )
        file = ensure_generated(dataset, Path(root).expanduser(), num_train, num_val, imgsz, seed)
        super().__init__(names, num_classes, file=str(file))

    @staticmethod
    def dataset() -> GeneratedDataset:
        raise NotImplementedError


class ShapesSource(GeneratedSource):
    """The built-in dataset of flat shapes (see :mod:`detector.data.shapes`)."""

    @staticmethod
    def dataset() -> GeneratedDataset:
        from detector.data.shapes import DATASET

        return DATASET


class CrowdSource(GeneratedSource):
    """The built-in small-object dataset: crowds of small objects over textured backgrounds
    (see :mod:`detector.data.crowd`)."""

    @staticmethod
    def dataset() -> GeneratedDataset:
        from detector.data.crowd import DATASET

        return DATASET
