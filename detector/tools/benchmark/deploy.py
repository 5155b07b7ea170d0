"""The deployment figures: each runtime end to end, ours against Ultralytics' own export of the same
weights on the same runtime.

For every runtime (PyTorch eager, PyTorch under ``torch.compile``, ONNX Runtime, OpenVINO float32,
OpenVINO float computing in bf16, OpenVINO INT8) each side exports the weights its own way (ours: ``scripts/export.py``'s functions;
theirs: ``YOLO.export``) and predicts through its own Python entry (ours: ``detector.load(...)
.predict``; theirs: ``YOLO(...).predict``), from image files: decoding, letterbox, inference and
post-processing are all inside the timed call. Three figures per runtime:

- latency: one image per call (a batch-1 export: the fixed shape is what latency deployments use);
- throughput: a list of ``batch`` images per call, predicted in one batch (an export with a dynamic
  batch axis on both sides; Ultralytics' ``dynamic=True`` also frees height and width);
- mAP50-95 and mAP50 on the split, through the same predictors (``conf 0.001``, ``iou 0.7``,
  ``max_det 300``, one label per box as prediction gives), scored by our COCO evaluator for both.
"""

from __future__ import annotations

import functools
import logging
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detector.config.schemas import BenchDeployConfig, DeployRuntime
from detector.data.index import SplitIndex
from detector.eval.coco import coco_scores, detections_to_coco, ground_truth_coco
from detector.eval.postprocess import PostProcess
from detector.export.onnx import export_onnx
from detector.export.openvino import export_openvino, require
from detector.export.quantize import calibration_sample, export_int8
from detector.export.signal_stack import kept_signal_stack
from detector.interop import ultralytics as ul
from detector.predict import load
from detector.tools.benchmark.figure import Figure
from detector.tools.benchmark.weights import Reference
from detector.tools.timing import Alternate, seconds_per_call
from detector.types import Detections

MAP_SETTINGS = {"conf": 0.001, "iou": 0.7, "max_det": 300}  # each side's validation defaults

Predict = Callable[[list[str], int], list[Detections]]  # image paths, batch -> detections per image


@dataclass
class Side:
    """One side's model on one runtime: ``predict(paths, batch)`` with prediction's settings, and
    ``score(paths, batch)`` with validation's, both returning our :class:`Detections` per image."""

    latency: Callable[[str], Any]
    throughput: Callable[[list[str]], Any]
    score: Predict
    described: str


def our_side(
    runtime: DeployRuntime,
    reference: Reference,
    checkpoint: Path,
    folder: Path,
    c: BenchDeployConfig,
    post: PostProcess,
    calibration: Callable[[], list[np.ndarray]],
) -> Side:
    """Our export of ``reference`` for ``runtime`` (written under ``folder``) behind ``detector.load``."""
    compile = runtime is DeployRuntime.compiled
    if runtime in (DeployRuntime.eager, DeployRuntime.compiled):
        single = batched = load(checkpoint, "cpu", imgsz=c.imgsz, compile=compile)
        described = "our checkpoint" + (", torch.compile" if compile else "")
    else:
        model, names = reference.ours().eval(), reference.names
        amp = runtime is DeployRuntime.openvino_bf16
        single = load(export(runtime, model, names, folder / "b1", c, False, calibration), "cpu", amp=amp)
        batched = load(export(runtime, model, names, folder / "dynamic", c, True, calibration), "cpu", amp=amp)
        described = getattr(single.predictor.model, "description", type(single.predictor.model).__name__)

    settings = {"conf": post.conf, "iou": post.iou, "max_det": post.max_det}

    def score(paths: list[str], batch: int) -> list[Detections]:
        results = batched.predict(paths, batch=batch, **MAP_SETTINGS)
        return [
            Detections(torch.from_numpy(r.boxes), torch.from_numpy(r.scores), torch.from_numpy(r.class_ids))
            for r in results
        ]

    return Side(
        latency=lambda path: single.predict(path, **settings),
        throughput=lambda paths: batched.predict(paths, batch=len(paths), **settings),
        score=score,
        described=described,
    )


