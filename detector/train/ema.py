"""Exponential moving average of the weights (used for validation and saved)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ModelEMA:
    """``ema = d * ema + (1 - d) * model`` after each optimizer step, with ``d`` ramping up as
    ``decay * (1 - exp(-updates / tau))`` so early averages are not dominated by the initial weights.
    Floating-point buffers (BatchNorm statistics) are averaged the same way; integer ones
    (batch counts) are copied."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0) -> None:
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.tau = tau
        self.updates = updates

    def decay_at(self, updates: int) -> float:
        """The decay applied by update number ``updates`` (1 for the first)."""
        return self.decay * (1 - math.exp(-updates / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay_at(self.updates)
        model_state = model.state_dict()
        for name, value in self.module.state_dict().items():
            source = model_state[name].detach()
            if value.dtype.is_floating_point:
                value.mul_(d).add_(source, alpha=1 - d)
            else:
                value.copy_(source)

    def state_dict(self) -> dict:
        return {"model": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["model"])
        self.updates = int(state["updates"])
