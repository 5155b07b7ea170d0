"""``python scripts/export.py``: a checkpoint to ONNX, TorchScript or an OpenVINO IR (float32, fp16 or INT8)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from detector.config import instantiate_node
from detector.config.schemas import ExportConfig, ExportFormat
from detector.data.build import load_split
from detector.errors import ConfigError
from detector.eval.exported import SplitMetric
from detector.export.onnx import export_onnx, export_torchscript
from detector.export.openvino import export_openvino, read_metadata, require
from detector.export.quantize import AccuracyControl, Int8Settings, calibration_sample, export_int8
from detector.interop.weights import load_weights
from detector.models.detector import Detector
from detector.models.heads import use_branch
from detector.runs import make_run_dir
from detector.tasks.command_line import CommandLine


def run(cfg: DictConfig, command_line: CommandLine = CommandLine()) -> Path:
    settings: ExportConfig = OmegaConf.to_object(cfg)
    check_options(settings)
    model, meta = load_weights(settings.checkpoint)
    use_branch(model.head, settings.branch)
    end2end = model.head.inference == "one2one"
    calibration = calibration_images(settings) if settings.int8 else []  # before the run directory: mistakes first
    control = accuracy_control(settings, end2end)
    run_dir = make_run_dir(settings.project, settings.task, settings.name, settings.exist_ok)
    stem = Path(settings.checkpoint).stem
    imgsz, names = settings.imgsz, list(meta["names"])
    if settings.format is ExportFormat.onnx:
        path = export_onnx(
            model,
            run_dir / f"{stem}.onnx",
            imgsz,
            names,
            settings.dynamic,
            settings.opset,
            settings.max_det,
            simplify=settings.simplify,
        )
    elif settings.format is ExportFormat.openvino:
        path = export_ir(model, run_dir / f"{stem}.xml", names, settings, calibration, control)
    else:
        with warnings.catch_warnings():  # torch marks TorchScript deprecated; the format still loads everywhere
            warnings.simplefilter("ignore", FutureWarning)
            path = export_torchscript(model, run_dir / f"{stem}.torchscript", imgsz, names, settings.max_det)
    batch = "dynamic batch" if settings.dynamic and path.suffix in {".onnx", ".xml"} else "batch 1"
    if end2end:
        outputs = f"output detections [B, {settings.max_det}, 6]: x1, y1, x2, y2, score, class; end-to-end, no NMS"
    else:
        outputs = "outputs boxes [B, A, 4] xyxy and scores [B, A, C]"
    precision = ""
    if path.suffix == ".xml":
        precision = f"; {'int8' if settings.int8 else 'fp16' if settings.half else 'fp32'} weights"
    if control is not None:
        extra = read_metadata(require("openvino", "format=openvino").Core().read_model(str(path)), path).extra
        drop = float(extra["int8_val_map_float"]) - float(extra["int8_val_map_int8"])
        precision += (
            f"; mAP50-95 on {extra['int8_val_images']} {settings.int8_val_split} images: float "
            f"{float(extra['int8_val_map_float']):.4f}, int8 {float(extra['int8_val_map_int8']):.4f} "
            f"({-100 * drop:+.2f} points, int8_max_drop {100 * settings.int8_max_drop:.2f})"
        )
    print(
        f"exported {settings.checkpoint} -> {path} "
        f"(input [{batch}, 3, {imgsz}, {imgsz}] float in [0, 1]; {outputs}{precision})"
    )
    return path


def check_options(settings: ExportConfig) -> None:
    """Options that only one format reads, given to another, or INT8 without its images."""
    openvino = settings.format is ExportFormat.openvino
    if (settings.half or settings.int8) and not openvino:
        raise ConfigError(f"{'half' if settings.half else 'int8'}=true is an option of format=openvino")
    if settings.half and settings.int8:
        raise ConfigError("half=true and int8=true: choose one (an INT8 model keeps its float parts in float32)")
    if settings.int8 and settings.data is None:
        raise ConfigError("int8=true calibrates on images: give data=NAME (data=shapes, data=yolo data.file=...)")
    if settings.int8 and settings.int8_images < 1:
        raise ConfigError(f"int8_images={settings.int8_images}: at least 1")
    if settings.int8_max_drop is not None and not settings.int8:
        raise ConfigError("int8_max_drop is an option of int8=true")
    if settings.int8_max_drop is not None and settings.int8_max_drop < 0:
        raise ConfigError(
            f"int8_max_drop={settings.int8_max_drop}: mAP50-95 points as a fraction, >= 0 (0.01: one point)"
        )
    if settings.int8_max_drop is not None and settings.int8_val_images < 1:
        raise ConfigError(f"int8_val_images={settings.int8_val_images}: at least 1")


def calibration_images(settings: ExportConfig) -> list[np.ndarray]:
    """``int8_images`` images of ``int8_split`` (a seeded sample, or all when fewer), letterboxed to
    ``imgsz`` as for validation: each ``[1, 3, imgsz, imgsz]`` float32 in [0, 1]."""
    index = load_split(instantiate_node(settings.data, "data"), settings.int8_split)
    return calibration_sample(index, settings.imgsz, settings.int8_images, settings.seed)


def accuracy_control(settings: ExportConfig, end2end: bool) -> AccuracyControl | None:
    """``int8_max_drop``'s accuracy control, measured on the first ``int8_val_images`` images of
    ``int8_val_split`` (None without it)."""
    if settings.int8_max_drop is None:
        return None
    index = load_split(instantiate_node(settings.data, "data"), settings.int8_val_split)
    if len(index) == 0:
        raise ConfigError(f"int8_max_drop: the {settings.int8_val_split} split has no images to measure mAP on")
    metric = SplitMetric(index.head(settings.int8_val_images), settings.imgsz, end2end)
    return AccuracyControl(settings.int8_max_drop, metric)


def export_ir(
    model: Detector,
    path: Path,
    names: list[str],
    settings: ExportConfig,
    calibration: list[np.ndarray],
    control: AccuracyControl | None = None,
) -> Path:
    """The OpenVINO IR: float32 or fp16 weights, or INT8 calibrated on ``calibration`` (with
    ``control``: NNCF's accuracy control)."""
    if not settings.int8:
        return export_openvino(model, path, settings.imgsz, names, settings.dynamic, settings.half, settings.max_det)
    require("nncf", "int8=true").set_log_level(logging.WARNING)  # its per-node INFO lines; its progress bars stay
    return export_int8(
        model,
        path,
        settings.imgsz,
        names,
        calibration,
        settings.dynamic,
        settings.max_det,
        Int8Settings(
            settings.int8_float.value,
            settings.int8_preset.value,
            settings.int8_ranges.value,
            settings.int8_split,
            control,
            settings.int8_val_split,
        ),
    )
