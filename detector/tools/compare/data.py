"""The data of a comparison as Ultralytics' validator reads it, and where it came from."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from detector.data.sources import CocoJsonSource, YoloSource
from detector.errors import DataError
from detector.runs import write_text_atomic


def ultralytics_can_read(source: Any) -> bool:
    """Whether Ultralytics can read the data (YOLO text labels; not COCO JSON)."""
    return isinstance(source, YoloSource)


def ultralytics_data_yaml(source: Any, names: Sequence[str], path: Path) -> Path | None:
    """Write a data.yaml Ultralytics reads exactly as our source reads the data (absolute ``path``
    and split entries; Ultralytics would resolve a relative ``path`` against the working directory,
    ours against the yaml's folder). ``None`` for COCO JSON data, which their validator cannot read."""
    if not ultralytics_can_read(source):
        return None
    content: dict[str, Any] = {"path": str(source.root)}
    for split in ("train", "val", "test"):
        try:
            entries = source.entries(split)
        except DataError:
            continue
        content[split] = [str(e) for e in entries]
    content["names"] = dict(enumerate(names))
    write_text_atomic(path, yaml.safe_dump(content, sort_keys=False))
    return path


def data_where(source: Any, split: str) -> str:
    """Where a split comes from, for the report: the data.yaml, or the COCO JSON file."""
    if isinstance(source, YoloSource):
        return source.where
    if isinstance(source, CocoJsonSource):
        return str(source.splits.get(split, (None, None))[0])
    return type(source).__name__