def export(
    runtime: DeployRuntime,
    model: Any,
    names: list[str],
    folder: Path,
    c: BenchDeployConfig,
    dynamic: bool,
    calibration: Callable[[], list[np.ndarray]],
) -> Path:
    """Our export of ``model`` for ``runtime``, as ``scripts/export.py`` writes it (ONNX simplified by
    onnxslim; INT8 with the export's default settings), batch 1 or with a dynamic batch axis."""
    folder.mkdir(parents=True, exist_ok=True)
    if runtime is DeployRuntime.onnxruntime:
        return export_onnx(model, folder / "model.onnx", c.imgsz, names, dynamic, simplify=True)
    if runtime in (DeployRuntime.openvino, DeployRuntime.openvino_bf16):
        return export_openvino(model, folder / "model.xml", c.imgsz, names, dynamic)
    require("nncf", "openvino_int8").set_log_level(logging.WARNING)  # its per-node INFO lines
    return export_int8(model, folder / "model.xml", c.imgsz, names, calibration(), dynamic)


def their_side(
    runtime: DeployRuntime,
    reference: Reference,
    folder: Path,
    c: BenchDeployConfig,
    post: PostProcess,
    data_yaml: Path,
    train_images: int,
) -> Side:
    """Ultralytics' own export of ``reference`` for ``runtime`` (``YOLO.export``) behind ``YOLO.predict``."""
    YOLO = ul.yolo_class()

    pt = their_checkpoint(reference, folder / "theirs.pt")
    common = {"imgsz": c.imgsz, "device": "cpu", "verbose": False, "save": False}
    common.update(project=str(folder / "runs"), name="predict", exist_ok=True)
    if post.end2end:
        common["nms"] = False  # an end-to-end model's one-to-one branch (YOLO26)
    if runtime in (DeployRuntime.eager, DeployRuntime.compiled):
        single = batched = YOLO(str(pt), task="detect")
        if runtime is DeployRuntime.compiled:
            common["compile"] = True
        described = "Ultralytics .pt" + (", compile=True" if runtime is DeployRuntime.compiled else "")
    else:
        fraction = min(1.0, c.int8_images / max(train_images, 1))
        single = YOLO(str(their_export(runtime, pt, folder / "b1", c, False, data_yaml, fraction)), task="detect")
        batched = YOLO(str(their_export(runtime, pt, folder / "dynamic", c, True, data_yaml, fraction)), task="detect")
        described = f"YOLO.export(format={'onnx' if runtime is DeployRuntime.onnxruntime else 'openvino'})"
        if runtime in (DeployRuntime.openvino, DeployRuntime.openvino_bf16):
            described += ", compiled without a precision hint: bf16 where the CPU has AMX or AVX512-BF16"
    predicting = {**common, "conf": post.conf, "iou": post.iou, "max_det": post.max_det}

    def score(paths: list[str], batch: int) -> list[Detections]:
        out = []
        for start in range(0, len(paths), batch):
            for r in batched.predict(paths[start : start + batch], batch=batch, **common, **MAP_SETTINGS):
                b = r.boxes
                out.append(Detections(b.xyxy.float().cpu(), b.conf.float().cpu(), b.cls.long().cpu()))
        return out

    return Side(
        latency=lambda path: single.predict(path, **predicting),
        throughput=lambda paths: batched.predict(paths, batch=len(paths), **predicting),
        score=score,
        described=described,
    )


def their_checkpoint(reference: Reference, path: Path) -> Path:
    """The reference weights as an Ultralytics ``.pt`` (``YOLO.save`` of their model carrying them)."""
    YOLO = ul.yolo_class()

    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        yolo = YOLO(f"{reference.arch}.yaml", task="detect")
        yolo.model = reference.theirs()
        yolo.save(str(path))
    return path


def their_export(
    runtime: DeployRuntime,
    pt: Path,
    folder: Path,
    c: BenchDeployConfig,
    dynamic: bool,
    data_yaml: Path,
    fraction: float,
) -> Path:
    """``YOLO.export`` of ``pt`` for ``runtime`` in ``folder`` (their defaults otherwise: ONNX simplified;
    INT8 calibrated on ``fraction`` of the training split, about ``int8_images`` images, as ours)."""
    YOLO = ul.yolo_class()

    folder.mkdir(parents=True, exist_ok=True)
    copy = shutil.copyfile(pt, folder / pt.name)  # exports land beside the .pt
    args: dict[str, Any] = {"imgsz": c.imgsz, "device": "cpu", "dynamic": dynamic, "batch": c.batch if dynamic else 1}
    if runtime is DeployRuntime.onnxruntime:
        args["format"] = "onnx"
    else:
        args["format"] = "openvino"
    if runtime is DeployRuntime.openvino_int8:
        args.update(int8=True, data=str(data_yaml), fraction=fraction, split="train")
    with warnings.catch_warnings():  # their OpenVINO export traces with torch.jit, which torch marks deprecated
        warnings.simplefilter("ignore", FutureWarning)
        return Path(YOLO(str(copy), task="detect").export(**args))


