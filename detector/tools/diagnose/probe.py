"""What a trainer actually does, observed from outside it: the same probe watches our loop and
Ultralytics' trainer, so a difference it shows is a difference of the trainers, not of two
instrumentations.

:class:`TrainingProbe` is a context manager that installs torch's process-wide hooks while a
trainer runs (``probe.side`` names whose run it is):

- an optimizer step pre-hook (``torch.optim.optimizer.register_optimizer_step_pre_hook``): every
  optimizer step's learning rate, momentum, weight decay and Nesterov flag per parameter group, the
  group's parameter count, and the batches accumulated since the previous step;
- a wrapper of ``torch.nn.utils.clip_grad_norm_`` (both trainers call it by attribute before each
  step): the gradient norm before clipping;
- a module forward hook (``register_module_forward_hook``): on each ``TaskAlignedAssigner`` call, the
  positives it gave every ground-truth box and their IoU with it (one call per training batch, which
  also counts the batches); on each BatchNorm forward in training mode, its ``eps`` and ``momentum``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.optim.optimizer as optimizer_module
from torch import Tensor, nn
from torchvision.ops import box_iou

from detector.interop import ultralytics as ul
from detector.losses.assigner import Assignment, TaskAlignedAssigner

BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
CLIP_NORM = 10.0  # both trainers clip the gradient norm at this
# (pred boxes [B, A, 4] xyxy px, gt boxes [B, G, 4] xyxy px, gt mask [B, G], foreground [B, A],
# gt index of each point [B, A])
AssignerView = tuple[Tensor, Tensor, Tensor, Tensor, Tensor]


@dataclass
class SideRecord:
    """What the probe saw of one trainer."""

    steps: list[dict[str, Any]] = field(default_factory=list)  # one per optimizer step
    grad_norms: list[float] = field(default_factory=list)  # before clipping, one per step
    batches: int = 0  # assigner calls (one per training batch)
    positives: list[tuple[float, int, float]] = field(default_factory=list)  # (gt side px, positives, mean IoU)
    batchnorm: Counter = field(default_factory=Counter)  # (eps, momentum) -> BatchNorm modules seen
    _bn_seen: set[int] = field(default_factory=set)

    def summary(self) -> dict[str, Any]:
        """The figures of the report (see :func:`positives_summary` for the assigner's)."""
        norms = torch.tensor(self.grad_norms or [math.nan])
        return {
            "optimizer_steps": len(self.steps),
            "batches": self.batches,
            "grad_norm_median": float(norms.median()),
            "grad_norm_clipped_fraction": float((norms > CLIP_NORM).float().mean()) if self.grad_norms else math.nan,
            "batchnorm": {f"eps={e:g} momentum={m:g}": n for (e, m), n in sorted(self.batchnorm.items())},
            "groups": groups_at(self.steps[-1]) if self.steps else {},
            **positives_summary(self.positives),
        }


def groups_at(step: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["name"]: {k: g[k] for k in ("params", "weight_decay", "nesterov")} for g in step["groups"]}


def positives_summary(records: list[tuple[float, int, float]]) -> dict[str, float]:
    """Mean positives per ground truth, the fraction with none, and the mean IoU of positives (each
    ground truth's mean, averaged), overall and for small (< 16 px side) ground truths."""
    if not records:
        return {}
    sides = torch.tensor([r[0] for r in records])
    counts = torch.tensor([float(r[1]) for r in records])
    ious = torch.tensor([r[2] for r in records])
    out = {}
    for label, keep in (("", torch.ones_like(sides, dtype=torch.bool)), ("small_", sides < 16)):
        if keep.any():
            c, i = counts[keep], ious[keep]
            out[f"{label}positives_per_gt"] = float(c.mean())
            out[f"{label}gt_without_positive"] = float((c == 0).float().mean())
            out[f"{label}positive_iou"] = float(i[c > 0].mean()) if (c > 0).any() else math.nan
    return out


def our_assigner_view(module: nn.Module, args: tuple, output: Any) -> AssignerView | None:
    if not isinstance(module, TaskAlignedAssigner) or not isinstance(output, Assignment):
        return None
    pred_boxes, gt_boxes, gt_mask = args[1], args[4], args[5]
    return pred_boxes, gt_boxes, gt_mask.reshape(gt_boxes.shape[:2]).bool(), output.foreground, output.target_gt_index


class TrainingProbe:
    """Records into ``records[side]`` while installed (``with probe:``); set ``probe.side`` before
    each trainer runs."""

    def __init__(self) -> None:
        self.side = "ours"
        self.records: dict[str, SideRecord] = {}
        self._handles: list[Any] = []
        self._clip: Callable[..., Tensor] | None = None

    @property
    def record(self) -> SideRecord:
        return self.records.setdefault(self.side, SideRecord())

    def __enter__(self) -> TrainingProbe:
        self._handles = [
            optimizer_module.register_optimizer_step_pre_hook(self._on_step),
            nn.modules.module.register_module_forward_hook(self._on_forward),
        ]
        self._clip = torch.nn.utils.clip_grad_norm_
        original = self._clip

        def clip_and_record(*args: Any, **kwargs: Any) -> Tensor:
            norm = original(*args, **kwargs)
            self.record.grad_norms.append(float(norm))
            return norm

        torch.nn.utils.clip_grad_norm_ = clip_and_record
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if self._clip is not None:
            torch.nn.utils.clip_grad_norm_ = self._clip
            self._clip = None

    def _on_step(self, optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        record = self.record
        groups = []
        for i, g in enumerate(optimizer.param_groups):
            groups.append(
                {
                    "name": str(g.get("name", g.get("param_group", i))),
                    "lr": float(g["lr"]),
                    "momentum": float(g.get("momentum", g.get("betas", (math.nan,))[0])),
                    "weight_decay": float(g.get("weight_decay", 0.0)),
                    "nesterov": bool(g.get("nesterov", False)),
                    "params": sum(p.numel() for p in g["params"]),
                }
            )
        previous = record.steps[-1]["batches"] if record.steps else 0
        record.steps.append({"batches": record.batches, "accumulated": record.batches - previous, "groups": groups})

    def _on_forward(self, module: nn.Module, args: tuple, output: Any) -> None:
        if isinstance(module, BATCHNORMS):
            if module.training and id(module) not in self.record._bn_seen:
                self.record._bn_seen.add(id(module))
                self.record.batchnorm[(float(module.eps), float(module.momentum or 0.0))] += 1
            return
        if not torch.is_grad_enabled():  # Ultralytics' validation computes its loss too: not a training batch
            return
        view = our_assigner_view(module, args, output) or ul.assigner_view(module, args, output)
        if view is None:
            return
        self.record.batches += 1
        self.record.positives.extend(assignment_positives(*view))


@torch.no_grad()
def assignment_positives(
    pred_boxes: Tensor, gt_boxes: Tensor, gt_mask: Tensor, foreground: Tensor, gt_index: Tensor
) -> list[tuple[float, int, float]]:
    """Per real ground truth: its side (square root of its area, px), how many points were assigned
    to it, and the mean IoU of their predicted boxes with it."""
    out = []
    for b in range(gt_boxes.shape[0]):
        real = gt_mask[b].nonzero().flatten()
        if real.numel() == 0:
            continue
        fg = foreground[b]
        owners = gt_index[b][fg]
        preds = pred_boxes[b][fg].float()
        for g in real.tolist():
            box = gt_boxes[b, g].float()
            side = float(((box[2] - box[0]).clamp(min=0) * (box[3] - box[1]).clamp(min=0)).sqrt())
            mine = preds[owners == g]
            iou = float(box_iou(mine, box[None]).mean()) if mine.numel() else math.nan
            out.append((side, int(mine.shape[0]), iou))
    return out
