"""Pure box functions. Names carry formats: ``xyxy`` corners, ``cxcywh`` centre and size, ``ltrb``
distances from a point to the four sides. All boxes are in pixels of the network input unless
a name says otherwise."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:  # [..., 4] -> [..., 4]
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), -1)


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:  # [..., 4] -> [..., 4]
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), -1)


def ltrb_to_xyxy(distances: Tensor, points: Tensor) -> Tensor:  # [..., 4], [..., 2] -> [..., 4]
    """Boxes from the distances of their sides to a point inside them."""
    lt, rb = distances.split(2, dim=-1)
    return torch.cat((points - lt, points + rb), -1)


def xyxy_to_ltrb(boxes: Tensor, points: Tensor) -> Tensor:  # [..., 4], [..., 2] -> [..., 4]
    """Distances from each point to the left, top, right and bottom sides of its box."""
    return torch.cat((points - boxes[..., :2], boxes[..., 2:] - points), -1)


def grid_points(
    shapes: Sequence[tuple[int, int]], strides: Sequence[int], dtype: torch.dtype = torch.float32, device=None
) -> tuple[Tensor, Tensor]:
    """Cell centres of every level, flattened fine to coarse.

    Returns ``points [A, 2]`` (x, y in input pixels) and ``point_strides [A, 1]``, where
    ``A = sum(h * w)`` over the ``(h, w)`` feature-map ``shapes``.
    """
    points, point_strides = [], []
    for (h, w), s in zip(shapes, strides):
        ys = (torch.arange(h, dtype=dtype, device=device) + 0.5) * s
        xs = (torch.arange(w, dtype=dtype, device=device) + 0.5) * s
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((gx, gy), -1).view(-1, 2))
        point_strides.append(torch.full((h * w, 1), float(s), dtype=dtype, device=device))
    return torch.cat(points), torch.cat(point_strides)