def images_for(index: SplitIndex, count: int) -> list[str]:
    """The first ``count`` image paths of ``index`` (repeated when it has fewer)."""
    paths = [p.decode() for p in index.paths]
    return [paths[i % len(paths)] for i in range(count)]


def split_scores(index: SplitIndex, detections: Sequence[Detections]) -> dict[str, float]:
    """mAP50-95 and mAP50 of ``detections`` (one per image of ``index``, in order), by our evaluator."""
    predictions = []
    for image_id, det in zip(index.image_ids.tolist(), detections):
        predictions.extend(detections_to_coco(image_id, det))
    metrics = coco_scores(ground_truth_coco(index), predictions).metrics
    return {"mAP50-95": metrics["mAP50-95"], "mAP50": metrics["mAP50"]}


@kept_signal_stack()  # both sides load OpenVINO's CPU plugin, Ultralytics' into two Cores at once: see signal_stack.py
def measure(
    runtime: DeployRuntime,
    c: BenchDeployConfig,
    post: PostProcess,
    reference: Reference,
    checkpoint: Path,
    val_index: SplitIndex,
    train_index: SplitIndex,
    data_yaml: Path,
    folder: Path,
    turns: Alternate,
) -> list[Figure]:
    """The latency and throughput figures of ``runtime``, each side's mAP in their notes."""
    work = folder / runtime.value
    calibration = functools.cache(lambda: calibration_sample(train_index, c.imgsz, c.int8_images, c.seed))
    ours = our_side(runtime, reference, checkpoint, work / "ours", c, post, calibration)
    theirs = their_side(runtime, reference, work / "ultralytics", c, post, data_yaml, len(train_index))
    image = images_for(val_index, 1)[0]
    batch = images_for(val_index, c.batch)
    latency = turns(
        lambda: 1000.0 * seconds_per_call(lambda: ours.latency(image), c.calls),
        lambda: 1000.0 * seconds_per_call(lambda: theirs.latency(image), c.calls),
    )
    throughput = turns(
        lambda: c.batch / seconds_per_call(lambda: ours.throughput(batch), c.calls),
        lambda: c.batch / seconds_per_call(lambda: theirs.throughput(batch), c.calls),
    )
    paths = images_for(val_index, len(val_index))
    scores = {}
    if c.map:
        scores = {
            "ours": split_scores(val_index, ours.score(paths, c.batch)),
            "ultralytics": split_scores(val_index, theirs.score(paths, c.batch)),
        }
    settings = {"runtime": runtime.value, "imgsz": c.imgsz, "calls_per_repeat": c.calls, "batch": c.batch}
    notes = {
        "ours": ours.described,
        "ultralytics": theirs.described,
        **({"map": scores, "map_images": len(val_index), "map_settings": MAP_SETTINGS} if scores else {}),
    }
    label = f"cpu, {runtime.value}"
    return [
        Figure(
            "deploy_latency",
            label,
            f"{runtime.value}: one image file per call, decoded, letterboxed, inferred, post-processed (imgsz {c.imgsz})",
            "ms",
            "lower",
            latency["ours"],
            latency["ultralytics"],
            settings=settings,
            notes=notes,
        ),
        Figure(
            "deploy_throughput",
            label,
            f"{runtime.value}: {c.batch} image files per call, predicted as one batch (imgsz {c.imgsz})",
            "images/s",
            "higher",
            throughput["ours"],
            throughput["ultralytics"],
            settings=settings,
            notes=notes,
        ),
    ]


def best_runtimes(figures: Sequence[Figure]) -> dict[str, Any] | None:
    """Each side's fastest runtime at batch 1 and the ratio of their latencies (the goal: <= 0.8)."""
    latency = [f for f in figures if f.part == "deploy_latency"]
    if not latency:
        return None
    best = {side: min(latency, key=lambda f: f.medians[side]) for side in ("ours", "ultralytics")}
    ms = {side: best[side].medians[side] for side in best}
    return {
        "ours": {"runtime": best["ours"].settings["runtime"], "ms": ms["ours"]},
        "ultralytics": {"runtime": best["ultralytics"].settings["runtime"], "ms": ms["ultralytics"]},
        "ratio": ms["ours"] / ms["ultralytics"],
        "goal": {"ratio": "<=", "value": 0.8},
        "met": ms["ours"] / ms["ultralytics"] <= 0.8,
        "statistic": "median over repeats",
    }
