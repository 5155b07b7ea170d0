"""Necks: built from the backbone's ``in_channels`` and ``strides``; ``forward(list[Tensor]) -> list[Tensor]``.

- :class:`PAN`: the YOLOv8 / YOLO11 / YOLO26 path-aggregation neck (top-down, then bottom-up).
- :class:`FPN`: a plain feature pyramid (lateral 1x1, top-down sum, 3x3 smoothing).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detector.models.blocks import C2f, C3k2, ConvBNAct, make_divisible, scale_channels, scale_depth
from detector.types import CSPVariant


def _check_levels(kind: str, in_channels: Sequence[int], strides: Sequence[int]) -> None:
    if len(in_channels) != 3 or len(strides) != 3:
        raise ValueError(f"{kind} takes exactly 3 input levels (P3, P4, P5); got channels {tuple(in_channels)}")
    if any(b != 2 * a for a, b in zip(strides, strides[1:])):
        raise ValueError(f"{kind} needs each level at twice the stride of the previous; got strides {tuple(strides)}")


class PAN(nn.Module):
    """Path-aggregation neck of YOLOv8 (C2f blocks), YOLO11 (C3k2 blocks) and YOLO26 (C3k2 blocks with
    C3k inner blocks at every scale, the last one a bottleneck and attention block).

    Inputs P3, P4, P5 (any widths); outputs at the same strides with widths 256, 512, 1024
    scaled by ``width`` and capped by ``max_channels``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        strides: Sequence[int],
        variant: CSPVariant | str = CSPVariant.yolov8,
        depth: float = 0.33,
        width: float = 0.25,
        max_channels: int = 1024,
        c3k: bool = False,
    ) -> None:
        super().__init__()
        _check_levels("PAN", in_channels, strides)
        variant = CSPVariant(variant)
        c3, c4, c5 = in_channels
        o3, o4, o5 = (scale_channels(c, width, max_channels) for c in (256, 512, 1024))

        def block(c_in: int, c_out: int, last: bool = False) -> nn.Module:
            if variant is CSPVariant.yolov8:
                return C2f(c_in, c_out, scale_depth(3, depth), shortcut=False)
            if variant is CSPVariant.yolo26:  # C3k everywhere; the last block one attention block
                if last:
                    return C3k2(c_in, c_out, 1, c3k=True, expansion=0.5, attn=True)
                return C3k2(c_in, c_out, scale_depth(2, depth), c3k=True)
            return C3k2(c_in, c_out, scale_depth(2, depth), c3k=c3k or last)

        # registration order follows the reference layers 12, 15, 16, 18, 19, 21
        self.top_down4 = block(c5 + c4, o4)  # P5 upsampled + P4
        self.top_down3 = block(o4 + c3, o3)  # -> P3 output
        self.down3 = ConvBNAct(o3, o3, 3, 2)
        self.bottom_up4 = block(o3 + o4, o4)  # -> P4 output
        self.down4 = ConvBNAct(o4, o4, 3, 2)
        self.bottom_up5 = block(o4 + c5, o5, last=True)  # -> P5 output
        self.out_channels: tuple[int, ...] = (o3, o4, o5)
        self.strides: tuple[int, ...] = tuple(strides)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        p3, p4, p5 = feats
        t4 = self.top_down4(torch.cat((F.interpolate(p5, scale_factor=2.0, mode="nearest"), p4), 1))
        n3 = self.top_down3(torch.cat((F.interpolate(t4, scale_factor=2.0, mode="nearest"), p3), 1))
        n4 = self.bottom_up4(torch.cat((self.down3(n3), t4), 1))
        n5 = self.bottom_up5(torch.cat((self.down4(n4), p5), 1))
        return [n3, n4, n5]


class FPN(nn.Module):
    """Feature pyramid: every level projected to ``256 * width`` channels, coarse added into fine."""

    def __init__(self, in_channels: Sequence[int], strides: Sequence[int], width: float = 0.25) -> None:
        super().__init__()
        if len(in_channels) != len(strides) or len(in_channels) < 2:
            raise ValueError(f"FPN needs >= 2 levels with one stride each; got {tuple(in_channels)}, {tuple(strides)}")
        channels = make_divisible(256 * width, 8)
        self.lateral = nn.ModuleList(ConvBNAct(c, channels, 1) for c in in_channels)
        self.smooth = nn.ModuleList(ConvBNAct(channels, channels, 3) for _ in in_channels)
        self.out_channels: tuple[int, ...] = (channels,) * len(in_channels)
        self.strides: tuple[int, ...] = tuple(strides)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral, feats)]
        for i in range(len(laterals) - 1, 0, -1):  # coarse to fine
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest"
            )
        return [conv(x) for conv, x in zip(self.smooth, laterals)]
