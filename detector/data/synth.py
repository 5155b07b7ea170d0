"""Geometry, rasterisation and noise helpers shared by the generated datasets' renderers
(:mod:`detector.data.shapes`, :mod:`detector.data.crowd`).

Shapes are outlines around the origin (``[K, 2]`` float vertices) that :func:`place` rotates,
scales and moves into the image; cv2 draws them from fixed-point vertices (:func:`fixed_point`,
1/16 px). Labels describe what is visible: each object owns the pixels of an id map it was the
last to cover, and :func:`visible_boxes` reads the tight box of what each still owns.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import cv2
import numpy as np


@dataclass(frozen=True)
class Rendered:
    """One rendered image with its labels and the rasterisation they were read from."""

    image: np.ndarray  # [H, W, 3] uint8 RGB
    boxes: np.ndarray  # [N, 4] int64 xyxy pixels, x2/y2 exclusive (tight box of visible pixels)
    classes: np.ndarray  # [N] int64 class ids
    id_map: np.ndarray  # [H, W] uint8: 0 background, k = k-th drawn object (1-based)
    ids: np.ndarray  # [N] int64 id of each labelled object in id_map
    own_pixels: np.ndarray  # [M] int64 pixels of each drawn object alone (unoccluded, unclipped)


SHIFT = 4  # fixed-point bits for cv2 drawing: vertices keep 1/16 px precision
_ONE = 1 << SHIFT


def regular_polygon(corners: int, radius: float = 1.0, phase: float = np.pi / 2) -> np.ndarray:
    """Vertices of a regular polygon around the origin."""  # [K, 2]
    angles = phase + 2.0 * np.pi * np.arange(corners) / corners
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def cross(half_width: float) -> np.ndarray:
    """A plus sign with arms of half-width ``half_width`` reaching to +-1."""  # [12, 2]
    w = half_width
    return np.array(
        [[w, 1], [w, w], [1, w], [1, -w], [w, -w], [w, -1], [-w, -1], [-w, -w], [-1, -w], [-1, w], [-w, w], [-w, 1]],
        dtype=np.float64,
    )


def place(points: np.ndarray, angle: float, size: float, centre: np.ndarray) -> np.ndarray:
    """Rotate, scale so the box's longest side is ``size``, and move to ``centre``."""  # [K, 2] px
    c, s = np.cos(angle), np.sin(angle)
    turned = points @ np.array([[c, s], [-s, c]])
    extent = float((turned.max(0) - turned.min(0)).max())
    turned = turned - (turned.max(0) + turned.min(0)) / 2.0
    return turned * (size / extent) + centre


def fixed_point(points: np.ndarray) -> np.ndarray:
    """Pixel coordinates to cv2's fixed-point vertices (``shift=SHIFT``)."""  # [K, 1, 2] int32
    return np.round(points * _ONE).astype(np.int32).reshape(-1, 1, 2)


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A size between ``low`` and ``high``, as many small ones as big ones per octave."""
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def clip(x0: int, y0: int, mask: np.ndarray, imgsz: int) -> tuple[slice, slice, np.ndarray] | None:
    """The image slices a local mask covers and the part of the mask inside the image."""
    h, w = mask.shape
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + w, imgsz), min(y0 + h, imgsz)
    if ix0 >= ix1 or iy0 >= iy1:
        return None
    inside = mask[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
    return slice(iy0, iy1), slice(ix0, ix1), inside


def visible_boxes(
    id_map: np.ndarray, regions: list[tuple[slice, slice]], own: np.ndarray, min_fraction: float, min_side: int
) -> tuple[np.ndarray, np.ndarray]:
    """Tight boxes of the pixels each object still owns in ``id_map`` (object k owns the value
    k + 1); an object is left out when it owns less than ``min_fraction`` of its ``own`` pixels
    (drawn alone, unclipped) or its box has a side under ``min_side`` pixels.

    Returns the boxes (xyxy, x2/y2 exclusive) and the 0-based indices of the kept objects.
    """  # [N, 4] int64, [N] int64
    boxes: list[list[int]] = []
    kept: list[int] = []
    for k, (rows, cols) in enumerate(regions):
        visible = id_map[rows, cols] == k + 1  # [h, w]
        if own[k] == 0 or np.count_nonzero(visible) < min_fraction * own[k]:
            continue
        ys, xs = np.flatnonzero(visible.any(1)), np.flatnonzero(visible.any(0))
        x1, y1 = cols.start + int(xs[0]), rows.start + int(ys[0])
        x2, y2 = cols.start + int(xs[-1]) + 1, rows.start + int(ys[-1]) + 1
        if x2 - x1 < min_side or y2 - y1 < min_side:
            continue
        boxes.append([x1, y1, x2, y2])
        kept.append(k)
    return np.array(boxes, dtype=np.int64).reshape(-1, 4), np.array(kept, dtype=np.int64)


def gaussian_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard-normal noise of ``shape`` (float32), from one random byte per value."""
    return cv2.LUT(np.frombuffer(rng.bytes(int(np.prod(shape))), dtype=np.uint8).reshape(shape), _gaussian_table())


@lru_cache(maxsize=1)
def _gaussian_table() -> np.ndarray:
    """Standard-normal quantiles at the centres of 256 equal-probability bins.

    Looking random bytes up in it gives gaussian noise several times faster than sampling it.
    """  # [256] float32
    normal = NormalDist()
    return np.array([normal.inv_cdf((i + 0.5) / 256) for i in range(256)], dtype=np.float32)
