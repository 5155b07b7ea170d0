"""Detection loss of YOLOv8 / YOLO11 / YOLO26: BCE classification + CIoU box + distribution focal
loss (DFL), or with ``reg_max == 1`` an L1 loss of the distances instead of the DFL.

Numerically the loss of Ultralytics 8.x (``v8DetectionLoss``), written independently:

- targets come from :class:`TaskAlignedAssigner` on the detached predictions;
- ``cls`` = BCE-with-logits against the soft targets, summed, / ``max(sum(target_scores), 1)``;
- ``box`` = ``sum((1 - CIoU) * w) / max(sum(target_scores), 1)`` over foreground points, where ``w``
  is the point's target-score sum and boxes are in stride units;
- ``dfl`` (``reg_max > 1``) = distribution focal loss of the ltrb distances (stride units, clamped
  to ``reg_max - 1 - 0.01``), mean over the four sides, weighted and normalised as ``box``;
- ``l1`` (``reg_max == 1``, YOLO26) = ``|predicted - target|`` of the ltrb distances in pixels (the
  target not clamped), the left and right ones divided by the input width and the top and bottom
  ones by its height, mean over the four sides, weighted and normalised as ``box``; it takes the
  ``dfl`` gain, as in Ultralytics;
- each multiplied by its gain; the returned total is ``(box + cls + dfl|l1) * batch_size``.

The ``* batch_size`` is Ultralytics' convention: the components are per-image averages of sorts,
and the optimiser settings (lr, weight decay scaled by batch size) were tuned for their sum over the
batch. Keep it if you reuse those hyper-parameters.

An end-to-end head's two branches are trained by :class:`detector.losses.EndToEndLoss`, two of these
losses; :func:`detector.losses.build_loss` picks the criterion for a head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import complete_box_iou_loss

from detector.boxes import decode_boxes, xyxy_to_ltrb
from detector.losses.assigner import TaskAlignedAssigner
from detector.types import HeadOutput, LossGains, Targets


class DetectionLoss:
    """Loss of one branch of a head's output (``HeadOutput.one2one`` is not looked at) against a
    batch's :class:`Targets`.

    Args:
        num_classes: classes of the head.
        reg_max: DFL bins per side (the head's ``reg_max``); 1: the head predicts the distances
            themselves, and an L1 loss (component ``l1``) replaces the DFL (component ``dfl``).
        box, cls, dfl: gains of the three components (``dfl`` weights ``l1`` when ``reg_max == 1``).
        assigner: defaults to ``TaskAlignedAssigner(topk=10, alpha=0.5, beta=6.0)``.
    """

    def __init__(
        self,
        num_classes: int,
        reg_max: int = 16,
        box: float = LossGains.box,
        cls: float = LossGains.cls,
        dfl: float = LossGains.dfl,
        assigner: TaskAlignedAssigner | None = None,
    ) -> None:
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.distance_term = "l1" if reg_max == 1 else "dfl"  # the name of the third component
        self.gains = {"box": box, "cls": cls, self.distance_term: dfl}
        self.assigner = assigner if assigner is not None else TaskAlignedAssigner(topk=10, alpha=0.5, beta=6.0)

    def __call__(self, out: HeadOutput, targets: Targets, batch_size: int) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss to backpropagate (``sum of components * batch_size``) and the detached, gain-scaled
        components ``{"box", "cls", "dfl"}`` (``"l1"`` instead of ``"dfl"`` when ``reg_max == 1``), not
        multiplied by ``batch_size``."""
        self._check(out, batch_size)
        decoded = decode_boxes(out.float())  # computed in float32
        box_logits, cls_logits = decoded.box_logits, decoded.cls_logits  # [B, A, 4 * reg_max], [B, A, C]
        points, strides = decoded.points, decoded.strides  # [A, 2] input pixels, [A, 1]
        anchors = points / strides  # [A, 2] cell centres in stride units
        pred_boxes = decoded.boxes / strides  # [B, A, 4] xyxy, stride units

        gt_classes, gt_boxes, gt_mask = pad_targets(targets.to(box_logits.device), batch_size)
        assigned = self.assigner(
            cls_logits.detach().sigmoid(),
            decoded.boxes.detach(),
            points,
            gt_classes,
            gt_boxes.to(box_logits.dtype),
            gt_mask,
            min_box_size=float(out.strides[1] if len(out.strides) > 1 else out.strides[0]),
        )
        target_scores = assigned.target_scores  # [B, A, C]
        normaliser = target_scores.sum().clamp(min=1)  # scalar, stays on the device

        fg = assigned.foreground  # [B, A]
        weight = target_scores[fg].sum(-1)  # [N] per foreground point
        target_boxes = assigned.target_boxes / strides  # [B, A, 4] xyxy, stride units
        point_anchors = anchors.expand_as(pred_boxes[..., :2])  # [B, A, 2]

        box_targets = target_boxes[fg]  # [N, 4] xyxy, stride units
        fg_anchors, fg_strides = point_anchors[fg], strides[:, 0].expand_as(fg)[fg][:, None]  # [N, 2], [N, 1]
        if self.reg_max == 1:
            input_size = _input_size(out, box_logits)  # [4] width, height, width, height
            distance = l1_distance_loss(decoded.distances[fg], box_targets, fg_anchors, fg_strides, input_size)
        else:
            distance = distribution_focal_loss(
                box_logits[fg].view(-1, 4, self.reg_max), xyxy_to_ltrb(box_targets, fg_anchors)
            )
        components = {
            "box": (complete_box_iou_loss(pred_boxes[fg], box_targets) * weight).sum() / normaliser,
            "cls": F.binary_cross_entropy_with_logits(cls_logits, target_scores, reduction="sum") / normaliser,
            self.distance_term: (distance * weight).sum() / normaliser,
        }
        components = {name: value * self.gains[name] for name, value in components.items()}
        total = sum(components.values()) * batch_size
        return total, {name: value.detach() for name, value in components.items()}

    def _check(self, out: HeadOutput, batch_size: int) -> None:
        if out.reg_max != self.reg_max:
            raise ValueError(f"DetectionLoss(reg_max={self.reg_max}) got a head output with reg_max={out.reg_max}")
        if out.cls[0].shape[1] != self.num_classes:
            raise ValueError(
                f"DetectionLoss(num_classes={self.num_classes}) got {out.cls[0].shape[1]} class logits per point"
            )
        if out.box[0].shape[0] != batch_size:
            raise ValueError(f"batch_size={batch_size} but the head output holds {out.box[0].shape[0]} images")


def distribution_focal_loss(logits: Tensor, target: Tensor) -> Tensor:  # [N, 4, R], [N, 4] -> [N]
    """DFL (Li et al. 2020): cross-entropy to the two bins around each target distance, weighted by
    proximity, averaged over the four sides. Targets are clamped to ``[0, R - 1 - 0.01]``."""
    reg_max = logits.shape[-1]
    target = target.clamp(0, reg_max - 1 - 0.01)
    left = target.long()  # [N, 4] floor, targets are >= 0
    weight_left = (left + 1) - target  # [N, 4]
    log_probs = logits.log_softmax(-1)  # [N, 4, R]
    nll_left = -log_probs.gather(-1, left[..., None])[..., 0]
    nll_right = -log_probs.gather(-1, (left + 1)[..., None])[..., 0]
    return (nll_left * weight_left + nll_right * (1 - weight_left)).mean(-1)


def l1_distance_loss(
    distances: Tensor,  # [N, 4] predicted ltrb, in strides
    target_boxes: Tensor,  # [N, 4] xyxy, in strides
    anchors: Tensor,  # [N, 2] cell centres, in strides
    strides: Tensor,  # [N, 1]
    input_size: Tensor,  # [4] width, height, width, height of the input, pixels
) -> Tensor:  # [N]
    """Mean over the four sides of ``|predicted - target|`` ltrb distance, each side in pixels as a
    fraction of the input's width (left, right) or height (top, bottom). The target is not clamped
    (a point may lie outside its box when small boxes were enlarged for the assignment)."""
    scale = strides / input_size  # [N, 4]
    target = xyxy_to_ltrb(target_boxes, anchors)
    return (distances * scale - target * scale).abs().mean(-1)


def _input_size(out: HeadOutput, like: Tensor) -> Tensor:  # -> [4] width, height, width, height
    """The input size as Ultralytics' loss infers it: the first level's grid times its stride."""
    h, w = out.box[0].shape[-2:]
    s = out.strides[0]
    return torch.tensor([w * s, h * s, w * s, h * s], dtype=like.dtype, device=like.device)


def pad_targets(targets: Targets, batch_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-image padded ground truth, in the order the rows appear within each image.

    Returns ``classes [B, G]`` int64, ``boxes [B, G, 4]`` xyxy pixels and ``mask [B, G]`` bool, with
    ``G`` the largest number of boxes of an image (0 when the batch has none).
    """
    index = targets.batch_index.long()  # [M]
    device = targets.boxes.device
    counts = torch.bincount(index, minlength=batch_size)  # [B] (longer if an index is out of range)
    if counts.numel() > batch_size:
        raise ValueError(f"Targets.batch_index holds an image index >= batch_size={batch_size}")
    g = int(counts.max()) if index.numel() else 0
    classes = torch.zeros(batch_size, g, dtype=torch.long, device=device)
    boxes = torch.zeros(batch_size, g, 4, dtype=targets.boxes.dtype, device=device)
    mask = torch.zeros(batch_size, g, dtype=torch.bool, device=device)
    if g:
        order = torch.argsort(index, stable=True)  # group by image, keep the order within an image
        index = index[order]
        first = counts.cumsum(0) - counts  # [B] row of each image's first box in the sorted order
        slot = torch.arange(index.numel(), device=device) - first[index]  # [M]
        classes[index, slot] = targets.classes[order].long()
        boxes[index, slot] = targets.boxes[order]
        mask[index, slot] = True
    return classes, boxes, mask
