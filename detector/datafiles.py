"""The dataset files a configuration names, read with one-line errors: Ultralytics ``data.yaml``
files and COCO instances JSON files, parsed once per modification (cached), and the class names
that the data configs interpolate (the ``dataset_names`` resolver). Below both the configuration
and the data package: it imports neither."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from detector.errors import DataError


def data_dir() -> Path:
    """Where datasets live: ``$DETECTOR_DATA``, or the repository's ``data/`` folder."""
    return Path(os.environ.get("DETECTOR_DATA") or Path(__file__).resolve().parents[1] / "data")


IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".dng", ".mpo", ".pfm"})


def parse_names(names: Any, where: str) -> list[str]:
    """Class names from a list or a ``{index: name}`` mapping with contiguous indices from 0."""
    if isinstance(names, Mapping):
        try:
            indexed = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError) as err:
            raise DataError(f"{where}: names keys must be class indices, got {list(names)[:5]}") from err
        if sorted(indexed) != list(range(len(indexed))):
            raise DataError(f"{where}: names indices must be 0..{len(indexed) - 1} without gaps")
        return [indexed[i] for i in range(len(indexed))]
    if isinstance(names, Sequence) and not isinstance(names, str) and len(names) > 0:
        return [str(n) for n in names]
    raise DataError(f"{where}: 'names' must be a non-empty list or an {{index: name}} mapping")


@lru_cache(maxsize=32)
def _read_yaml_cached(path: str, mtime_ns: int) -> dict[str, Any]:
    with open(path) as f:
        content = yaml.safe_load(f)
    if not isinstance(content, dict):
        raise DataError(f"{path}: not a YAML mapping")
    return content


def read_yolo_yaml(file: str | os.PathLike) -> dict[str, Any]:
    """Parse an Ultralytics ``data.yaml``; one-line errors for a missing or malformed file."""
    path = Path(file).expanduser()
    if not path.is_file():
        raise DataError(f"data.yaml not found: {path}")
    try:
        content = _read_yaml_cached(str(path.resolve()), path.stat().st_mtime_ns)
    except yaml.YAMLError as err:
        raise DataError(f"{path}: invalid YAML ({str(err).splitlines()[0]})") from err
    if "names" not in content:
        raise DataError(f"{path}: no 'names' key")
    if not any(content.get(k) for k in ("train", "val")):
        raise DataError(f"{path}: needs a 'train' or 'val' split")
    return content


@lru_cache(maxsize=8)
def _read_json_cached(path: str, mtime_ns: int) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)


def read_coco_json(file: str | os.PathLike, download: str | None = None) -> dict[str, Any]:
    path = Path(file).expanduser()
    if not path.is_file():
        hint = f". To get it: {download}" if download else ""
        raise DataError(f"COCO JSON not found: {path}{hint}")
    try:
        content = _read_json_cached(str(path.resolve()), path.stat().st_mtime_ns)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: invalid JSON ({err})") from err
    if not isinstance(content, dict) or "images" not in content or "categories" not in content:
        raise DataError(f"{path}: not a COCO instances file (needs 'images' and 'categories')")
    return content


def coco_categories(content: dict[str, Any], where: Any) -> list[tuple[Any, str]]:
    """``(category id, name)`` pairs sorted by id: the order of the contiguous classes."""
    try:
        cats = sorted(((c["id"], str(c["name"])) for c in content["categories"]), key=lambda c: c[0])
    except (KeyError, TypeError) as err:
        raise DataError(f"{where}: every category needs an 'id' and a 'name'") from err
    if not cats:
        raise DataError(f"{where}: no categories")
    return cats


def dataset_names(kind: str, file: str) -> list[str]:
    """Class names read from a dataset file: ``yolo`` (a data.yaml) or ``coco`` (an instances JSON).
    Registered as the config resolver ``${dataset_names:yolo,${.file}}``."""
    if file is None or str(file) == "???":
        key = "data.file=/path/to/data.yaml" if kind == "yolo" else "data.train_json=/path/to/instances.json"
        raise DataError(f"no dataset file given: set {key}")
    if kind == "yolo":
        return parse_names(read_yolo_yaml(file)["names"], str(file))
    if kind == "coco":
        return [name for _, name in coco_categories(read_coco_json(file), file)]
    raise DataError(f"dataset_names: unknown kind {kind!r} (yolo or coco)")
