"""Device selection from the top-level ``device`` setting, and how a model runs fastest there:
autocast dtype, memory format, ``torch.compile``."""

from __future__ import annotations

import os
import re
import shutil
import sys

import torch
from torch import nn

from detector.errors import ConfigError


def select_device(spec: str) -> torch.device:
    """``auto`` (CUDA if present, else MPS, else CPU), ``cpu``, ``cuda``, ``cuda:N``, ``N`` or ``mps``.

    Asking for an accelerator that is not there is a :class:`ConfigError`, never a silent CPU run.
    """
    spec = str(spec).strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("device=mps but MPS is not available on this machine; use device=cpu or device=auto")
        return torch.device("mps")
    match = re.fullmatch(r"(?:cuda)?(?::?(\d+))?", spec)
    if match is None or spec == "":
        raise ConfigError(f"device={spec!r} is not one of auto, cpu, cuda, cuda:N, N, mps")
    if not torch.cuda.is_available():
        raise ConfigError(f"device={spec} but CUDA is not available on this machine; use device=cpu or device=auto")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(f"device={spec} but only {torch.cuda.device_count()} CUDA device(s) are visible")
    return torch.device("cuda", index)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def autocast_dtype(device: torch.device, amp: bool | None, setting: str = "amp") -> torch.dtype | None:
    """The autocast dtype for an ``amp`` setting, or None for full precision.

    ``None`` (auto): on CUDA (bf16 where supported, else fp16), off elsewhere. ``True``: on CUDA as
    auto, on a CPU bf16, which needs native bf16 support (a :class:`ConfigError` otherwise: emulated
    bf16 is slower than float32). ``False``: off."""
    if amp is False or device.type not in ("cuda", "cpu"):
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp is None:
        return None
    if not cpu_has_native_bf16():
        raise ConfigError(
            f"{setting}=true on a CPU without native bf16 (AVX512-BF16 or AMX): it would be slower than "
            f"float32; use {setting}=false"
        )
    return torch.bfloat16


def memory_format(device: torch.device) -> torch.memory_format:
    """Channels-last where convolutions run faster with it (CUDA; x86 CPUs through oneDNN), else the default."""
    if device.type == "cuda" or (device.type == "cpu" and torch.backends.mkldnn.is_available()):
        return torch.channels_last
    return torch.contiguous_format


# torch.compile's backend for compile=true. Inductor generates fused kernels (C++ with OpenMP on a CPU,
# Triton on CUDA); the default test run swaps in "aot_eager" (the same graph capture and autograd,
# without code generation), since inductor takes minutes to compile a model on a small CPU.
COMPILE_BACKEND = "inductor"


def compile_model(module: nn.Module, device: torch.device, setting: str = "compile") -> nn.Module:
    """``module`` under ``torch.compile`` (``dynamic=False``): a wrapper sharing its parameters and
    buffers (save ``module``'s ``state_dict``: the wrapper's keys carry an ``_orig_mod.`` prefix),
    run as code generated for each input shape it meets. The first call compiles (minutes on a CPU), and so does each new shape
    once (an epoch's smaller last batch, another batch size): each shape gets kernels of its own
    instead of one set for any size. On a CPU without a C++ compiler: :func:`check_compiler`'s error."""
    check_compiler(device, setting)
    return torch.compile(module, backend=COMPILE_BACKEND, dynamic=False)


def check_compiler(device: torch.device, setting: str = "compile") -> None:
    """On a CPU, inductor compiles C++: without a compiler, a :class:`ConfigError` naming ``setting``
    (tasks call this before any work starts)."""
    if COMPILE_BACKEND == "inductor" and device.type == "cpu" and cxx_compiler() is None:
        raise ConfigError(
            f"{setting}=true: torch.compile needs a C++ compiler on a CPU, and neither $CXX nor "
            f"{default_cxx()} was found; install one (e.g. apt-get install g++) or set {setting}=false"
        )


def default_cxx() -> str:
    return "clang++" if sys.platform == "darwin" else "g++"


def cxx_compiler() -> str | None:
    """The C++ compiler inductor would call (``$CXX``, else g++, clang++ on macOS), if it is there."""
    return shutil.which(os.environ.get("CXX") or default_cxx())
