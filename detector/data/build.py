"""From a source and instantiated augmentation to checked splits and datasets: what the tasks call.

The tasks instantiate the config's ``data`` node (a source) and ``augment`` node (its transforms),
and pass the results here; nothing below takes a config.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import albumentations as A

from detector.data.dataset import DetectionDataset
from detector.data.index import SplitIndex
from detector.data.mosaic import Mosaic
from detector.data.sources import CocoJsonSource, YoloSource
from detector.data.transforms import Pipeline, build_train_pipeline, build_val_pipeline
from detector.data.verify import verify_split
from detector.errors import ConfigError, DataError
from detector.types import ProgressCallback


@dataclass
class AugmentSettings:
    """An instantiated ``augment`` config (``AugmentConfig`` in :mod:`detector.config.schemas`, the
    one home of the defaults): the transforms built, each ``None`` when left out, and the numbers.

    Make it with ``AugmentSettings(**instantiate_node(cfg.augment, "augment"))``."""

    mosaic: Mosaic | A.Mosaic | None  # instead of the letterbox
    affine: A.Affine | None
    color: A.BasicTransform | None
    flipud: A.BasicTransform | None
    fliplr: A.BasicTransform | None
    extra: dict[str, A.BasicTransform]  # applied last, in their order
    mixup: float  # probability of blending with a second augmented sample
    close_mosaic: int  # the last N epochs train without mosaic
    min_visibility: float  # boxes keeping less of their area inside the image are dropped
    min_size: float  # boxes narrower or lower than this (pixels) are dropped
    mosaic_window: int | None  # partners from its batch (0), the N positions before a sample, or (None) 8 x batch


def load_split(
    source: YoloSource | CocoJsonSource,
    split: str,
    report_dir: Path | None = None,
    log: Callable[[str], None] = print,
    progress: ProgressCallback | None = None,
) -> SplitIndex:
    """Check (or load the cached check of) one split, log its one-line summary and, when it has
    problems and ``report_dir`` is given, write ``<split>_problems.txt`` there. ``progress(done,
    total)`` hears of the images checked (see :func:`detector.data.verify.verify_split`)."""
    index = verify_split(source.split(split), progress=progress)
    line = index.summary()
    if index.problems and report_dir is not None:
        report = index.write_report(Path(report_dir) / f"{split}_problems.txt")
        line += f" (report: {report})"
    log(line)
    if len(index) == 0:
        raise DataError(f"{split}: no usable images ({index.num_listed} listed, all with problems)")
    return index


def train_pipeline(augment: AugmentSettings, imgsz: int) -> Pipeline:
    """The training pipeline of ``augment``; transforms that cannot work together are a
    configuration mistake (:class:`ConfigError` naming ``augment``)."""
    try:  # on copies: a pipeline owns its transforms (it sets an albumentations.Mosaic's p)
        return build_train_pipeline(copy.deepcopy(vars(augment)), imgsz)
    except ValueError as err:
        raise ConfigError(f"augment: {err}") from None


def train_dataset(
    index: SplitIndex,
    augment: AugmentSettings,
    imgsz: int,
    seed: int,
    epochs: int | None,
    cache_images: bool = False,
) -> DetectionDataset:
    """The training dataset: the pipeline of ``augment``, mosaic off for the last ``close_mosaic``
    of ``epochs`` (``None``: mosaic never closes)."""
    close = augment.close_mosaic if epochs is not None else 0
    return DetectionDataset(
        index,
        train_pipeline(augment, imgsz),
        imgsz,
        seed=seed,
        cache_images=cache_images,
        close_mosaic_epoch=max(epochs - close, 0) if epochs is not None and close > 0 else None,
        partner_window=augment.mosaic_window,
    )


def val_dataset(index: SplitIndex, imgsz: int, cache_images: bool = False) -> DetectionDataset:
    """The validation dataset: letterbox only."""
    return DetectionDataset(index, build_val_pipeline(imgsz), imgsz, cache_images=cache_images)
