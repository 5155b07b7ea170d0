"""Every convolution of a model, in forward order: its geometry, what it sees, and what it learned.

:func:`inspect_layers` runs one forward pass on a blank ``[1, C, *size]`` input with hooks on
every leaf module and a :class:`~detector.inspect.receptive.FieldTracker` watching every torch op,
and returns one :class:`ConvLayer` per conv module (``Conv1d/2d/3d`` and the transposed ones).
Convs the forward pass never calls (the DFL bins of the head) come last, without shapes.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.weak import WeakIdKeyDictionary

from detector.errors import ConfigError
from detector.inspect.receptive import Field, FieldTracker
from detector.inspect.stats import (
    BATCHNORM_TYPES,
    CONV_TYPES,
    WeightStats,
    weight_stats,
)

KINDS = ("regular", "depthwise", "pointwise", "grouped", "transposed")
TRANSPOSED_TYPES = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


@dataclass
class ConvLayer:
    """One conv module. Shapes are ``[C, *spatial]`` of the hooked forward pass (batch 1); sizes,
    fields and jumps are per spatial dimension (``(H, W)`` for images), in input pixels."""

    index: int  # forward order (convs never called come last)
    path: str  # module path, e.g. backbone.stem.conv
    type: str  # Conv2d, ConvTranspose2d, ...
    kind: str  # regular | depthwise | pointwise | grouped | transposed
    in_channels: int
    out_channels: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...] | str  # or 'same' / 'valid'
    dilation: tuple[int, ...]
    output_padding: tuple[int, ...]  # transposed convs only (zeros otherwise)
    groups: int
    bias: bool
    params: int
    norm: str  # bn (a BatchNorm consumes the output) | fused (its BatchNorm was folded in) | none
    norm_path: str | None  # the BatchNorm's module path
    weights: WeightStats
    input_shape: tuple[int, ...] | None = None  # None: never called in the forward pass
    output_shape: tuple[int, ...] | None = None
    expected_size: tuple[int, ...] | None = None  # spatial output size by the formula, from the input size
    macs: int | None = None  # multiply-accumulates at this input size
    receptive_field: tuple[float, ...] | None = None  # inf: global (attention upstream)
    jump: tuple[float, ...] | None = None  # effective stride of the output
    calls: int = 0

    @property
    def called(self) -> bool:
        return self.input_shape is not None

    @property
    def shape_ok(self) -> bool | None:
        """Whether the hooked output size agrees with the formula (None: not called)."""
        if self.output_shape is None or self.expected_size is None:
            return None
        return tuple(self.output_shape[1:]) == tuple(self.expected_size)


@dataclass
class LayerReport:
    """The convs of one model at one input size, and the model's parameter count."""

    input_shape: tuple[int, ...]  # [C, *spatial]
    layers: list[ConvLayer]
    params: int  # all parameters of the model


def totals(layers: Sequence[ConvLayer]) -> dict[str, Any]:
    """Sums over ``layers``: count, parameters, MACs, GFLOPs (2 x MACs), mismatches, dead and prunable filters."""
    macs = sum(layer.macs or 0 for layer in layers)
    return {
        "convs": len(layers),
        "params": sum(layer.params for layer in layers),
        "macs": macs,
        "gflops": 2 * macs / 1e9,
        "shape_mismatches": sum(layer.shape_ok is False for layer in layers),
        "not_called": sum(not layer.called for layer in layers),
        "dead_filters": sum(layer.weights.dead_filters for layer in layers),
        "prunable": sum(layer.weights.prunable for layer in layers),
        "filters": sum(layer.out_channels for layer in layers),
    }


