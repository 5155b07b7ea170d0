"""The initial weights each library draws for one architecture: every tensor's mean and spread,
ours beside Ultralytics' (tensors paired by position, as the import pairs them)."""

from __future__ import annotations

from typing import Any

import torch

from detector.interop import ultralytics as ul
from detector.models import build_model


def initial_differences(model: str, num_classes: int, seed: int, tolerance: float = 0.15) -> dict[str, Any]:
    """Fresh ``model`` from both libraries (seeded alike; the draws themselves differ): the floating
    tensors whose mean or standard deviation differ by more than ``tolerance`` (relative; absolute
    0.05 for the mean), each as (our name, their name, our mean, their mean, our std, their std)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ours = build_model(model, num_classes=num_classes).state_dict()
        torch.manual_seed(seed)
        theirs = ul.model_from_yaml(model, num_classes).state_dict()
    differing, compared = [], 0
    for (ko, vo), (kt, vt) in zip(ours.items(), theirs.items()):
        if not vo.dtype.is_floating_point or vo.numel() < 2:
            continue
        compared += 1
        mo, mt, so, st = (float(x) for x in (vo.mean(), vt.mean(), vo.std(), vt.std()))
        if abs(so - st) > tolerance * max(st, 1e-6) or abs(mo - mt) > 0.05 + tolerance * abs(mt):
            differing.append((ko, kt, mo, mt, so, st))
    return {"tensors": len(ours), "compared": compared, "differing": differing}
