"""Receptive field and jump of every tensor of a forward pass, relative to the input image.

A :class:`FieldTracker` is a ``TorchFunctionMode``: it sees every torch operation of the forward
pass (functional calls, tensor methods, the functions modules call inside), whatever the model is
made of: plain modules, ``torch.fx`` graph modules (the torchvision backbones), concatenations,
residual additions, upsampling. Each tensor produced from the input carries a :class:`Field`,
held in a map keyed by tensor identity that forgets a tensor when it is freed.

The receptive field is the theoretical one along the largest path: the extent, in input pixels,
of the input region that can influence one output position (it may exceed the image). The jump
is the distance in input pixels between two adjacent output positions (the effective stride).

Propagation, per spatial dimension:

- conv / pool with kernel k, stride s, dilation d: ``rf + (k - 1) d jump``, ``jump s``
- transposed conv: ``jump / s``; the field grows by the input positions one output sums over
- adaptive pools and ``interpolate(mode='area')``: as a pool with the largest window they use
- ``interpolate`` / ``Upsample``: ``jump * in / out``; nearest keeps the field, (bi/tri)linear
  widens it by one input position, bicubic by three
- ``pixel_shuffle`` / ``pixel_unshuffle``: a jump divided / multiplied by r (unshuffle widens by r - 1)
- a product of two activations (``matmul``, ``bmm``, ``einsum``, attention): every position sees
  every other, the field becomes global (``inf``)
- everything else (element-wise ops, activations, norms, cat, add, split, view, permute, linear
  layers on channels): the largest field and the finest jump of the tracked inputs
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakIdKeyDictionary


@dataclass(frozen=True)
class Field:
    """Receptive field and jump per spatial dimension (``(H, W)`` for images), in input pixels.
    A receptive field of ``inf`` is global: every input pixel can influence the position."""

    rf: tuple[float, ...]
    jump: tuple[float, ...]

    @classmethod
    def pixel(cls, dims: int) -> Field:
        """The field of the input itself: one pixel, one pixel apart."""
        return cls((1.0,) * dims, (1.0,) * dims)

    @property
    def is_global(self) -> bool:
        return any(math.isinf(r) for r in self.rf)


def _ntuple(value: Any, n: int) -> tuple[int, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value) if len(value) == n else (int(value[0]),) * n
    return (int(value),) * n


def windowed(field: Field, kernel: Sequence[int], stride: Sequence[float], dilation: Sequence[int]) -> Field:
    """The field after a sliding window (conv or pool) of ``kernel`` taps ``dilation`` apart, moved by ``stride``."""
    rf = tuple(r + (k - 1) * d * j for r, k, d, j in zip(field.rf, kernel, dilation, field.jump))
    return Field(rf, tuple(j * s for j, s in zip(field.jump, stride)))


def transposed_taps(kernel: int, stride: int, dilation: int) -> int:
    """How many adjacent input positions (first to last) one output of a transposed conv sums over, at most."""
    best = 1
    for residue in range(stride):
        taps = [t for t in range(kernel) if (residue - t * dilation) % stride == 0]
        if taps:
            best = max(best, (max(taps) - min(taps)) * dilation // stride + 1)
    return best


def transposed(field: Field, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int]) -> Field:
    """The field after a transposed conv."""
    spans = [transposed_taps(k, s, d) for k, s, d in zip(kernel, stride, dilation)]
    rf = tuple(r + (n - 1) * j for r, n, j in zip(field.rf, spans, field.jump))
    return Field(rf, tuple(j / s for j, s in zip(field.jump, stride)))


def adaptive_window(size_in: int, size_out: int) -> int:
    """The largest window an adaptive pool from ``size_in`` to ``size_out`` positions uses."""
    return max(math.ceil((i + 1) * size_in / size_out) - (i * size_in) // size_out for i in range(size_out))


def resampled(field: Field, size_in: Sequence[int], size_out: Sequence[int], extra_taps: int, pooled: bool) -> Field:
    """The field after resizing ``size_in`` to ``size_out``: an adaptive pool when ``pooled``, else an
    interpolation that reads ``extra_taps + 1`` neighbouring inputs per output."""
    rf, jump = [], []
    for r, j, n_in, n_out in zip(field.rf, field.jump, size_in, size_out):
        taps = adaptive_window(n_in, n_out) if pooled else extra_taps + 1
        rf.append(r + (taps - 1) * j)
        jump.append(j * n_in / n_out)
    return Field(tuple(rf), tuple(jump))


def combined(fields: Sequence[Field]) -> Field:
    """Position-wise combination (cat, add, multiply, ...): the largest field, the finest jump."""
    dims = len(fields[0].rf)
    same = [f for f in fields if len(f.rf) == dims]
    rf = tuple(max(f.rf[i] for f in same) for i in range(dims))
    return Field(rf, tuple(min(f.jump[i] for f in same) for i in range(dims)))


def tensors_in(value: Any) -> Iterator[Tensor]:
    """Every tensor in a (nested) structure of arguments or outputs."""
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from tensors_in(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from tensors_in(v)


def bind(names: Sequence[str], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Positional and keyword arguments of a call, by parameter name."""
    bound = dict(zip(names, args))
    bound.update(kwargs)
    return bound