def conv_kind(conv: nn.Module) -> str:
    """regular, depthwise (one group per input channel), pointwise (1x1, no groups), grouped or transposed."""
    if isinstance(conv, TRANSPOSED_TYPES):
        return "transposed"
    if conv.groups > 1 and conv.groups == conv.in_channels:
        return "depthwise"
    if conv.groups > 1:
        return "grouped"
    if all(k == 1 for k in conv.kernel_size):
        return "pointwise"
    return "regular"


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """``floor((size + 2p - d(k - 1) - 1) / s) + 1``."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_transpose_output_size(
    size: int, kernel: int, stride: int, padding: int, dilation: int, output_padding: int
) -> int:
    """``(size - 1) s - 2p + d(k - 1) + output_padding + 1``."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def expected_size(conv: nn.Module, size_in: Sequence[int]) -> tuple[int, ...]:
    """The spatial output size the formula gives for a spatial input size."""
    if isinstance(conv.padding, str):  # 'same' keeps the size (stride 1 only), 'valid' pads nothing
        if conv.padding == "same":
            return tuple(size_in)
        padding = (0,) * len(size_in)
    else:
        padding = conv.padding
    geometry = zip(size_in, conv.kernel_size, conv.stride, padding, conv.dilation)
    if isinstance(conv, TRANSPOSED_TYPES):
        return tuple(
            conv_transpose_output_size(n, k, s, p, d, op) for (n, k, s, p, d), op in zip(geometry, conv.output_padding)
        )
    return tuple(conv_output_size(n, k, s, p, d) for n, k, s, p, d in geometry)


