"""The validation figure: one pass over a split through what ``scripts/evaluate.py`` computes and
through Ultralytics' validator (what ``YOLO.val`` runs), with the same weights and settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from detector.config.schemas import BenchValConfig
from detector.data.build import load_split, val_dataset
from detector.data.index import SplitIndex
from detector.data.sources import YoloSource
from detector.eval.coco import evaluate
from detector.eval.postprocess import PostProcess
from detector.interop import ultralytics as ul
from detector.models import Detector
from detector.tools.benchmark.figure import Figure, device_label
from detector.tools.benchmark.weights import Reference
from detector.tools.timing import Alternate, Measure, seconds

Metrics = dict[str, float]


def our_validation(
    model: Detector,
    source: YoloSource,
    split: str,
    imgsz: int,
    batch: int,
    workers: int,
    post: PostProcess,
    device: torch.device,
    dtype: torch.dtype | None = None,
) -> Callable[[], Metrics]:
    """What ``scripts/evaluate.py`` computes, without writing files: the checked split (cached),
    the letterboxed dataset, the evaluator on the fused model (autocast to ``dtype`` if given: its
    ``amp=true``; inference, NMS, COCO metrics). Returns its mAPs."""
    model = model.fuse().to(device)

    def run() -> Metrics:
        index = load_split(source, split, log=lambda line: None)
        result = evaluate(model, index, val_dataset(index, imgsz), post, device, batch, workers, dtype)
        return {"mAP50-95": result.scores.metrics["mAP50-95"], "mAP50": result.scores.metrics["mAP50"]}

    return run


def their_validation(
    reference: Reference,
    source: YoloSource,
    split: str,
    imgsz: int,
    batch: int,
    workers: int,
    post: PostProcess,
    device: torch.device,
    save_dir: Path,
) -> Callable[[], Metrics]:
    """Ultralytics' validator on the same data.yaml split with the same settings and ``YOLO.val``'s
    rectangular batches (for square images the same as ours), no plots or files. It fuses their
    module on the first pass; on a CPU it uses no loader workers whatever ``workers`` says."""
    model = reference.theirs()

    def run() -> Metrics:
        metrics = ul.validate(model, source.where, split, imgsz, batch, post, device, save_dir, True, workers)
        return {"mAP50-95": metrics["mAP50-95"], "mAP50": metrics["mAP50"]}

    return run


def measure(
    c: BenchValConfig,
    post: PostProcess,
    reference: Reference,
    source: YoloSource,
    index: SplitIndex,
    device: torch.device,
    run_dir: Path,
    turns: Alternate,
    our_dtype: torch.dtype | None = None,
) -> Figure:
    """Seconds of one validation pass per repeat (``index``: the split, checked); each side's mAPs
    in the notes."""
    batch = c.batch_cuda if device.type == "cuda" else c.batch
    workers = (
        c.workers if device.type == "cuda" else 0
    )  # Ultralytics' validator uses none on a CPU, whatever it is given
    ours = our_validation(reference.ours(), source, c.split, c.imgsz, batch, workers, post, device, our_dtype)
    save_dir = run_dir / "ultralytics" / "val"
    theirs = their_validation(reference, source, c.split, c.imgsz, batch, workers, post, device, save_dir)
    metrics: dict[str, Metrics] = {}

    def timed(side: str, call: Callable[[], Metrics]) -> Measure:
        def measure() -> float:
            elapsed, metrics[side] = seconds(call)
            return elapsed

        return measure

    results = turns(timed("ours", ours), timed("ultralytics", theirs))
    return Figure(
        "val",
        device_label(device, our_dtype),
        f"validation of the '{c.split}' split, {len(index)} images: data, inference, NMS, metrics (imgsz {c.imgsz}, batch {batch})",
        "s",
        "lower",
        results["ours"],
        results["ultralytics"],
        settings={
            "split": c.split,
            "images": len(index),
            "imgsz": c.imgsz,
            "batch": batch,
            "workers": workers,
            "conf": post.conf,
            "iou": post.iou,
            "max_det": post.max_det,
        },
        notes={"metrics": metrics},
    )
