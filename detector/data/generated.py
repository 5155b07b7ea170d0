"""The folder machinery of the built-in generated datasets (``shapes``, ``crowd``).

A generated dataset is a renderer (one image and its labels from a seeded random generator) plus
a :class:`GeneratedDataset` that names it. This module turns that into a folder in the
Ultralytics YOLO layout::

    <root>/data.yaml              path, train, val, names
    <root>/images/{train,val}/000000.jpg
    <root>/labels/{train,val}/000000.txt   "<class> <cx> <cy> <w> <h>", normalised, 6 decimals
    <root>/generation.json        the parameters (and format version) that made the folder

:func:`ensure_generated` generates into a temporary sibling folder and renames it into place, so
a crash never leaves a folder that looks complete; a folder whose generation.json records the
same parameters is reused untouched. Every image has its own generator seeded by
``(seed, split, index)``, so the files are the same whatever the number of threads.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import yaml

from detector.runs import write_text_atomic

__all__ = ["GeneratedDataset", "Rendering", "ensure_generated", "image_rng", "label_text", "write_images"]

log = logging.getLogger(__name__)

SPLITS: tuple[tuple[str, int], ...] = (("train", 0), ("val", 1))
IMAGE_EXT = ".jpg"
_JPEG_QUALITY = 95
_MAX_THREADS = 4
_MIN_IMAGES_FOR_THREADS = 64
_CHUNK = 32
_ROOT_ENTRIES = frozenset({"data.yaml", "images", "labels", "generation.json"})


class Rendering(Protocol):
    """What a renderer returns: at least the image and its labels."""

    image: np.ndarray  # [H, W, 3] uint8 RGB
    boxes: np.ndarray  # [N, 4] int64 xyxy pixels, x2/y2 exclusive
    classes: np.ndarray  # [N] int64 class ids


@dataclass(frozen=True)
class GeneratedDataset:
    """One built-in dataset: its name (messages), the module recorded in generation.json, its
    class names, the version of its rendering (bump it to regenerate old folders) and its renderer."""

    name: str
    generator: str
    names: tuple[str, ...]
    format_version: int
    render: Callable[[np.random.Generator, int], Rendering]
    min_imgsz: int = 32


def image_rng(seed: int, split_id: int, index: int) -> np.random.Generator:
    """The generator for one image: independent of every other image and of global state."""
    return np.random.default_rng([seed, split_id, index])


def label_text(boxes: np.ndarray, classes: np.ndarray, imgsz: int) -> str:
    """YOLO label lines for pixel boxes: ``<class> <cx> <cy> <w> <h>`` normalised."""
    lines = []
    for (x1, y1, x2, y2), cls in zip(boxes.tolist(), classes.tolist()):
        cx, cy, w, h = (x1 + x2) / 2 / imgsz, (y1 + y2) / 2 / imgsz, (x2 - x1) / imgsz, (y2 - y1) / imgsz
        lines.append(f"{cls} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
    return "".join(lines)


def write_images(
    dataset: GeneratedDataset, root: Path, split: str, split_id: int, indices: range, seed: int, imgsz: int
) -> None:
    """Render and write the images and label files of one split for ``indices``."""
    for index in indices:
        rendered = dataset.render(image_rng(seed, split_id, index), imgsz)
        bgr = cv2.cvtColor(rendered.image, cv2.COLOR_RGB2BGR)  # cv2 writes BGR
        ok, encoded = cv2.imencode(IMAGE_EXT, bgr, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"could not encode {dataset.name} image {split}/{index:06d}{IMAGE_EXT}")
        (root / "images" / split / f"{index:06d}{IMAGE_EXT}").write_bytes(encoded.tobytes())
        label = label_text(rendered.boxes, rendered.classes, imgsz)
        (root / "labels" / split / f"{index:06d}.txt").write_text(label)


def _worker_count(total: int) -> int:
    """Threads to use: cv2 and numpy release the GIL for the heavy work, so threads scale."""
    if total < _MIN_IMAGES_FOR_THREADS:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(_MAX_THREADS, cpus))


def _generate(dataset: GeneratedDataset, root: Path, counts: dict[str, int], seed: int, imgsz: int) -> None:
    """Write every split's images and labels under ``root`` (which must not exist yet)."""
    jobs: list[tuple[str, int, range]] = []
    for split, split_id in SPLITS:
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        jobs += [(split, split_id, range(i, min(i + _CHUNK, counts[split]))) for i in range(0, counts[split], _CHUNK)]
    workers = _worker_count(sum(counts.values()))
    if workers == 1:
        for split, split_id, indices in jobs:
            write_images(dataset, root, split, split_id, indices, seed, imgsz)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=dataset.name) as pool:
        futures = [pool.submit(write_images, dataset, root, *job, seed, imgsz) for job in jobs]
        for future in futures:
            future.result()


