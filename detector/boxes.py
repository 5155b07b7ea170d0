"""Pure box functions. Names carry formats: ``xyxy`` corners, ``cxcywh`` centre and size, ``ltrb``
distances from a point to the four sides. All boxes are in pixels of the network input unless
a name says otherwise.

:func:`decode_boxes` is the one decoding of a DFL head's raw output into boxes, shared by the
head's inference path (``DetectHead.decode``: prediction, evaluation, export) and the loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from detector.types import HeadOutput


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


def expected_distances(box_logits: Tensor, bins: Tensor) -> Tensor:  # [B, 4 * R, A], [R] -> [B, 4, A]
    """Expectation of the softmax over the ``R`` bins of each side: ``ltrb`` distances in bin units."""
    b, _, a = box_logits.shape
    probs = box_logits.view(b, 4, bins.numel(), a).softmax(2)  # [B, 4, R, A]
    return (probs * bins.view(1, 1, -1, 1)).sum(2)


@dataclass
class DecodedBoxes:
    """A head output (one branch) flattened over its levels and decoded (``A`` points, fine to coarse)."""

    box_logits: Tensor  # [B, A, 4 * reg_max] DFL logits (reg_max 1: the raw distances)
    cls_logits: Tensor  # [B, A, C] class logits (no sigmoid)
    points: Tensor  # [A, 2] cell centres, input pixels
    strides: Tensor  # [A, 1] stride of each point's level
    distances: Tensor  # [B, A, 4] expected ltrb distances, in strides
    boxes: Tensor  # [B, A, 4] xyxy, input pixels


def decode_boxes(out: HeadOutput, bins: Tensor | None = None) -> DecodedBoxes:
    """Decode raw predictions of one branch (``out.one2one`` is not looked at): each side's distance
    is the expectation of its DFL bins (``bins``: their values, ``0 .. reg_max - 1`` unless given),
    or with ``reg_max == 1`` the raw value itself, in strides from the cell centre.

    Computed in the output's dtype (pass ``out.float()`` for float32); the logits come back as
    transposed views of one concatenation per branch.
    """
    box_logits = torch.cat([x.flatten(2) for x in out.box], 2)  # [B, 4 * reg_max, A]
    cls_logits = torch.cat([x.flatten(2) for x in out.cls], 2)  # [B, C, A]
    shapes = [tuple(x.shape[-2:]) for x in out.box]
    points, strides = grid_points(shapes, out.strides, box_logits.dtype, box_logits.device)
    if out.reg_max == 1:  # the distances themselves
        distances = box_logits.transpose(1, 2)  # [B, A, 4]
    else:
        if bins is None:
            bins = torch.arange(out.reg_max, dtype=box_logits.dtype, device=box_logits.device)
        distances = expected_distances(box_logits, bins).transpose(1, 2)  # [B, A, 4]
    boxes = ltrb_to_xyxy(distances * strides, points)
    return DecodedBoxes(box_logits.transpose(1, 2), cls_logits.transpose(1, 2), points, strides, distances, boxes)
