"""Tiled prediction for small objects in large images: the image cut into overlapping windows,
each predicted at the network's input size (in batches), boxes shifted back, and the duplicates that
the overlaps create merged.

Merging rule (greedy non-maximum merging across windows): in order of score, a detection absorbs
every lower-scored one of its class (any class with ``agnostic``) found in *another* window whose
intersection with it covers more than ``merge_ios`` (0.5) of the smaller box; it keeps its score
and class and grows to the box enclosing all it absorbed. Intersection over the smaller box, not
IoU, because an object cut by a window's edge is seen there as a part of itself (its IoU with the
whole may be small, its part lies inside it); growing to the enclosing box gives back the whole
object when only parts were seen. Detections of one window are never merged with each other: that
window's NMS already decided between them. The optional full-image pass is one more window."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from detector.errors import ConfigError
from detector.types import Detections

Window = tuple[int, int, int, int]  # x0, y0, x1, y1 pixels of the image
PredictBatch = Callable[[Sequence[np.ndarray]], list[Detections]]  # images -> detections in their pixels


def check_tiling(tile: int, overlap: float) -> None:
    if tile < 32:
        raise ConfigError(f"tile={tile}: at least 32 pixels (null: no tiling)")
    if not 0.0 <= overlap < 1.0:
        raise ConfigError(f"tile_overlap={overlap}: between 0 and 1 (a fraction of the tile), below 1")


def tile_windows(height: int, width: int, tile: int, overlap: float) -> list[Window]:
    """Windows of ``tile x tile`` pixels (smaller where the image is) covering an ``height x width``
    image, row by row: starts ``floor(tile * (1 - overlap))`` apart, the last window of each row and
    column flush with the image's edge, so neighbours overlap by at least ``overlap * tile``."""
    check_tiling(tile, overlap)
    step = max(1, int(tile * (1.0 - overlap)))

    def starts(length: int) -> list[int]:
        if length <= tile:
            return [0]
        return [*range(0, length - tile, step), length - tile]

    return [(x, y, min(x + tile, width), min(y + tile, height)) for y in starts(height) for x in starts(width)]


def predict_tiled(
    predict: PredictBatch,
    image: np.ndarray,  # [H, W, 3] uint8 RGB
    tile: int,
    overlap: float,
    full: bool = False,
    batch: int = 8,
    max_det: int = 300,
    agnostic: bool = False,
    merge_ios: float = 0.5,
) -> Detections:
    """Detections of ``image`` from its :func:`tile_windows` (plus the whole image when ``full`` and it
    spans more than one window), ``batch`` windows per call of ``predict``, merged by
    :func:`merge_windows`, best first, at most ``max_det``."""
    h, w = image.shape[:2]
    windows = tile_windows(h, w, tile, overlap)
    if full and len(windows) > 1:
        windows.append((0, 0, w, h))
    found: list[Detections] = []
    for i in range(0, len(windows), batch):
        part = windows[i : i + batch]
        found += predict([image[y0:y1, x0:x1] for x0, y0, x1, y1 in part])
    shifts = torch.tensor([[x0, y0, x0, y0] for x0, y0, _, _ in windows], dtype=torch.float32)  # [T, 4]
    boxes = torch.cat([d.boxes.float().reshape(-1, 4) + shifts[k] for k, d in enumerate(found)])  # [N, 4]
    scores = torch.cat([d.scores.float() for d in found])  # [N]
    classes = torch.cat([d.classes.long() for d in found])  # [N]
    origin = torch.cat([torch.full((len(d),), k, dtype=torch.long) for k, d in enumerate(found)])  # [N] window
    merged = merge_windows(Detections(boxes, scores, classes), origin, merge_ios, agnostic)
    return Detections(merged.boxes[:max_det], merged.scores[:max_det], merged.classes[:max_det])


def merge_windows(det: Detections, window: Tensor, merge_ios: float = 0.5, agnostic: bool = False) -> Detections:
    """Greedy non-maximum merging of detections from several windows (see the module's docstring):
    ``det`` in image pixels, ``window [N]`` the window each came from; best first."""
    order = det.scores.argsort(descending=True, stable=True)
    boxes, scores, classes, window = det.boxes[order], det.scores[order], det.classes[order], window[order]
    area = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(1)  # [N]
    free = torch.ones(len(order), dtype=torch.bool)
    kept: list[int] = []
    grown: list[Tensor] = []
    for i in range(len(order)):
        if not free[i]:
            continue
        free[i] = False
        rest = free & (window != window[i])
        if not agnostic:
            rest &= classes == classes[i]
        j = rest.nonzero()[:, 0]  # [M]
        box = boxes[i]
        if len(j):
            inter = (torch.minimum(box[2:], boxes[j, 2:]) - torch.maximum(box[:2], boxes[j, :2])).clamp(min=0).prod(1)
            ios = inter / torch.minimum(area[i], area[j]).clamp(min=1e-9)
            hit = j[ios > merge_ios]
            if len(hit):
                free[hit] = False
                group = torch.cat([box[None], boxes[hit]])  # [1 + K, 4]
                box = torch.cat([group[:, :2].amin(0), group[:, 2:].amax(0)])
        kept.append(i)
        grown.append(box)
    index = torch.tensor(kept, dtype=torch.long)
    merged = torch.stack(grown) if grown else boxes.new_zeros((0, 4))
    return Detections(merged, scores[index], classes[index])
