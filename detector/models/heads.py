"""Detection heads: built from the neck's ``in_channels`` and ``strides`` and ``num_classes``;
``forward`` returns raw predictions only (:class:`detector.types.HeadOutput`), no loss, no NMS."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from detector.boxes import decode_boxes
from detector.errors import ConfigError
from detector.models.blocks import DFL, ConvBNAct, depthwise_conv
from detector.types import Branch, HeadOutput

BOX_BIAS = 2.0  # the box branch's last bias at initialisation (Ultralytics' value; any constant gives uniform bins)
BRANCHES = (Branch.one2many.value, Branch.one2one.value)


class DetectHead(nn.Module):
    """Anchor-free decoupled head of YOLOv8 / YOLO11 / YOLO26.

    Per level, a box branch predicts ``4 * reg_max`` values and a class branch ``num_classes``
    logits. With ``reg_max > 1`` the box values are a distribution over distances to each side (DFL,
    YOLOv8 / YOLO11); with ``reg_max = 1`` they are the four distances themselves (YOLO26). Distances
    are in stride units. ``depthwise_cls`` selects the lighter class branch of YOLO11 / YOLO26
    (depthwise 3x3 + pointwise pairs).

    ``end2end`` adds a copy of both branches (``one2one_box``, ``one2one_cls``, initialised equal to
    the first) that the end-to-end loss trains to give one prediction per object, on features it
    does not back-propagate into: its top-k needs no NMS. In training both branches run; in
    evaluation only the one ``inference`` names (``one2one``: end-to-end, the default of an
    end-to-end head; ``one2many``: the first branch, followed by NMS), or both inside
    :meth:`running`.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        strides: Sequence[int],
        num_classes: int,
        reg_max: int = 16,
        depthwise_cls: bool = False,
        end2end: bool = False,
        inference: str | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if reg_max < 1:
            raise ValueError(f"reg_max must be >= 1, got {reg_max}")
        inference = str(Branch(inference).value) if inference else ("one2one" if end2end else "one2many")
        if inference not in BRANCHES:
            raise ValueError(f"inference must be one of {list(BRANCHES)}, got {inference!r}")
        if inference == "one2one" and not end2end:
            raise ValueError("inference=one2one needs the end-to-end branch (end2end=true)")
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.end2end = end2end
        self.inference = inference
        self.strides: tuple[int, ...] = tuple(int(s) for s in strides)
        self._running: tuple[str, ...] | None = None  # branches an eval forward runs (None: inference's)
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
        self.dfl = DFL(reg_max) if reg_max > 1 else None  # reg_max 1: the outputs are the distances
        self.one2one_box = copy.deepcopy(self.box) if end2end else None
        self.one2one_cls = copy.deepcopy(self.cls) if end2end else None
        self.init_class_prior()
        for branch in self._box_branches():  # one constant for every bin: distributions start uniform
            nn.init.constant_(branch[-1].bias, BOX_BIAS)

    def _box_branches(self) -> Iterator[nn.Module]:
        yield from self.box
        if self.one2one_box is not None:
            yield from self.one2one_box

    def init_class_prior(self, objects_per_image: float = 5.0, imgsz: int = 640) -> None:
        """Start the class logits (of both branches) at the prior of ``objects_per_image`` objects
        spread over every cell and class of an ``imgsz`` image, so early training is not swamped by
        negatives."""
        for cls in (self.cls, self.one2one_cls):
            for branch, s in zip(cls or (), self.strides):
                prior = objects_per_image / self.num_classes / (imgsz / s) ** 2
                nn.init.constant_(branch[-1].bias, math.log(prior))

    @contextmanager
    def running(self, branches: Sequence[str]) -> Iterator[None]:
        """Within the block, an eval forward runs ``branches`` (for example both, to evaluate each)."""
        unknown = set(branches) - set(self.branches)
        if unknown:
            raise ValueError(f"this head has no {sorted(unknown)} branch; it has {list(self.branches)}")
        previous, self._running = self._running, tuple(branches)
        try:
            yield
        finally:
            self._running = previous

    @property
    def branches(self) -> tuple[str, ...]:
        """The branches this head has."""
        return BRANCHES if self.end2end else BRANCHES[:1]

    def forward(self, feats: list[Tensor]) -> HeadOutput:
        if self.training:
            run = self.branches
        else:
            run = self._running or (self.inference,)
        one2one = None
        if "one2one" in run:
            detached = [f.detach() for f in feats] if self.training else feats  # its loss stops at the head
            one2one = self._branch(self.one2one_box, self.one2one_cls, detached, "one2one")
            if "one2many" not in run:
                return one2one
        out = self._branch(self.box, self.cls, feats, "one2many")
        out.one2one = one2one
        return out

    def _branch(self, box: nn.ModuleList, cls: nn.ModuleList, feats: list[Tensor], name: str) -> HeadOutput:
        return HeadOutput(
            box=[b(f) for b, f in zip(box, feats)],
            cls=[c(f) for c, f in zip(cls, feats)],
            strides=self.strides,
            reg_max=self.reg_max,
            branch=name,
        )

    def decode(self, out: HeadOutput, branch: str | None = None) -> tuple[Tensor, Tensor]:
        """Boxes ``[B, A, 4]`` xyxy in input pixels and class probabilities ``[B, A, num_classes]`` of
        ``branch`` (default: the one ``inference`` names), :func:`detector.boxes.decode_boxes` with
        this head's bins."""
        chosen = branch_of(out, branch or self.inference)
        decoded = decode_boxes(chosen, self.dfl.bins if self.dfl is not None else None)
        return decoded.boxes, decoded.cls_logits.sigmoid()


def use_branch(head: nn.Module, branch: str | None) -> None:
    """Make ``head`` predict with ``branch`` (``one2one`` or ``one2many``; None: leave its own
    choice); a :class:`ConfigError` naming the branches it has when it has no such one."""
    if branch is None:
        return
    branch = Branch(branch).value
    if branch not in getattr(head, "branches", BRANCHES[:1]):
        have = list(getattr(head, "branches", BRANCHES[:1]))
        raise ConfigError(f"branch={branch}: the model's head has no such branch (it has {have})")
    head.inference = branch


def branch_of(out: HeadOutput, branch: str) -> HeadOutput:
    """The part of a head output that holds ``branch`` (``one2many`` or ``one2one``)."""
    if out.branch == branch:
        return out
    if branch == "one2one" and out.one2one is not None:
        return out.one2one
    raise ValueError(f"the head output holds no {branch} branch (it holds {out.branch})")


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


DFLHead = DetectHead  # the name checkpoints written before YOLO26 refer to