def conv_macs(conv: nn.Module, input_shape: Sequence[int], output_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one call (batch 1): every output element sums ``in / groups x prod(kernel)``
    products; a transposed conv spreads every input element over ``out / groups x prod(kernel)`` outputs."""
    per_tap = math.prod(conv.kernel_size)
    if isinstance(conv, TRANSPOSED_TYPES):
        return math.prod(input_shape) * (conv.out_channels // conv.groups) * per_tap
    return math.prod(output_shape) * (conv.in_channels // conv.groups) * per_tap


@dataclass
class _Seen:
    """What the hooks saw of one conv."""

    input_shape: tuple[int, ...] | None = None
    output_shape: tuple[int, ...] | None = None
    field: Field | None = None
    consumer: nn.Module | None = None  # the first leaf module that read its output
    consumer_path: str | None = None
    calls: int = 0


def _first_tensor(value: Any) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (list, tuple)) and value:
        return _first_tensor(value[0])
    return None


@torch.no_grad()
def _observe(model: nn.Module, x: Tensor) -> tuple[list[nn.Module], dict[nn.Module, _Seen]]:
    """One forward pass with hooks: the convs in call order, and what was seen of each."""
    names = {m: name for name, m in model.named_modules()}
    seen: dict[nn.Module, _Seen] = {}
    order: list[nn.Module] = []
    producers: WeakIdKeyDictionary = WeakIdKeyDictionary()  # conv output tensor -> conv module

    def before(module: nn.Module, args: tuple[Any, ...]) -> None:
        for t in args:
            conv = producers.get(t) if isinstance(t, Tensor) else None
            if conv is not None and seen[conv].consumer is None:
                seen[conv].consumer, seen[conv].consumer_path = module, names.get(module)

    def after(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        record = seen.setdefault(module, _Seen())
        record.calls += 1
        out, inp = _first_tensor(output), _first_tensor(args)
        if record.calls > 1 or out is None or inp is None:
            return
        order.append(module)
        record.input_shape, record.output_shape = tuple(inp.shape[1:]), tuple(out.shape[1:])
        record.field = tracker.field(out)
        producers[out] = module

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    was_training = model.training
    model.eval()  # BatchNorm statistics must not move
    try:
        with ExitStack() as stack, FieldTracker() as tracker:
            for m in leaves:
                stack.callback(m.register_forward_pre_hook(before).remove)
                if isinstance(m, CONV_TYPES):
                    stack.callback(m.register_forward_hook(after).remove)
            tracker.start(x)
            model(x)
    finally:
        model.train(was_training)
    return order, seen


def _norm(conv: nn.Module, seen: _Seen) -> tuple[str, str | None]:
    """bn when a BatchNorm reads the conv's output first; fused when an Identity stands where it was
    (``fuse()`` of our ConvBNAct and of torchvision's conv-bn Sequentials) and the conv has a bias."""
    if isinstance(seen.consumer, BATCHNORM_TYPES):
        return "bn", seen.consumer_path
    if isinstance(seen.consumer, nn.Identity) and conv.bias is not None:
        return "fused", None
    return "none", None


def _tuple(value: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in value)


def inspect_layers(
    model: nn.Module, imgsz: int | Sequence[int] = 640, in_channels: int = 3, zero_tol: float = 1e-3
) -> LayerReport:
    """Every conv of ``model`` at input size ``imgsz`` (an int for a square image, or ``(H, W)``; one
    size per spatial dimension for 1-d and 3-d models), in forward order. ``zero_tol`` is the
    magnitude at or below which a weight or BatchNorm gamma counts as zero."""
    size = (int(imgsz),) * 2 if isinstance(imgsz, int) else tuple(int(s) for s in imgsz)
    first = next(model.parameters(), None)
    x = torch.zeros(
        1,
        in_channels,
        *size,
        device=first.device if first is not None else "cpu",
        dtype=first.dtype if first is not None and first.is_floating_point() else torch.float32,
    )
    order, seen = _observe(model, x)
    names = {m: name for name, m in model.named_modules()}
    convs = order + [m for m in model.modules() if isinstance(m, CONV_TYPES) and m not in order]
    layers = []
    for index, conv in enumerate(convs):
        record = seen.get(conv, _Seen())
        norm, norm_path = _norm(conv, record)
        bn = record.consumer if norm == "bn" else None
        layer = ConvLayer(
            index=index,
            path=names[conv],
            type=type(conv).__name__,
            kind=conv_kind(conv),
            in_channels=conv.in_channels,
            out_channels=conv.out_channels,
            kernel=_tuple(conv.kernel_size),
            stride=_tuple(conv.stride),
            padding=conv.padding if isinstance(conv.padding, str) else _tuple(conv.padding),
            dilation=_tuple(conv.dilation),
            output_padding=_tuple(getattr(conv, "output_padding", (0,) * len(conv.kernel_size))),
            groups=conv.groups,
            bias=conv.bias is not None,
            params=sum(p.numel() for p in conv.parameters(recurse=False)),
            norm=norm,
            norm_path=norm_path,
            weights=weight_stats(conv, bn, zero_tol),
            calls=record.calls,
        )
        if record.input_shape is not None and record.output_shape is not None:
            layer.input_shape, layer.output_shape = record.input_shape, record.output_shape
            layer.expected_size = expected_size(conv, record.input_shape[1:])
            layer.macs = conv_macs(conv, record.input_shape, record.output_shape)
            if record.field is not None:
                layer.receptive_field, layer.jump = record.field.rf, record.field.jump
        layers.append(layer)
    return LayerReport(tuple(x.shape[1:]), layers, sum(p.numel() for p in model.parameters()))


def select_layers(
    layers: Sequence[ConvLayer], patterns: Sequence[str] | str | None = None, kind: str | None = None
) -> list[ConvLayer]:
    """The layers whose path matches any of the glob ``patterns`` (``backbone.*``) and whose kind is
    ``kind``. Selecting nothing is a :class:`ConfigError` that says what the paths and kinds look like."""
    chosen = list(layers)
    if patterns:
        globs = [patterns] if isinstance(patterns, str) else list(patterns)
        chosen = [layer for layer in chosen if any(fnmatch.fnmatchcase(layer.path, g) for g in globs)]
        if not chosen:
            examples = ", ".join(layer.path for layer in layers[:3])
            raise ConfigError(f"layers={','.join(globs)} matches no convolution; conv paths look like {examples}")
    if kind:
        if kind not in KINDS:
            raise ConfigError(f"kind={kind} is not one of {', '.join(KINDS)}")
        present = sorted({layer.kind for layer in chosen})
        chosen = [layer for layer in chosen if layer.kind == kind]
        if not chosen:
            kinds = ", ".join(present)
            raise ConfigError(f"kind={kind}: none of the selected convolutions is {kind} (their kinds: {kinds})")
    return chosen


def find_conv(model: nn.Module, path: str, key: str) -> nn.Module:
    """The conv module at ``path``; a :class:`ConfigError` naming ``key`` (and close paths) otherwise."""
    return _find(model, path, key, convs_only=True)


def find_module(model: nn.Module, path: str, key: str) -> nn.Module:
    """Any module at ``path``; a :class:`ConfigError` naming ``key`` (and close paths) otherwise."""
    return _find(model, path, key, convs_only=False)


def _find(model: nn.Module, path: str, key: str, convs_only: bool) -> nn.Module:
    import difflib

    modules = {name: m for name, m in model.named_modules() if name and (not convs_only or isinstance(m, CONV_TYPES))}
    if path in modules:
        return modules[path]
    what = "convolution" if convs_only else "module"
    close = difflib.get_close_matches(path, list(modules), n=3, cutoff=0.5)
    hint = (
        f"; did you mean {', '.join(close)}?" if close else f"; {what} paths look like {', '.join(list(modules)[:3])}"
    )
    raise ConfigError(f"{key}={path}: the model has no {what} at that path{hint}")
