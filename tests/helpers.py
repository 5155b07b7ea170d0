"""Helpers shared by the tests."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
YOLO_MODELS = [f"{family}{scale}" for family in ("yolov8", "yolo11", "yolo26") for scale in "nsmlx"]
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


def run_task(script: str, *overrides: str) -> Any:
    """What ``python <script> *overrides`` does, in this process: the script's task on the composed
    config, with the overrides as the entry point hands them over. For tests where the command line
    itself is not under test (run them from ``tmp_path``: outputs land relative to the working
    directory, as the script's do)."""
    from detector.config import compose
    from detector.tasks.command_line import CommandLine

    name = Path(script).stem.removesuffix("_layers")  # train, evaluate, ..., inspect_layers -> inspect
    task = importlib.import_module(f"detector.tasks.{name}")
    return task.run(compose(name, list(overrides)), CommandLine(tuple(overrides)))


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` in ``cwd`` and capture its output."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def write_ultralytics_checkpoint(
    path: Path, yaml: str = "yolov8n.yaml", num_classes: int = 80, names: list[str] | None = None, stripped: bool = True
) -> Path:
    """Write an Ultralytics detection checkpoint the way its trainer does (random weights, BatchNorm
    statistics randomised): a half-precision EMA model plus optimizer state and training metadata;
    ``stripped`` then passes it through Ultralytics' own ``strip_optimizer``, which gives the form
    its released ``.pt`` files have (``model`` set, no optimizer)."""
    import copy
    from datetime import datetime

    import ultralytics
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils import DEFAULT_CFG_DICT
    from ultralytics.utils.torch_utils import strip_optimizer

    model = DetectionModel(yaml, nc=num_classes, verbose=False)
    randomize_batchnorm(model)
    model.names = dict(enumerate(names or [f"class{i}" for i in range(num_classes)]))
    model.args = {**DEFAULT_CFG_DICT, "model": yaml}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model(torch.rand(1, 3, 64, 64)).__class__  # noqa: B018  (a forward, as training would have made)
    ckpt = {
        "epoch": 2,
        "best_fitness": 0.25,
        "model": None,
        "ema": copy.deepcopy(model).half(),
        "updates": 30,
        "optimizer": optimizer.state_dict(),
        "train_args": dict(model.args),
        "train_metrics": {"metrics/mAP50-95(B)": 0.25},
        "date": datetime.now().isoformat(),
        "version": ultralytics.__version__,
    }
    torch.save(ckpt, path)
    if stripped:
        strip_optimizer(path)
    return Path(path)


def assert_same_detections(got: torch.Tensor, expected: torch.Tensor) -> None:
    """End-to-end detections ``[B, k, 6]`` equal (boxes 1e-3 px, scores 1e-5, same classes) up to the
    order of near-equal scores: a fused model or another runtime moves scores by float rounding, which
    may swap rows whose scores differ by less than that."""
    torch.testing.assert_close(got[..., 4], expected[..., 4], atol=1e-5, rtol=0)  # the scores, in order
    for mine, theirs in zip(got, expected):
        match = (  # [k, k]: our row i and their row j are the same detection
            (mine[:, None, 5] == theirs[None, :, 5])
            & ((mine[:, None, 4] - theirs[None, :, 4]).abs() <= 1e-5)
            & ((mine[:, None, :4] - theirs[None, :, :4]).abs().amax(-1) <= 1e-3)
        )
        free = torch.ones(len(theirs), dtype=torch.bool)
        for i, row in enumerate(match):
            candidates = (row & free).nonzero()
            assert len(candidates), f"no Ultralytics detection matches {mine[i].tolist()}"
            free[candidates[0, 0]] = False
