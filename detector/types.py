"""Dataclasses passed between the parts of the detector."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class HeadOutput:
    """Raw predictions of a detection head, one entry per pyramid level (fine to coarse).

    ``box[i]``: ``[B, 4 * reg_max, H_i, W_i]`` DFL logits of the left, top, right, bottom distances
    from each cell centre, in units of ``strides[i]``. ``cls[i]``: ``[B, num_classes, H_i, W_i]``
    class logits (no sigmoid).
    """

    box: list[Tensor]
    cls: list[Tensor]
    strides: tuple[int, ...]
    reg_max: int
