"""Detection heads: built from the neck's ``in_channels`` and ``strides`` and ``num_classes``;
``forward`` returns raw predictions only (:class:`detector.types.HeadOutput`), no loss, no NMS."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from detector.boxes import decode_boxes
from detector.models.blocks import DFL, ConvBNAct, depthwise_conv
from detector.types import HeadOutput

BOX_BIAS = 2.0  # the box branch's last bias at initialisation (Ultralytics' value; any constant gives uniform bins)


class DFLHead(nn.Module):
    """Anchor-free decoupled head of YOLOv8 / YOLO11.

    Per level, a box branch predicts ``4 * reg_max`` logits (a distribution over distances to
    each side, in stride units) and a class branch ``num_classes`` logits. ``depthwise_cls``
    selects the lighter class branch of YOLO11 (depthwise 3x3 + pointwise pairs).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        strides: Sequence[int],
        num_classes: int,
        reg_max: int = 16,
        depthwise_cls: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.strides: tuple[int, ...] = tuple(int(s) for s in strides)
        c_box = max(16, in_channels[0] // 4, 4 * reg_max)
        c_cls = max(in_channels[0], min(num_classes, 100))
        self.box = nn.ModuleList(
            nn.Sequential(ConvBNAct(c, c_box, 3), ConvBNAct(c_box, c_box, 3), nn.Conv2d(c_box, 4 * reg_max, 1))
            for c in in_channels
        )
        if depthwise_cls:
            self.cls = nn.ModuleList(
                nn.Sequential(
                    nn.Sequential(depthwise_conv(c, c, 3), ConvBNAct(c, c_cls, 1)),
                    nn.Sequential(depthwise_conv(c_cls, c_cls, 3), ConvBNAct(c_cls, c_cls, 1)),
                    nn.Conv2d(c_cls, num_classes, 1),
                )
                for c in in_channels
            )
        else:
            self.cls = nn.ModuleList(
                nn.Sequential(ConvBNAct(c, c_cls, 3), ConvBNAct(c_cls, c_cls, 3), nn.Conv2d(c_cls, num_classes, 1))
                for c in in_channels
            )
        self.dfl = DFL(reg_max)
        self.init_class_prior()
        for branch in self.box:  # one constant for every bin: the box distributions start uniform, as Ultralytics'
            nn.init.constant_(branch[-1].bias, BOX_BIAS)

    def init_class_prior(self, objects_per_image: float = 5.0, imgsz: int = 640) -> None:
        """Start the class logits at the prior of ``objects_per_image`` objects spread over every cell
        and class of an ``imgsz`` image, so early training is not swamped by negatives."""
        for branch, s in zip(self.cls, self.strides):
            prior = objects_per_image / self.num_classes / (imgsz / s) ** 2
            nn.init.constant_(branch[-1].bias, math.log(prior))

    def forward(self, feats: list[Tensor]) -> HeadOutput:
        return HeadOutput(
            box=[branch(f) for branch, f in zip(self.box, feats)],
            cls=[branch(f) for branch, f in zip(self.cls, feats)],
            strides=self.strides,
            reg_max=self.reg_max,
        )

    def decode(self, out: HeadOutput) -> tuple[Tensor, Tensor]:
        """Boxes ``[B, A, 4]`` xyxy in input pixels and class probabilities ``[B, A, num_classes]``
        (:func:`detector.boxes.decode_boxes` with this head's bins)."""
        decoded = decode_boxes(out, self.dfl.bins)
        return decoded.boxes, decoded.cls_logits.sigmoid()
