"""What the augmentation hands the model: objects and box sizes per augmented training image and
colour statistics, measured the same way on our loader's batches and Ultralytics', with mosaic
(the first epochs) and without (the last ``close_mosaic`` epochs)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor

from detector.types import Targets

SIZE_EDGES = (0, 4, 8, 16, 32, 64, 128, 256, 10_000)  # box side (sqrt of area) bins, px


@dataclass
class BatchStats:
    """Accumulated over the batches seen."""

    images: int = 0
    objects: list[int] = field(default_factory=list)  # per image
    sides: list[float] = field(default_factory=list)  # sqrt(w * h) per box, px
    short_sides: list[float] = field(default_factory=list)  # min(w, h) per box, px
    channel_sum: np.ndarray = field(default_factory=lambda: np.zeros(3))
    channel_sq: np.ndarray = field(default_factory=lambda: np.zeros(3))
    saturation: list[float] = field(default_factory=list)  # mean HSV saturation per image, 0-255
    value: list[float] = field(default_factory=list)  # mean HSV value per image, 0-255
    grey_fraction: list[float] = field(default_factory=list)  # pixels with R == G == B (padding), per image
    pixels: int = 0
    sources: list[int] = field(default_factory=list)  # distinct images a batch was made from
    repeats: list[int] = field(default_factory=list)  # appearances of a batch's most used image

    def add(self, images: Tensor, targets: Targets) -> None:
        """One batch: ``images`` ``[B, 3, H, W]`` uint8 RGB, ``targets`` in input pixels."""
        b = int(images.shape[0])
        self.images += b
        counts = torch.bincount(targets.batch_index, minlength=b)
        self.objects += counts.tolist()
        wh = (targets.boxes[:, 2:] - targets.boxes[:, :2]).clamp(min=0)
        self.sides += wh.prod(1).sqrt().tolist()
        self.short_sides += wh.min(1).values.tolist()
        x = images.double()
        self.channel_sum += x.sum((0, 2, 3)).numpy()
        self.channel_sq += (x * x).sum((0, 2, 3)).numpy()
        self.pixels += b * int(images.shape[2]) * int(images.shape[3])
        for image in images.permute(0, 2, 3, 1).numpy():
            hsv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2HSV)
            self.saturation.append(float(hsv[..., 1].mean()))
            self.value.append(float(hsv[..., 2].mean()))
            self.grey_fraction.append(
                float(((image[..., 0] == image[..., 1]) & (image[..., 1] == image[..., 2])).mean())
            )

    def summary(self) -> dict[str, float]:
        objects = np.array(self.objects, dtype=float)
        sides = np.array(self.sides or [np.nan])
        mean = self.channel_sum / max(self.pixels, 1)
        std = np.sqrt(np.maximum(self.channel_sq / max(self.pixels, 1) - mean**2, 0))
        out = {
            "images": float(self.images),
            "objects_per_image": float(objects.mean()) if objects.size else np.nan,
            "images_without_objects": float((objects == 0).mean()) if objects.size else np.nan,
            "box_side_p10": float(np.percentile(sides, 10)),
            "box_side_median": float(np.median(sides)),
            "box_side_p90": float(np.percentile(sides, 90)),
            "boxes_under_8px": float((sides < 8).mean()),
            "boxes_under_16px": float((sides < 16).mean()),
            "min_short_side": float(min(self.short_sides)) if self.short_sides else np.nan,
            "saturation_mean": float(np.mean(self.saturation)),
            "value_mean": float(np.mean(self.value)),
            "grey_fraction": float(np.mean(self.grey_fraction)),
        }
        out["source_images_per_batch"] = float(np.mean(self.sources)) if self.sources else np.nan
        out["most_uses_of_one_image_per_batch"] = float(np.mean(self.repeats)) if self.repeats else np.nan
        for c, name in enumerate("RGB"):
            out[f"{name}_mean"], out[f"{name}_std"] = float(mean[c]), float(std[c])
        return out

    def size_histogram(self) -> list[float]:
        """Fraction of boxes per :data:`SIZE_EDGES` bin."""
        counts, _ = np.histogram(self.sides, bins=SIZE_EDGES)
        return (counts / max(counts.sum(), 1)).tolist()


def collect(batches: Iterable[tuple[Tensor, Targets]], count: int) -> BatchStats:
    """Statistics of the first ``count`` batches."""
    stats = BatchStats()
    for images, targets in islice(batches, count):
        stats.add(images, targets)
    return stats


def our_batches(loader: Iterable) -> Iterator[tuple[Tensor, Targets]]:
    for batch in loader:
        yield batch.images, batch.targets


def record_our_loads(dataset: Any) -> list[int]:
    """Make ``dataset`` (a :class:`~detector.data.dataset.DetectionDataset`) append the index of
    every image it loads (a sample's own and its mosaic partners') to the returned list."""
    loads: list[int] = []
    original = dataset.load

    def load(i: int) -> Any:
        loads.append(int(i))
        return original(i)

    dataset.load = load
    return loads


def count_sources(batches: Iterable[Any], loads: list[int], count: int, stats: BatchStats) -> None:
    """For each of the first ``count`` batches of a loader that loads in this process (no workers),
    the distinct images ``loads`` recorded while it was made and the uses of its most used one."""
    start = len(loads)
    for _ in islice(batches, count):
        used = Counter(loads[start:])
        stats.sources.append(len(used))
        stats.repeats.append(max(used.values(), default=0))
        start = len(loads)
