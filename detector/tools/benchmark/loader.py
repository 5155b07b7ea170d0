"""The loader figure: our training loader and Ultralytics' on the same 'train' split, both with
the full training augmentation, in images per second (fresh workers for every measurement)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from detector.config.schemas import BenchLoaderConfig
from detector.data.loader import build_loader
from detector.errors import ConfigError
from detector.interop import ultralytics as ul
from detector.tools.benchmark.figure import Figure
from detector.tools.timing import Alternate, Measure, clock


@dataclass
class TimedLoader:
    """A loader, how to count the images of one of its batches, and how to end its workers."""

    loader: Iterable[Any]
    count: Callable[[Any], int]
    stop: Callable[[], None]


def images_per_second(
    loader: Iterable[Any], count: Callable[[Any], int], warmup: int, batches: int, stop: Callable[[], None]
) -> float:
    """Throughput of one pass: ``warmup`` untimed batches, then ``batches`` timed ones; ``stop`` ends the workers."""
    iterator = iter(loader)
    try:
        for _ in range(warmup):
            next(iterator)
        images, start = 0, clock()
        for _ in range(batches):
            images += count(next(iterator))
        return images / (clock() - start)
    finally:
        del iterator  # a torch loader iterator shuts its workers down when released
        stop()


def training_loaders(
    dataset: Dataset, data_yaml: str | Path, imgsz: int, batch: int, workers: int, seed: int = 0
) -> dict[str, TimedLoader]:
    """Our training loader over ``dataset`` (our training dataset of the 'train' split) and
    Ultralytics' over the same split of ``data_yaml`` (with :data:`detector.interop.ultralytics.TRAIN_AUGMENT`),
    keyed ``ours`` and ``ultralytics``. Building Ultralytics' loader imports ultralytics (and its
    process-wide settings)."""
    ours = build_loader(dataset, batch, shuffle=True, workers=workers, seed=seed)
    theirs = ul.ultralytics_train_loader(data_yaml, imgsz, batch, workers, seed=seed)
    return {
        "ours": TimedLoader(ours, lambda b: b.images.shape[0], lambda: None),
        "ultralytics": TimedLoader(theirs, lambda b: b["img"].shape[0], theirs.reset),
    }


def measure(c: BenchLoaderConfig, dataset: Dataset, data_yaml: str | Path, seed: int, turns: Alternate) -> Figure:
    """Images per second of ``c.batches`` batches after ``c.warmup`` untimed ones, per repeat."""
    loaders = training_loaders(dataset, data_yaml, c.imgsz, c.batch, c.workers, seed=seed)
    batches = len(loaders["ours"].loader)  # type: ignore[arg-type]
    if batches < c.warmup + c.batches:
        for timed in loaders.values():
            timed.stop()
        raise ConfigError(f"an epoch has {batches} batches: loader.warmup + loader.batches must not exceed it")

    def side(name: str) -> Measure:
        t = loaders[name]
        return lambda: images_per_second(t.loader, t.count, c.warmup, c.batches, t.stop)

    results = turns(side("ours"), side("ultralytics"))
    return Figure(
        "loader",
        "cpu",
        f"training loader, full augmentation (imgsz {c.imgsz}, batch {c.batch}, {c.workers} workers)",
        "images/s",
        "higher",
        results["ours"],
        results["ultralytics"],
        settings={
            "imgsz": c.imgsz,
            "batch": c.batch,
            "workers": c.workers,
            "batches_per_repeat": c.batches,
            "warmup_batches": c.warmup,
            "images": len(dataset),  # type: ignore[arg-type]
            "ultralytics_augment": {k: v for k, v in ul.TRAIN_AUGMENT.items() if k != "augmentations"},
        },
    )