_CONV = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_CONV_T = ("input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation")
_MAX_POOL = ("input", "kernel_size", "stride", "padding", "dilation")
_AVG_POOL = ("input", "kernel_size", "stride", "padding")
_MIXING = {"matmul", "__matmul__", "__rmatmul__", "bmm", "baddbmm", "einsum", "scaled_dot_product_attention"}
_POOL = re.compile(r"(max|avg)_pool[123]d(_with_indices)?")


def _interpolation_taps(mode: str) -> int:
    """Neighbouring inputs an interpolated output reads, besides the nearest (``mode`` of
    ``interpolate``, or the name of the ``upsample_*`` op it calls)."""
    if "nearest" in mode:
        return 0
    return 3 if "cubic" in mode else 1


def _spatial(t: Tensor, dims: int) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape[-dims:])


def propagate(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], fields: list[Field], out: Any) -> Field:
    """The field of the output of torch op ``name`` (``fields``: those of its tracked inputs, in order)."""
    first = fields[0]
    dims = len(first.rf)
    if name.startswith("conv_transpose"):
        a = bind(_CONV_T, args, kwargs)
        kernel = tuple(a["weight"].shape[2:])
        return transposed(first, kernel, _ntuple(a.get("stride", 1), dims), _ntuple(a.get("dilation", 1), dims))
    if name in ("conv1d", "conv2d", "conv3d"):
        a = bind(_CONV, args, kwargs)
        kernel = tuple(a["weight"].shape[2:])
        return windowed(first, kernel, _ntuple(a.get("stride", 1), dims), _ntuple(a.get("dilation", 1), dims))
    if _POOL.fullmatch(name):
        a = bind(_MAX_POOL if name.startswith("max") else _AVG_POOL, args, kwargs)
        kernel = _ntuple(a["kernel_size"], dims)
        stride = a.get("stride") or kernel  # None or an empty list: the kernel size
        return windowed(first, kernel, _ntuple(stride, dims), _ntuple(a.get("dilation", 1), dims))
    outputs = list(tensors_in(out))
    source = args[0] if args else kwargs.get("input")
    if outputs and isinstance(source, Tensor):
        size_in, size_out = _spatial(source, dims), _spatial(outputs[0], dims)
        if name.startswith(("adaptive_avg_pool", "adaptive_max_pool")):
            return resampled(first, size_in, size_out, 0, pooled=True)
        if name == "interpolate" or name.startswith("upsample"):
            mode = kwargs.get("mode", args[3] if len(args) > 3 else "nearest") if name == "interpolate" else name
            if mode == "area":
                return resampled(first, size_in, size_out, 0, pooled=True)
            return resampled(first, size_in, size_out, _interpolation_taps(str(mode)), pooled=False)
        if name == "pixel_shuffle":
            return Field(first.rf, tuple(j * a / b for j, a, b in zip(first.jump, size_in, size_out)))
        if name == "pixel_unshuffle":
            r = [b // a for a, b in zip(size_out, size_in)]
            rf = tuple(f + (k - 1) * j for f, k, j in zip(first.rf, r, first.jump))
            return Field(rf, tuple(j * k for j, k in zip(first.jump, r)))
    if name in _MIXING and len(fields) >= 2:
        return Field((math.inf,) * dims, combined(fields).jump)
    return combined(fields)


class FieldTracker(TorchFunctionMode):
    """Inside ``with FieldTracker() as tracker``: ``tracker.start(x)`` marks the input, then every
    torch op computes its output's :class:`Field`; ``tracker.field(t)`` reads it (None: not from the input)."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: WeakIdKeyDictionary = WeakIdKeyDictionary()

    def start(self, x: Tensor, spatial_dims: int | None = None) -> None:
        self.fields[x] = Field.pixel(spatial_dims if spatial_dims is not None else x.dim() - 2)

    def field(self, t: Tensor) -> Field | None:
        return self.fields.get(t)

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = [f for t in tensors_in((args, kwargs)) if (f := self.fields.get(t)) is not None]
        if not inputs:
            return out
        name = getattr(func, "__name__", "")
        try:
            new = propagate(name, args, kwargs, inputs, out)
        except (IndexError, KeyError, TypeError, ValueError):  # arguments in a form not foreseen: position-wise
            new = combined(inputs)
        for t in tensors_in(out):
            self.fields[t] = new
        in_place = name == "__setitem__" or (name.endswith("_") and not name.endswith("__"))
        if in_place and args and isinstance(args[0], Tensor):  # the first argument now holds the result
            self.fields[args[0]] = new
        return out


def trace_fields(model: torch.nn.Module, x: Tensor) -> FieldTracker:
    """Run ``model(x)`` under a tracker (no gradients) and return the tracker (for tests and notebooks)."""
    with torch.no_grad(), FieldTracker() as tracker:
        tracker.start(x)
        model(x)
    return tracker
