"""Model summary: parameter counts and FLOPs."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_flops(model: nn.Module, imgsz: int | tuple[int, int] = 640) -> int:
    """FLOPs of one eval-mode forward pass on a ``[1, 3, H, W]`` input, from ``torch.utils.flop_counter``.

    Convolutions and matrix products count 2 x MACs, as Ultralytics reports them. The pass runs on
    the meta device (on a copy): no memory for activations, no arithmetic, the model is untouched.
    """
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    # a copy on the meta device: swapping meta tensors into the model itself (torch.func.functional_call)
    # left BatchNorm running statistics of a model in training misbehaving afterwards
    ghost = copy.deepcopy(model).to("meta").eval()
    with FlopCounterMode(display=False) as counter:
        ghost(torch.empty(1, 3, h, w, device="meta"))
    return int(counter.get_total_flops())


def summary(model: nn.Module, imgsz: int = 640) -> dict[str, Any]:
    """``params`` (all, as Ultralytics counts them), ``trainable_params``, ``gflops`` at a square
    ``imgsz`` input, and, for a detector, its ``strides`` and ``num_classes``."""
    info: dict[str, Any] = {
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "gflops": count_flops(model, imgsz) / 1e9,
        "imgsz": imgsz,
    }
    for attr in ("strides", "num_classes", "scale"):
        if hasattr(model, attr):
            info[attr] = getattr(model, attr)
    return info
