"""Scoring an exported contender (``.onnx`` on ONNX Runtime, an OpenVINO IR): the split through its
runtime at the input size it was exported with, and its latency (one image, the runtime compiled
for latency, then the post-processing). Params and GFLOPs are not in the file: their columns stay empty."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from detector.config.schemas import CompareConfig
from detector.data.build import val_dataset
from detector.data.index import SplitIndex
from detector.data.loader import build_loader
from detector.eval.exported import evaluate_exported
from detector.eval.postprocess import PostProcess
from detector.export.runtime import load_exported
from detector.tools.compare.contenders import Contender
from detector.tools.timing import median_ms


def score_exported(
    c: Contender, index: SplitIndex, settings: CompareConfig, post: PostProcess, latency: bool = True
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """An exported contender's table row, ``metrics.json`` content and COCO predictions."""
    runtime = c.exported
    imgsz = int(runtime.imgsz)
    notes = list(c.notes)
    if imgsz != settings.imgsz:
        notes.append(f"scored at imgsz {imgsz}, the size it was exported at")
    dataset = val_dataset(index, imgsz)
    result = evaluate_exported(runtime, index, dataset, post, settings.batch, settings.workers)
    ms = (
        median_ms(exported_step(c.label, dataset, post), settings.latency_warmup, settings.latency_repeats)
        if latency
        else None
    )
    branch = "one2one" if runtime.end2end else "one2many"
    metrics: dict[str, Any] = {
        "model": c.label,
        "kind": c.kind,
        "our_evaluator": result.scores.metrics,
        "branch": branch,
        "branches": {branch: result.scores.metrics},
        "per_class_AP50-95": result.scores.per_class,
        "params": None,
        "gflops": None,
        "latency_ms": ms,
        "speed_ms_per_image": result.speed,
        "class_map": None,
        "runtime": runtime.description,
        "imgsz": imgsz,
    }
    row = {
        "model": c.label,
        "kind": c.kind,
        "classes": len(index.names),
        "mAP50-95": result.scores.metrics["mAP50-95"],
        "mAP50": result.scores.metrics["mAP50"],
        "branch": None,
        "other_mAP50-95": None,
        "other_mAP50": None,
        "ultralytics_mAP50-95": None,
        "ultralytics_mAP50": None,
        "params": None,
        "gflops": None,
        "latency_ms": ms,
        "ultralytics_latency_ms": None,
        "notes": "; ".join(notes),
    }
    return row, metrics, result.predictions


def exported_step(path: str, dataset: Any, post: PostProcess) -> Callable[[], Any]:
    """One image through the runtime compiled for latency, then the post-processing (letterbox undone),
    on the split's first image."""
    runtime = load_exported(path, throughput=False)
    sample = next(iter(build_loader(dataset, 1, shuffle=False, workers=0, distributed=False)))
    x = sample.images.float().div_(255)  # [1, 3, imgsz, imgsz]
    post = post.for_branch("one2one" if runtime.end2end else "one2many")

    @torch.no_grad()
    def step() -> Any:
        out = runtime(x)
        if runtime.end2end:
            return post.rows(out, sample.letterbox, sample.orig_sizes)
        return post(out[0], out[1], sample.letterbox, sample.orig_sizes)

    return step
