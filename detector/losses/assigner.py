"""Task-aligned assignment (TOOD, Feng et al. 2021) of ground-truth boxes to anchor points.

Behaves as the assigner YOLOv8 / YOLO11 train with (Ultralytics 8.x): a point is a candidate for a
ground truth when it lies inside the box; among candidates, the ``topk`` points with the largest
alignment ``score ** alpha * CIoU ** beta`` become positives; a point positive for several ground
truths keeps the one it overlaps most; the soft classification target of a positive is its
alignment, rescaled per ground truth so that its best point gets that point's best CIoU.

With ``topk2`` (the one-to-one branch of an end-to-end head: YOLO26 assigns with ``topk=7, topk2=1``),
after the conflicts are resolved each ground truth keeps only its ``topk2`` best-aligned positives,
so that with ``topk2=1`` an object has one positive point (or none: when every point it had went to
another ground truth, or when its positives all align 0 and the ranking's tie picks another point).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchvision.ops import complete_box_iou

from detector.boxes import cxcywh_to_xyxy, xyxy_to_cxcywh


@dataclass
class Assignment:
    """Per-point targets. Rows of background points hold the first ground truth of their image
    (``target_gt_index == 0``) and all-zero ``target_scores``; only ``foreground`` rows are meaningful."""

    target_boxes: Tensor  # [B, A, 4] xyxy, input pixels
    target_scores: Tensor  # [B, A, C] soft one-hot: normalised alignment at the gt class, 0 elsewhere
    foreground: Tensor  # [B, A] bool
    target_gt_index: Tensor  # [B, A] int64, index into the G padded ground truths of the image


class TaskAlignedAssigner(nn.Module):
    """Assigns padded ground truths ``[B, G]`` to ``A`` anchor points. Parameter-free; runs without grad.

    Args:
        topk: positives per ground truth (at most).
        alpha: exponent of the predicted class probability in the alignment metric.
        beta: exponent of the CIoU in the alignment metric.
        eps: strict margin of the point-in-box test, and the guard of the normalisation.
        topk2: positives each ground truth keeps after the conflicts between ground truths are
            resolved (its best-aligned ones); ``None`` or ``topk``: no second selection.
    """

    def __init__(
        self, topk: int = 10, alpha: float = 0.5, beta: float = 6.0, eps: float = 1e-9, topk2: int | None = None
    ) -> None:
        super().__init__()
        self.topk = topk
        self.topk2 = topk2 if topk2 is not None else topk
        self.alpha = alpha
        self.beta = beta
        self.eps = eps

    @torch.no_grad()
    def forward(
        self,
        pred_scores: Tensor,  # [B, A, C] class probabilities (after sigmoid)
        pred_boxes: Tensor,  # [B, A, 4] xyxy, pixels
        points: Tensor,  # [A, 2] anchor points (cell centres), pixels
        gt_classes: Tensor,  # [B, G] or [B, G, 1] class ids
        gt_boxes: Tensor,  # [B, G, 4] xyxy, pixels (padding rows arbitrary)
        gt_mask: Tensor,  # [B, G] or [B, G, 1] True for real ground truths
        min_box_size: float = 0.0,
    ) -> Assignment:
        """Assign. ``min_box_size`` enlarges (about their centre) the sides of ground truths shorter
        than it, for the point-in-box test only; Ultralytics uses the second-finest stride."""
        gt_classes = gt_classes.reshape(gt_boxes.shape[:2]).long()  # [B, G]
        gt_mask = gt_mask.reshape(gt_boxes.shape[:2]).bool()  # [B, G]
        if gt_boxes.shape[1] == 0:
            return self._empty(pred_scores, pred_boxes)

        candidates = self._points_in_boxes(points, _enlarge_small_boxes(gt_boxes, min_box_size))
        candidates &= gt_mask[..., None]  # [B, G, A]
        overlaps, alignment = self._alignment(pred_scores, pred_boxes, gt_classes, gt_boxes, candidates)
        positive = self._select_topk(alignment, self.topk) & candidates  # [B, G, A]
        positive = self._keep_highest_overlap(positive, overlaps)
        if self.topk2 != self.topk:  # after the conflicts: a point lost to another ground truth is not ranked
            positive &= self._select_topk(alignment * positive, self.topk2)

        foreground = positive.any(1)  # [B, A]
        target_gt_index = positive.to(torch.uint8).argmax(1)  # [B, A]; 0 for background
        target_boxes = gt_boxes.gather(1, target_gt_index[..., None].expand(-1, -1, 4))  # [B, A, 4]
        target_classes = gt_classes.gather(1, target_gt_index).clamp(min=0)  # [B, A]

        quality = self._normalised_alignment(alignment, overlaps, positive)  # [B, A]
        target_scores = torch.zeros_like(pred_scores)  # [B, A, C]
        target_scores.scatter_(2, target_classes[..., None], (quality * foreground)[..., None].to(pred_scores.dtype))
        return Assignment(target_boxes, target_scores, foreground, target_gt_index)

    def _points_in_boxes(self, points: Tensor, boxes: Tensor) -> Tensor:  # [A, 2], [B, G, 4] -> [B, G, A]
        """Points strictly inside each box (by more than ``eps`` from every side)."""
        x, y = points[:, 0], points[:, 1]  # [A]
        x1, y1, x2, y2 = (c[..., None] for c in boxes.unbind(-1))  # [B, G, 1] each
        return (x - x1 > self.eps) & (y - y1 > self.eps) & (x2 - x > self.eps) & (y2 - y > self.eps)

    def _alignment(
        self, pred_scores: Tensor, pred_boxes: Tensor, gt_classes: Tensor, gt_boxes: Tensor, candidates: Tensor
    ) -> tuple[Tensor, Tensor]:
        """CIoU (clamped at 0) and alignment metric of every candidate pair, 0 elsewhere. Both ``[B, G, A]``.

        Only candidate pairs are evaluated (a dense ``[B, G, A]`` CIoU would hold many large temporaries).
        """
        b, g, a = candidates.nonzero(as_tuple=True)  # [N] each
        # complete_box_iou is pairwise over the last-but-one dims: [N, 1, 4] x [N, 1, 4] -> [N, 1, 1].
        ciou = complete_box_iou(gt_boxes[b, g][:, None], pred_boxes[b, a][:, None])[:, 0, 0]  # [N]
        ciou = ciou.nan_to_num(0.0).clamp(min=0).to(pred_boxes.dtype)  # degenerate boxes give NaN
        score = pred_scores[b, a, gt_classes[b, g]]  # [N] probability of the gt class
        overlaps = torch.zeros(candidates.shape, dtype=pred_boxes.dtype, device=pred_boxes.device)
        alignment = torch.zeros(candidates.shape, dtype=pred_scores.dtype, device=pred_scores.device)
        overlaps[b, g, a] = ciou
        alignment[b, g, a] = score.pow(self.alpha) * ciou.pow(self.beta)
        return overlaps, alignment

    @staticmethod
    def _select_topk(alignment: Tensor, k: int) -> Tensor:  # [B, G, A] -> [B, G, A] bool
        """The ``k`` points of largest alignment per ground truth (ties as ``torch.topk`` breaks them)."""
        k = min(k, alignment.shape[-1])
        index = alignment.topk(k, dim=-1).indices  # [B, G, k]
        return torch.zeros_like(alignment, dtype=torch.bool).scatter_(-1, index, True)

    @staticmethod
    def _keep_highest_overlap(positive: Tensor, overlaps: Tensor) -> Tensor:  # [B, G, A] -> [B, G, A]
        """A point positive for several ground truths keeps only the one of largest CIoU among all the
        ground truths it lies in (first one on ties)."""
        shared = positive.sum(1, keepdim=True) > 1  # [B, 1, A]
        best = overlaps.argmax(1, keepdim=True)  # [B, 1, A]
        best_only = torch.zeros_like(positive).scatter_(1, best, True)  # [B, G, A]
        return torch.where(shared, best_only, positive)

    def _normalised_alignment(self, alignment: Tensor, overlaps: Tensor, positive: Tensor) -> Tensor:
        """Alignment of each positive, scaled per ground truth by ``max CIoU / max alignment`` over its
        positives; one value per point ``[B, A]`` (0 for background)."""
        alignment = alignment * positive  # [B, G, A]
        max_alignment = alignment.amax(-1, keepdim=True)  # [B, G, 1]
        max_overlap = (overlaps * positive).amax(-1, keepdim=True)  # [B, G, 1]
        return (alignment * max_overlap / (max_alignment + self.eps)).amax(1)  # [B, A]

    @staticmethod
    def _empty(pred_scores: Tensor, pred_boxes: Tensor) -> Assignment:
        """Every point is background (no ground truth in the batch)."""
        b, a = pred_scores.shape[:2]
        return Assignment(
            target_boxes=torch.zeros_like(pred_boxes),
            target_scores=torch.zeros_like(pred_scores),
            foreground=torch.zeros(b, a, dtype=torch.bool, device=pred_scores.device),
            target_gt_index=torch.zeros(b, a, dtype=torch.long, device=pred_scores.device),
        )


def _enlarge_small_boxes(boxes: Tensor, min_size: float) -> Tensor:  # [B, G, 4] -> [B, G, 4] xyxy
    """Sides shorter than ``min_size`` grow to ``min_size`` about the box centre."""
    if min_size <= 0:
        return boxes
    cxcywh = xyxy_to_cxcywh(boxes)
    return cxcywh_to_xyxy(torch.cat((cxcywh[..., :2], cxcywh[..., 2:].clamp(min=min_size)), -1))
