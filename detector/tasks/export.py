"""``python scripts/export.py``: a checkpoint to ONNX or TorchScript."""

from __future__ import annotations

import warnings
from pathlib import Path

from omegaconf import DictConfig

from detector.export.onnx import export_onnx, export_torchscript
from detector.interop.weights import load_weights
from detector.runs import make_run_dir
from detector.tasks.command_line import CommandLine


def run(cfg: DictConfig, command_line: CommandLine = CommandLine()) -> Path:
    model, meta = load_weights(cfg.checkpoint)
    run_dir = make_run_dir(cfg.project, cfg.task, cfg.name, cfg.exist_ok)
    stem = Path(cfg.checkpoint).stem
    if str(getattr(cfg.format, "value", cfg.format)) == "onnx":
        path = export_onnx(model, run_dir / f"{stem}.onnx", cfg.imgsz, meta["names"], cfg.dynamic, cfg.opset)
    else:
        with warnings.catch_warnings():  # torch marks TorchScript deprecated; the format still loads everywhere
            warnings.simplefilter("ignore", FutureWarning)
            path = export_torchscript(model, run_dir / f"{stem}.torchscript", cfg.imgsz, meta["names"])
    batch = "dynamic batch" if cfg.dynamic and path.suffix == ".onnx" else "batch 1"
    print(
        f"exported {cfg.checkpoint} -> {path} (input [{batch}, 3, {cfg.imgsz}, {cfg.imgsz}] float in [0, 1]; "
        "outputs boxes [B, A, 4] xyxy and scores [B, A, C])"
    )
    return path
