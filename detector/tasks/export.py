"""``python scripts/export.py``: a checkpoint to ONNX or TorchScript."""

from __future__ import annotations

import warnings
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from detector.config.schemas import ExportConfig, ExportFormat
from detector.export.onnx import export_onnx, export_torchscript
from detector.interop.weights import load_weights
from detector.models.heads import use_branch
from detector.runs import make_run_dir
from detector.tasks.command_line import CommandLine


def run(cfg: DictConfig, command_line: CommandLine = CommandLine()) -> Path:
    settings: ExportConfig = OmegaConf.to_object(cfg)
    model, meta = load_weights(settings.checkpoint)
    use_branch(model.head, settings.branch)
    end2end = model.head.inference == "one2one"
    run_dir = make_run_dir(settings.project, settings.task, settings.name, settings.exist_ok)
    stem = Path(settings.checkpoint).stem
    imgsz = settings.imgsz
    if settings.format is ExportFormat.onnx:
        path = export_onnx(
            model,
            run_dir / f"{stem}.onnx",
            imgsz,
            meta["names"],
            settings.dynamic,
            settings.opset,
            settings.max_det,
            simplify=settings.simplify,
        )
    else:
        with warnings.catch_warnings():  # torch marks TorchScript deprecated; the format still loads everywhere
            warnings.simplefilter("ignore", FutureWarning)
            path = export_torchscript(model, run_dir / f"{stem}.torchscript", imgsz, meta["names"], settings.max_det)
    batch = "dynamic batch" if settings.dynamic and path.suffix == ".onnx" else "batch 1"
    if end2end:
        outputs = f"output detections [B, {settings.max_det}, 6]: x1, y1, x2, y2, score, class; end-to-end, no NMS"
    else:
        outputs = "outputs boxes [B, A, 4] xyxy and scores [B, A, C]"
    print(f"exported {settings.checkpoint} -> {path} (input [{batch}, 3, {imgsz}, {imgsz}] float in [0, 1]; {outputs})")
    return path