def _data_yaml(dataset: GeneratedDataset, root: Path) -> str:
    """The Ultralytics data.yaml text for a folder that lives (or will live) at ``root``."""
    content = {
        "path": str(root),
        "train": "images/train",
        "val": "images/val",
        "names": dict(enumerate(dataset.names)),
    }
    return yaml.safe_dump(content, sort_keys=False)


def _record(dataset: GeneratedDataset, num_train: int, num_val: int, imgsz: int, seed: int) -> dict[str, object]:
    """What generation.json holds: everything that decides the folder's content."""
    return {
        "generator": dataset.generator,
        "format_version": dataset.format_version,
        "num_train": num_train,
        "num_val": num_val,
        "imgsz": imgsz,
        "seed": seed,
        "names": list(dataset.names),
        "image_ext": IMAGE_EXT,
    }


def _count_files(folder: Path, suffix: str) -> int:
    """Number of files in ``folder`` ending with ``suffix`` (-1 when it is not a folder)."""
    try:
        with os.scandir(folder) as entries:
            return sum(1 for e in entries if e.name.endswith(suffix) and e.is_file())
    except OSError:
        return -1


def _is_current(root: Path, record: dict[str, object]) -> bool:
    """True when ``root`` is a complete folder made with exactly ``record``."""
    try:
        found = json.loads((root / "generation.json").read_text())
    except (OSError, ValueError):
        return False
    if found != record or not (root / "data.yaml").is_file():
        return False
    for split, _ in SPLITS:
        expected = record[f"num_{split}"]
        images = _count_files(root / "images" / split, IMAGE_EXT)
        labels = _count_files(root / "labels" / split, ".txt")
        if images != expected or labels != expected:
            return False
    return True


def _check_replaceable(dataset: GeneratedDataset, root: Path) -> None:
    """Refuse to replace anything that is not (the remains of) a generated folder."""
    if not root.exists():
        return
    if not root.is_dir():
        raise NotADirectoryError(f"{dataset.name} dataset root {root} exists and is not a folder")
    foreign = sorted(p.name for p in root.iterdir() if p.name not in _ROOT_ENTRIES and not p.name.endswith(".cache"))
    if foreign:
        raise FileExistsError(
            f"refusing to replace {root}: it holds entries the {dataset.name} generator did not write "
            f"({', '.join(foreign[:5])}); point ensure_{dataset.name} at an empty or new folder"
        )


def _install(staging: Path, root: Path, record: dict[str, object]) -> None:
    """Move the finished ``staging`` folder to ``root``, replacing an old folder there."""
    if _is_current(root, record):  # another process finished the same folder meanwhile
        shutil.rmtree(staging)
        return
    old: Path | None = None
    if root.exists():
        old = root.with_name(f".{root.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(root, old)
    try:
        os.rename(staging, root)
    except OSError:
        if old is not None and not root.exists():
            os.rename(old, root)
            old = None
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _check_params(dataset: GeneratedDataset, num_train: int, num_val: int, imgsz: int, seed: int) -> None:
    """One clear error for an argument that cannot make a dataset."""
    checks = (
        ("num_train", num_train, 1),
        ("num_val", num_val, 1),
        ("imgsz", imgsz, dataset.min_imgsz),
        ("seed", seed, 0),
    )
    for name, value, least in checks:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"ensure_{dataset.name}: {name} must be an integer >= {least}, got {value!r}")


def ensure_generated(
    dataset: GeneratedDataset, root: str | os.PathLike, num_train: int, num_val: int, imgsz: int, seed: int
) -> Path:
    """Generate ``dataset`` into root unless root/generation.json already records exactly these
    parameters (then reuse it untouched); return the path of root/data.yaml.

    Generation happens in a temporary sibling folder that replaces ``root`` only once it is
    complete. An existing ``root`` is replaced only if it holds nothing but generated files.
    If the folder was moved since it was made, only its data.yaml is rewritten.
    """
    _check_params(dataset, num_train, num_val, imgsz, seed)
    num_train, num_val, imgsz, seed = int(num_train), int(num_val), int(imgsz), int(seed)
    root = Path(root).expanduser().resolve()
    record = _record(dataset, num_train, num_val, imgsz, seed)
    data_yaml = root / "data.yaml"
    if _is_current(root, record):
        if data_yaml.read_text() != _data_yaml(dataset, root):
            write_text_atomic(data_yaml, _data_yaml(dataset, root))
        log.debug("reusing %s dataset at %s", dataset.name, root)
        return data_yaml
    _check_replaceable(dataset, root)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        log.debug("generating %s dataset %s into %s", dataset.name, record, staging)
        _generate(dataset, staging, {"train": num_train, "val": num_val}, seed, imgsz)
        (staging / "data.yaml").write_text(_data_yaml(dataset, root))
        (staging / "generation.json").write_text(json.dumps(record, indent=2) + "\n")  # last: marks it complete
        _install(staging, root, record)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return data_yaml
