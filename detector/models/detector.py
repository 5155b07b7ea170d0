"""The detector: backbone -> neck -> head, and its builder."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn

from detector.models.heads import top_k
from detector.types import HeadOutput


class Detector(nn.Module):
    """``forward(x [B, 3, H, W] in [0, 1]) -> HeadOutput`` (raw predictions, see :class:`HeadOutput`)."""

    def __init__(
        self, backbone: nn.Module, neck: nn.Module, head: nn.Module, scale: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.scale = dict(scale or {})  # the family scale the parts were built with, for summaries

    @property
    def strides(self) -> tuple[int, ...]:
        return tuple(self.neck.strides)

    @property
    def num_classes(self) -> int:
        return int(self.head.num_classes)

    def forward(self, x: Tensor) -> HeadOutput:
        return self.head(self.neck(self.backbone(x)))

    def fuse(self) -> Detector:
        """Fold every BatchNorm into the conv before it, for inference. Puts the model in eval mode."""
        self.eval()
        for module in list(self.modules()):
            if module is not self and hasattr(module, "fuse"):
                module.fuse()
        return self


def build_detector(
    backbone: nn.Module,
    neck: Callable[..., nn.Module],
    head: Callable[..., nn.Module],
    scale: Mapping[str, Any] | None = None,
) -> Detector:
    """Wire the parts: the neck is built from the backbone's outputs, the head from the neck's.

    ``scale`` is the depth / width / max_channels node of the model config that the parts
    interpolate; the detector keeps a copy for summaries and checkpoints.
    """
    neck_module = neck(in_channels=backbone.out_channels, strides=backbone.strides)
    head_module = head(in_channels=neck_module.out_channels, strides=neck_module.strides)
    return Detector(backbone, neck_module, head_module, scale)


class Decoded(nn.Module):
    """A detector whose forward returns decoded ``(boxes, scores)`` of its head's inference branch,
    for export and prediction."""

    def __init__(self, model: Detector) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.model.head.decode(self.model(images))


class EndToEnd(nn.Module):
    """An end-to-end detector (its head predicting with the one-to-one branch) whose forward ends with
    the top-k that replaces NMS: ``[B, k, 6]`` rows ``x1, y1, x2, y2, score, class`` in input pixels,
    ``k = min(max_det, A)`` (:func:`detector.models.heads.top_k`), for export and prediction."""

    def __init__(self, model: Detector, max_det: int = 300) -> None:
        super().__init__()
        if getattr(model.head, "inference", None) != "one2one":
            raise ValueError("EndToEnd needs a head that predicts with its one-to-one branch (inference=one2one)")
        self.model = model
        self.max_det = max_det

    def forward(self, images: Tensor) -> Tensor:
        return top_k(*self.model.head.decode(self.model(images)), self.max_det)
