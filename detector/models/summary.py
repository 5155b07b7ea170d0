"""Model summary: parameter counts and FLOPs."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode


def count_flops(model: nn.Module, imgsz: int | tuple[int, int] = 640) -> int:
    """FLOPs of one eval-mode forward pass on a ``[1, 3, H, W]`` input, from ``torch.utils.flop_counter``.

    Convolutions and matrix products count 2 x MACs, as Ultralytics reports them. The pass runs on
    the meta device: no memory for activations, no arithmetic, the model itself is untouched.
    """
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    tensors = {
        **{k: torch.empty_like(v, device="meta") for k, v in model.named_parameters()},
        **{k: torch.empty_like(v, device="meta") for k, v in model.named_buffers()},
    }
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            functional_call(model, tensors, (torch.empty(1, 3, h, w, device="meta"),))
    finally:
        model.train(was_training)
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
