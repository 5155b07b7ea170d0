"""Device selection from the top-level ``device`` setting."""

from __future__ import annotations

import re

import torch

from detector.config import ConfigError


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
