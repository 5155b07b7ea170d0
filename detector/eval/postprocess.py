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
from detector.models.heads import top_k
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
            return self.rows(top_k(boxes, scores, self.max_det, self.agnostic), letterbox, orig_sizes)
        out = []
        for b in range(boxes.shape[0]):
            out.append(self._undo(self.single(boxes[b], scores[b]), b, letterbox, orig_sizes))
        return out

    def rows(
        self,
        rows: Tensor,  # [B, k, 6] x1, y1, x2, y2, score, class (network-input pixels), sorted by score
        letterbox: Tensor | None = None,
        orig_sizes: Tensor | None = None,
    ) -> list[Detections]:
        """End-to-end detections (:func:`detector.models.heads.top_k`, also what an end-to-end export
        outputs): each image's rows above ``conf``, at most ``max_det``, letterbox undone."""
        return [self._undo(self.selected(rows[b]), b, letterbox, orig_sizes) for b in range(rows.shape[0])]

    @staticmethod
    def _undo(det: Detections, b: int, letterbox: Tensor | None, orig_sizes: Tensor | None) -> Detections:
        if letterbox is not None:
            det.boxes = undo_letterbox(det.boxes, letterbox[b], None if orig_sizes is None else orig_sizes[b])
        return det

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
