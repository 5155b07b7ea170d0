"""Dataclasses passed between the parts of the detector."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor

# ``report(done, total)``: how far a long piece of work is (images checked, images evaluated, ...);
# library functions take one instead of printing (the tasks make them: detector/console.py)
ProgressCallback = Callable[[int, int], None]


class CSPVariant(str, Enum):
    """Which reference layer table a CSPDarknet backbone / PAN neck follows."""

    yolov8 = "yolov8"
    yolo11 = "yolo11"
    yolo26 = "yolo26"


class Branch(str, Enum):
    """A detection head's branches: ``one2many`` (every head; its predictions go through NMS) and
    ``one2one`` (an end-to-end head's second branch: one prediction per object, top-k, no NMS)."""

    one2many = "one2many"
    one2one = "one2one"


@dataclass(frozen=True)
class LossGains:
    """Gains of the loss components (Ultralytics' defaults): the one home of these numbers, which
    :class:`detector.losses.DetectionLoss`, the ``train.*`` schema and the tools refer to."""

    box: float = 7.5
    cls: float = 0.5
    dfl: float = 1.5


@dataclass
class HeadOutput:
    """Raw predictions of a detection head, one entry per pyramid level (fine to coarse).

    ``box[i]``: ``[B, 4 * reg_max, H_i, W_i]``; with ``reg_max > 1`` DFL logits of the left, top,
    right, bottom distances from each cell centre (a distribution over ``reg_max`` bins per side),
    with ``reg_max == 1`` those four distances themselves (no activation); in units of ``strides[i]``
    either way. ``cls[i]``: ``[B, num_classes, H_i, W_i]`` class logits (no sigmoid).

    ``branch``: which branch of the head these are: ``one2many`` (the usual one, followed by NMS)
    or ``one2one`` (an end-to-end head's second branch, trained to give one prediction per object,
    so its top-k needs no NMS; what an end-to-end head returns alone in evaluation). ``one2one``:
    that second branch beside a ``one2many`` output, in the same layout (in training it was computed
    from detached features); ``None`` when the head has no such branch or did not run it.
    """

    box: list[Tensor]
    cls: list[Tensor]
    strides: tuple[int, ...]
    reg_max: int
    one2one: HeadOutput | None = None
    branch: str = "one2many"

    def float(self) -> HeadOutput:
        """The same predictions in float32 (autocast may have produced half precision)."""
        return HeadOutput(
            [t.float() for t in self.box],
            [t.float() for t in self.cls],
            self.strides,
            self.reg_max,
            None if self.one2one is None else self.one2one.float(),
            self.branch,
        )


@dataclass
class Targets:
    """Ground truth of a batch, flattened: row ``k`` belongs to image ``batch_index[k]``."""

    batch_index: Tensor  # [M] int64
    boxes: Tensor  # [M, 4] float32 xyxy, input pixels
    classes: Tensor  # [M] int64

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Targets:
        return Targets(*(t.to(device, non_blocking=non_blocking) for t in (self.batch_index, self.boxes, self.classes)))


@dataclass
class Batch:
    """A collated batch. Images stay uint8 until they reach the device (``images.float() / 255``)."""

    images: Tensor  # [B, 3, H, W] uint8 RGB
    targets: Targets
    image_ids: Tensor  # [B] int64
    orig_sizes: Tensor  # [B, 2] int64 (height, width) of the image files
    letterbox: Tensor  # [B, 4] float32 (scale_x, scale_y, pad_x, pad_y): input = orig * scale + pad

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(
            self.images.to(device, non_blocking=non_blocking),
            self.targets.to(device, non_blocking),
            *(t.to(device, non_blocking=non_blocking) for t in (self.image_ids, self.orig_sizes, self.letterbox)),
        )

    def pin_memory(self) -> Batch:
        """Called by ``DataLoader(pin_memory=True)`` in its pinning thread."""
        t = self.targets
        return Batch(
            self.images.pin_memory(),
            Targets(t.batch_index.pin_memory(), t.boxes.pin_memory(), t.classes.pin_memory()),
            self.image_ids.pin_memory(),
            self.orig_sizes.pin_memory(),
            self.letterbox.pin_memory(),
        )

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class Detections:
    """Detections of one image, best first."""

    boxes: Tensor  # [N, 4] float32 xyxy, original-image pixels
    scores: Tensor  # [N]
    classes: Tensor  # [N] int64

    def __len__(self) -> int:
        return int(self.scores.numel())
