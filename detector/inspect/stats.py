"""What a convolution learned: statistics of its weights, and how they changed between two models."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor, nn

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@dataclass
class WeightStats:
    """Statistics of one conv's weights (bias excluded). "Near zero" means ``|w| <= tol``."""

    mean: float
    std: float  # population standard deviation of all weights
    filter_norm_min: float  # L2 norm of each output channel's filter: min / median / max
    filter_norm_median: float
    filter_norm_max: float
    near_zero: float  # fraction of weights near zero
    dead_filters: int  # filters whose weights are all near zero
    gamma_near_zero: float | None  # fraction of the following BatchNorm's |gamma| near zero; None: no BatchNorm
    prunable: int  # output channels that are dead or switched off by a near-zero gamma


def filters(conv: nn.Module) -> Tensor:
    """``[out_channels, fan_in]``: the weights that make each output channel, one row per channel.

    A conv weight is ``[out, in / groups, *kernel]``; a transposed conv's is ``[in, out / groups, *kernel]``,
    whose output channel ``o`` of group ``g`` reads the rows of that group at column ``o`` within it."""
    w = conv.weight.detach().float()
    if isinstance(conv, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        g = conv.groups
        c_in, out_per_group, *kernel = w.shape
        w = w.reshape(g, c_in // g, out_per_group, *kernel).transpose(1, 2)  # [G, out/G, in/G, *k]
        w = w.reshape(g * out_per_group, c_in // g, *kernel)  # [out, in/G, *k]
    return w.reshape(w.shape[0], -1)


def gamma(bn: nn.Module | None) -> Tensor | None:
    """``[C]`` scale of a BatchNorm (None when there is none, or it has no affine scale)."""
    if bn is None or getattr(bn, "weight", None) is None:
        return None
    return bn.weight.detach().float()


def weight_stats(conv: nn.Module, bn: nn.Module | None = None, tol: float = 1e-3) -> WeightStats:
    """Statistics of ``conv``'s weights; ``bn`` is the BatchNorm that consumes its output, if any."""
    rows = filters(conv)  # [O, fan_in]
    norms = rows.norm(dim=1)  # [O]
    dead = (rows.abs() <= tol).all(dim=1)  # [O]
    scale = gamma(bn)
    off = dead.clone()
    gamma_zero: float | None = None
    if scale is not None and scale.numel() == len(dead):
        small = scale.abs() <= tol
        gamma_zero = float(small.float().mean())
        off |= small
    return WeightStats(
        mean=float(rows.mean()),
        std=float(rows.std(correction=0)) if rows.numel() > 1 else 0.0,
        filter_norm_min=float(norms.min()),
        filter_norm_median=float(norms.quantile(0.5)),
        filter_norm_max=float(norms.max()),
        near_zero=float((rows.abs() <= tol).float().mean()),
        dead_filters=int(dead.sum()),
        gamma_near_zero=gamma_zero,
        prunable=int(off.sum()),
    )


@dataclass
class WeightChange:
    """One conv of two models with the same layout: ``||w_other - w|| / ||w||`` (None when the
    shapes differ or the conv is in only one of them)."""

    path: str
    shape: tuple[int, ...] | None  # weight shape in the first model; None: not there
    other_shape: tuple[int, ...] | None  # in the other model
    relative_change: float | None

    @property
    def note(self) -> str:
        if self.shape is None:
            return "only in the other model"
        if self.other_shape is None:
            return "not in the other model"
        if self.shape != self.other_shape:
            return f"shape {'x'.join(map(str, self.shape))} -> {'x'.join(map(str, self.other_shape))}"
        return ""


def compare_weights(model: nn.Module, other: nn.Module) -> list[WeightChange]:
    """Per conv (matched by module path): the relative L2 change of its weight from ``model`` to
    ``other`` and any shape difference; convs of ``model`` first, in module order, then those only in ``other``."""
    ours = {name: m for name, m in model.named_modules() if isinstance(m, CONV_TYPES)}
    theirs = {name: m for name, m in other.named_modules() if isinstance(m, CONV_TYPES)}
    changes = []
    for name in [*ours, *(n for n in theirs if n not in ours)]:
        a, b = ours.get(name), theirs.get(name)
        shape_a = tuple(a.weight.shape) if a is not None else None
        shape_b = tuple(b.weight.shape) if b is not None else None
        change = None
        if a is not None and b is not None and shape_a == shape_b:
            wa, wb = a.weight.detach().float().cpu(), b.weight.detach().float().cpu()
            base = float(wa.norm())
            diff = float((wb - wa).norm())
            change = diff / base if base > 0 else (0.0 if diff == 0 else math.inf)
        changes.append(WeightChange(name, shape_a, shape_b, change))
    return changes
