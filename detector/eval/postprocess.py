"""From decoded head outputs to detections in original-image pixels: confidence threshold,
class-aware (or agnostic) NMS with ``torchvision.ops.batched_nms``, ``max_det``, letterbox undone; or,
for an end-to-end head's one-to-one branch, the top-k selection that replaces NMS (:func:`top_k`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from detector.letterbox import undo_letterbox
from detector.types import Detections


@dataclass
class PostProcess:
    """Settings default to Ultralytics' validation: conf 0.001, IoU 0.7, 300 detections, and every
    class above ``conf`` of a location a candidate of its own (``multi_label``). Prediction uses
    conf 0.25 and one class per location."""

    conf: float = 0.001
    iou: float = 0.7
    max_det: int = 300
    agnostic: bool = False  # one NMS over all classes instead of one per class
    multi_label: bool = True
    max_candidates: int = 30_000  # highest-scoring candidates kept before NMS
    end2end: bool = False  # one-to-one predictions: the top max_det (location, class) pairs, no NMS

    def __call__(
        self,
        boxes: Tensor,  # [B, A, 4] xyxy, network-input pixels
        scores: Tensor,  # [B, A, C] class probabilities
        letterbox: Tensor | None = None,  # [B, 4] scale_x, scale_y, pad_x, pad_y
        orig_sizes: Tensor | None = None,  # [B, 2] height, width
    ) -> list[Detections]:
        if self.end2end:
            selected = top_k(boxes, scores, self.max_det, self.agnostic)  # [B, k, 6]
        out = []
        for b in range(boxes.shape[0]):
            det = self.selected(selected[b]) if self.end2end else self.single(boxes[b], scores[b])
            if letterbox is not None:
                det.boxes = undo_letterbox(det.boxes, letterbox[b], None if orig_sizes is None else orig_sizes[b])
            out.append(det)
        return out

    def for_branch(self, branch: str) -> PostProcess:
        """These settings for a head branch's predictions: ``one2one`` (an end-to-end head) takes
        the top-k, ``one2many`` NMS."""
        return dataclasses.replace(self, end2end=branch == "one2one")

    def selected(self, rows: Tensor) -> Detections:
        """One image's :func:`top_k` rows ``[k, 6]`` above ``conf`` (already sorted by score)."""
        rows = rows[rows[:, 4] > self.conf][: self.max_det]
        return Detections(rows[:, :4].float(), rows[:, 4], rows[:, 5].long())

    def single(self, boxes: Tensor, scores: Tensor) -> Detections:
        """One image: ``boxes [A, 4]``, ``scores [A, C]``."""
        if self.multi_label:
            anchor, cls = (scores > self.conf).nonzero(as_tuple=True)
            score = scores[anchor, cls]
        else:
            score, cls = scores.max(1)
            anchor = (score > self.conf).nonzero(as_tuple=True)[0]
            score, cls = score[anchor], cls[anchor]
        if score.numel() > self.max_candidates:
            top = score.topk(self.max_candidates).indices
            anchor, cls, score = anchor[top], cls[top], score[top]
        candidates = boxes[anchor].float()
        groups = torch.zeros_like(cls) if self.agnostic else cls
        keep = batched_nms(candidates, score.float(), groups, self.iou)[: self.max_det]  # sorted by score
        return Detections(candidates[keep], score[keep], cls[keep].long())


def top_k(boxes: Tensor, scores: Tensor, max_det: int, agnostic: bool = False) -> Tensor:
    """End-to-end selection (no NMS): ``[B, k, 6]`` rows ``x1, y1, x2, y2, score, class`` sorted by
    score, ``k = min(max_det, A)``, from ``boxes [B, A, 4]`` and ``scores [B, A, C]``.

    The ``k`` locations of highest best-class score, then the ``k`` highest of their (location, class)
    scores: a location may appear once per class. ``agnostic``: each location's best class only. As
    Ultralytics' one-to-one path; traceable, so an exported graph can end with it."""
    k = min(max_det, scores.shape[1])
    best, best_class = scores.max(-1)  # [B, A]
    if agnostic:
        score, index = best.topk(k, dim=-1)  # [B, k]
        cls = best_class.gather(1, index)
    else:
        anchors = best.topk(k, dim=-1).indices  # [B, k]
        candidates = scores.gather(1, anchors[..., None].expand(-1, -1, scores.shape[-1]))  # [B, k, C]
        score, flat = candidates.flatten(1).topk(k, dim=-1)  # [B, k] over the k * C pairs
        cls = flat % scores.shape[-1]
        index = anchors.gather(1, flat // scores.shape[-1])
    picked = boxes.gather(1, index[..., None].expand(-1, -1, 4))  # [B, k, 4]
    return torch.cat((picked, score[..., None], cls[..., None].to(score.dtype)), -1)
