"""Optimiser parameter groups, nominal-batch gradient accumulation and the learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

BIAS_GROUPS = ("biases", "cls_biases")  # groups whose warmup lr falls from warmup_bias_lr (cls_: MuSGD's)


def accumulation_steps(batch: int, nbs: int = 64) -> int:
    """Batches whose gradients are summed before one optimizer step, so a step sees about ``nbs`` images."""
    return max(round(nbs / batch), 1)


def warmup_accumulation(step: int, warmup: int, batch: int, nbs: int = 64) -> int:
    """Accumulation at global batch ``step``: during the ``warmup`` iterations it rises linearly from
    1 (a step per batch) to :func:`accumulation_steps`, so early updates are frequent and small."""
    full = accumulation_steps(batch, nbs)
    if step >= warmup:
        return full
    return max(1, round(float(np.interp(step, [0, warmup], [1.0, nbs / batch]))))


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Three groups, split by tensor rank (not by names): weights (``ndim > 1``, with decay), other
    1-d parameters such as norm scales (no decay), and biases (no decay; their own warmup)."""
    biases = {id(m.bias) for m in model.modules() if isinstance(getattr(m, "bias", None), nn.Parameter)}
    groups: dict[str, list[nn.Parameter]] = {"weights": [], "norms": [], "biases": []}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if p.ndim > 1:
            groups["weights"].append(p)
        elif id(p) in biases:
            groups["biases"].append(p)
        else:
            groups["norms"].append(p)
    return [
        {"params": groups["weights"], "weight_decay": weight_decay, "name": "weights"},
        {"params": groups["norms"], "weight_decay": 0.0, "name": "norms"},
        {"params": groups["biases"], "weight_decay": 0.0, "name": "biases"},
    ]


def build_optimizer(
    model: nn.Module, make: Callable[..., torch.optim.Optimizer], weight_decay: float, batch: int, nbs: int
) -> torch.optim.Optimizer:
    """``make`` is the instantiated ``optim`` config (a partial of the optimizer class). The groups are
    :func:`parameter_groups`, unless the optimizer class makes its own from the model (a static
    ``groups_for_model(model, weight_decay)``, as :class:`~detector.train.musgd.MuSGD` does). Weight
    decay is scaled by the images per step over ``nbs``, so it means the same at any batch size."""
    scaled = weight_decay * batch * accumulation_steps(batch, nbs) / nbs
    groups_for_model = getattr(getattr(make, "func", make), "groups_for_model", parameter_groups)
    optimizer = make(params=groups_for_model(model, scaled))
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    return optimizer


def base_momentum(optimizer: torch.optim.Optimizer) -> float:
    """The momentum the optimizer was configured with (``betas[0]`` for Adam-style optimizers): where
    the warmup's momentum ends."""
    defaults = optimizer.defaults
    return float(defaults.get("momentum", defaults.get("betas", (0.9,))[0]))


@dataclass
class Schedule:
    """Per-epoch decay from 1 to ``final_lr_ratio`` (its shape: :meth:`factor` of a subclass) after a
    per-iteration warmup of ``warmup_epochs`` (never into the last epoch): learning rates rise from 0
    (biases: fall from ``warmup_bias_lr``) and momentum from ``warmup_momentum`` to its configured value."""

    epochs: int
    final_lr_ratio: float
    warmup_epochs: float
    warmup_momentum: float
    warmup_bias_lr: float

    def factor(self, epoch: int) -> float:
        """The learning rate of ``epoch`` as a fraction of the initial one."""
        raise NotImplementedError

    def warmup_iterations(self, batches_per_epoch: int) -> int:
        """``warmup_epochs`` of batches, leaving at least the last epoch out of the warmup (Ultralytics'
        rule since 8.4: a short run is not all warmup)."""
        epochs = min(self.warmup_epochs, max(self.epochs - 1, 0))
        return round(epochs * batches_per_epoch) if epochs > 0 else 0

    def apply(self, optimizer: torch.optim.Optimizer, epoch: int, iteration: int, warmup: int, momentum: float) -> None:
        """Set every group's lr (and momentum / beta1) for global ``iteration`` in ``epoch``."""
        f = self.factor(epoch)
        for group in optimizer.param_groups:
            target = group["initial_lr"] * f
            if iteration < warmup:
                start = self.warmup_bias_lr if group.get("name") in BIAS_GROUPS else 0.0
                group["lr"] = float(np.interp(iteration, [0, warmup], [start, target]))
                m = float(np.interp(iteration, [0, warmup], [self.warmup_momentum, momentum]))
            else:
                group["lr"] = target
                m = momentum
            if "momentum" in group:
                group["momentum"] = m
            elif "betas" in group:
                group["betas"] = (m, group["betas"][1])


class CosineSchedule(Schedule):
    """Cosine decay (``schedule=cosine``)."""

    def factor(self, epoch: int) -> float:
        t = epoch / max(self.epochs, 1)
        return ((1 - math.cos(t * math.pi)) / 2) * (self.final_lr_ratio - 1) + 1


class LinearSchedule(Schedule):
    """Linear decay (``schedule=linear``)."""

    def factor(self, epoch: int) -> float:
        t = epoch / max(self.epochs, 1)
        return (1 - t) * (1.0 - self.final_lr_ratio) + self.final_lr_ratio
