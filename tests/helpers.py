"""Helpers shared by the tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
YOLO_MODELS = [f"{family}{scale}" for family in ("yolov8", "yolo11") for scale in "nsmlx"]
MODEL_CONFIGS = sorted(p.stem for p in (REPO / "configs" / "model").glob("*.yaml"))


def randomize_batchnorm(model: torch.nn.Module) -> None:
    """Give every BatchNorm non-trivial statistics and affine terms, so that fusing them is a real test."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` in ``cwd`` and capture its output."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
