"""From config nodes to sources, checked splits, datasets: what the entry points call."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from detector.errors import ConfigError
from detector.config import instantiate_node
from detector.data.dataset import DetectionDataset
from detector.errors import DataError
from detector.data.sources import CocoJsonSource, YoloSource
from detector.data.transforms import build_train_pipeline, build_val_pipeline
from detector.data.index import SplitIndex
from detector.data.verify import verify_split


def build_source(data_cfg: DictConfig) -> YoloSource | CocoJsonSource:
    """The dataset source a ``data`` config describes (the shapes dataset is generated here)."""
    return instantiate_node(data_cfg, "data")


def load_split(
    source: YoloSource | CocoJsonSource,
    split: str,
    report_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> SplitIndex:
    """Check (or load the cached check of) one split, log its one-line summary and, when it has
    problems and ``report_dir`` is given, write ``<split>_problems.txt`` there."""
    index = verify_split(source.split(split))
    line = index.summary()
    if index.problems and report_dir is not None:
        report = index.write_report(Path(report_dir) / f"{split}_problems.txt")
        line += f" (report: {report})"
    log(line)
    if len(index) == 0:
        raise DataError(f"{split}: no usable images ({index.num_listed} listed, all with problems)")
    return index


def build_augment(augment_cfg: DictConfig) -> dict[str, Any]:
    """Instantiate the albumentations transforms of an ``augment`` config."""
    return instantiate_node(augment_cfg, "augment")


def train_dataset(
    index: SplitIndex,
    augment_cfg: DictConfig,
    imgsz: int,
    seed: int,
    epochs: int | None,
    cache_images: bool = False,
) -> DetectionDataset:
    """The training dataset: the configured pipeline, mosaic off for the last ``close_mosaic`` of
    ``epochs`` (``None``: mosaic never closes)."""
    augment = build_augment(augment_cfg)
    close = int(augment.get("close_mosaic", 0)) if epochs is not None else 0
    try:
        pipeline = build_train_pipeline(augment, imgsz)
    except ValueError as err:  # transforms that cannot work together: a configuration mistake
        raise ConfigError(f"augment: {err}") from None
    return DetectionDataset(
        index,
        pipeline,
        imgsz,
        seed=seed,
        cache_images=cache_images,
        close_mosaic_epoch=max(epochs - close, 0) if epochs is not None and close > 0 else None,
    )


def val_dataset(index: SplitIndex, imgsz: int, cache_images: bool = False) -> DetectionDataset:
    """The validation dataset: letterbox only."""
    return DetectionDataset(index, build_val_pipeline(imgsz), imgsz, cache_images=cache_images)
