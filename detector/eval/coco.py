"""COCO metrics with faster-coco-eval, and the evaluator that runs a model over a split.

Ground truth and predictions are written in the COCO formats (original-image pixels, ``[x, y,
w, h]`` boxes, category ids = class indices), so the same files can be scored by any COCO tool.
"""

from __future__ import annotations

import contextlib
import copy
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from faster_coco_eval import COCO, COCOeval_faster
from torch import nn

from detector.data.index import SplitIndex
from detector.data.loader import build_loader
from detector.device import memory_format
from detector.eval.matching import greedy_match
from detector.eval.postprocess import PostProcess
from detector.types import Detections, ProgressCallback

# COCOeval's summary lines, by index into its ``stats``
METRIC_NAMES = {
    "mAP50-95": 0,
    "mAP50": 1,
    "mAP75": 2,
    "AP_small": 3,
    "AP_medium": 4,
    "AP_large": 5,
    "AR1": 6,
    "AR10": 7,
    "AR100": 8,
}


def ground_truth_coco(index: SplitIndex) -> dict[str, Any]:
    """A split's labels as a COCO instances dict (box area as ``area``; crowd regions kept as such)."""
    images, annotations = [], []
    for i in range(len(index)):
        h, w = (int(v) for v in index.sizes[i])
        image_id = int(index.image_ids[i])
        images.append({"id": image_id, "width": w, "height": h, "file_name": index.path(i)})
        boxes, classes, crowd = index.annotations(i)
        for box, c, is_crowd in zip(boxes.tolist(), classes.tolist(), crowd.tolist()):
            bw, bh = box[2] - box[0], box[3] - box[1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(c),
                    "bbox": [box[0], box[1], bw, bh],
                    "area": bw * bh,
                    "iscrowd": int(is_crowd),
                }
            )
    categories = [{"id": c, "name": name} for c, name in enumerate(index.names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def detections_to_coco(image_id: int, det: Detections) -> list[dict[str, Any]]:
    """One image's detections in the COCO results format."""
    boxes = det.boxes.cpu().double()
    xywh = torch.cat((boxes[:, :2], boxes[:, 2:] - boxes[:, :2]), 1).tolist()
    return [
        {
            "image_id": int(image_id),
            "category_id": int(c),
            "bbox": [round(v, 3) for v in b],
            "score": round(float(s), 5),
        }
        for b, s, c in zip(xywh, det.scores.cpu().tolist(), det.classes.cpu().tolist())
    ]


@dataclass
class CocoScores:
    """Summary metrics, per-class AP (IoU 0.50:0.95) and the raw precision array for PR curves."""

    metrics: dict[str, float]
    per_class: dict[str, float]
    precision: np.ndarray  # [T=10 IoUs, R=101 recalls, K classes, A=4 areas, M=3 max-dets]


def coco_scores(ground_truth: dict[str, Any], predictions: list[dict[str, Any]]) -> CocoScores:
    """Score predictions against ground truth with faster-coco-eval (COCOeval semantics)."""
    with contextlib.redirect_stdout(io.StringIO()):  # keep its progress lines out of our output
        gt = COCO(copy.deepcopy(ground_truth))  # both calls add fields to the dicts they are given
        dt = gt.loadRes(copy.deepcopy(predictions)) if predictions else COCO()
        evaluator = COCOeval_faster(gt, dt, "bbox", print_function=lambda *a, **k: None)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = np.asarray(evaluator.stats, dtype=np.float64)
    precision = np.asarray(evaluator.eval["precision"])
    names = {c["id"]: c["name"] for c in ground_truth["categories"]}
    cat_ids = list(evaluator.params.catIds)
    per_class = {}
    for k, cat in enumerate(cat_ids):
        p = precision[:, :, k, 0, -1]
        per_class[names[cat]] = float(p[p > -1].mean()) if (p > -1).any() else float("nan")
    return CocoScores({name: float(stats[i]) for name, i in METRIC_NAMES.items()}, per_class, precision)


@dataclass
class EvalResult:
    scores: CocoScores
    speed: dict[str, float]  # ms per image: preprocess, inference, postprocess
    predictions: list[dict[str, Any]]
    ground_truth: dict[str, Any]
    detections: list[Detections] = field(repr=False)  # per image of the split, in index order


@torch.no_grad()
def evaluate(
    model: nn.Module,
    index: SplitIndex,
    dataset: torch.utils.data.Dataset,
    post: PostProcess,
    device: torch.device,
    batch: int = 16,
    workers: int = 4,
    amp: torch.dtype | None = None,
    progress: ProgressCallback | None = None,
) -> EvalResult:
    """Run ``model`` (eval mode) over ``dataset`` (the letterboxed split of ``index``) and score it,
    in ``amp`` autocast when given (None: full precision). The model is put in eval mode and in the
    device's preferred memory format (:func:`detector.device.memory_format`), in place. An
    end-to-end head is scored by the branch it predicts with (its ``inference``): the one-to-one
    branch's top-k, or the one-to-many branch's NMS. ``progress(done, total)`` hears of the images
    evaluated after each batch."""
    branch = model.head.inference
    return evaluate_branches(model, index, dataset, post, device, (branch,), batch, workers, amp, progress)[branch]


@torch.no_grad()
def evaluate_branches(
    model: nn.Module,
    index: SplitIndex,
    dataset: torch.utils.data.Dataset,
    post: PostProcess,
    device: torch.device,
    branches: Sequence[str],
    batch: int = 16,
    workers: int = 4,
    amp: torch.dtype | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, EvalResult]:
    """:func:`evaluate` of each of the head's ``branches`` (``one2many``: ``post`` with NMS;
    ``one2one``: its top-k, :attr:`PostProcess.end2end`), from one forward pass per batch.
    Inference time is that of the pass that runs them all. ``progress(done, total)`` hears of the
    images evaluated after each batch."""
    fmt = memory_format(device)
    model.eval().to(memory_format=fmt)
    autocast = (lambda: torch.autocast(device.type, dtype=amp)) if amp is not None else contextlib.nullcontext
    loader = build_loader(dataset, batch, shuffle=False, workers=workers, distributed=False)
    posts = {b: post.for_branch(b) for b in branches}
    timings = {b: {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0} for b in branches}
    detections: dict[str, list[Detections]] = {b: [] for b in branches}
    predictions: dict[str, list[dict[str, Any]]] = {b: [] for b in branches}
    images = 0

    def now() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    for batch_data in loader:
        t0 = now()
        x = batch_data.images.to(device, non_blocking=True).float().div_(255).contiguous(memory_format=fmt)
        t1 = now()
        with autocast(), model.head.running(branches):
            out = model(x).float()
        t2 = now()
        images += len(batch_data)
        letterbox, orig_sizes = batch_data.letterbox.to(device), batch_data.orig_sizes.to(device)
        image_ids = batch_data.image_ids.tolist()
        for b in branches:
            t3 = now()
            boxes, scores = model.head.decode(out, b)
            t4 = now()
            dets = posts[b](boxes, scores, letterbox, orig_sizes)
            t5 = now()
            timings[b]["preprocess"] += t1 - t0
            timings[b]["inference"] += t2 - t1 + t4 - t3
            timings[b]["postprocess"] += t5 - t4
            for image_id, det in zip(image_ids, dets):
                det = Detections(det.boxes.cpu(), det.scores.cpu(), det.classes.cpu())
                detections[b].append(det)
                predictions[b] += detections_to_coco(image_id, det)
        if progress is not None:
            progress(images, len(dataset))
    ground_truth = ground_truth_coco(index)
    results = {}
    for b in branches:
        speed = {k: 1000.0 * v / max(images, 1) for k, v in timings[b].items()}
        scores = coco_scores(ground_truth, predictions[b])
        results[b] = EvalResult(scores, speed, predictions[b], ground_truth, detections[b])
    return results


def precision_recall(
    detections: list[Detections], truth: list[tuple[np.ndarray, np.ndarray]], num_classes: int, iou: float = 0.5
) -> tuple[float, float, float]:
    """Mean precision and recall over the classes present, at the confidence that maximises their mean
    F1 (as Ultralytics reports them), with detections matched to true boxes at ``iou`` (best score
    first, each box once). Returns ``(precision, recall, confidence)``."""
    from torchvision.ops import box_iou

    scores, hits, labels = [], [], []
    counts = np.zeros(num_classes, dtype=np.int64)
    for det, (boxes, classes) in zip(detections, truth):
        classes = np.asarray(classes, dtype=np.int64)
        counts += np.bincount(classes, minlength=num_classes)
        order = torch.argsort(det.scores, descending=True)
        d_boxes, d_classes = det.boxes[order], det.classes[order].numpy()
        overlaps = box_iou(d_boxes.float(), torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)).numpy()
        allowed = (d_classes[:, None] == classes[None, :]) & (overlaps >= iou)  # [D, G]
        matched = {k for k, _ in greedy_match(overlaps, allowed, rows_in_order=True)}  # best score first
        hits += [k in matched for k in range(len(d_classes))]
        scores.append(det.scores[order].numpy())
        labels.append(d_classes)
    present = counts > 0
    if not present.any() or not hits:
        return 0.0, 0.0, 0.0
    scores_all, hits_all, labels_all = np.concatenate(scores), np.array(hits), np.concatenate(labels)
    thresholds = np.linspace(0, 1, 1001)
    precision = np.zeros((num_classes, len(thresholds)))
    recall = np.zeros((num_classes, len(thresholds)))
    for c in np.nonzero(present)[0]:
        mine = labels_all == c
        s, h = scores_all[mine], hits_all[mine]
        order = np.argsort(-s)
        if not len(s):
            continue  # no detections of this class: precision and recall 0 at every threshold
        s, tp = s[order], np.cumsum(h[order])
        n = np.searchsorted(-s, -thresholds, side="right")  # detections with score >= threshold
        tp_at = np.where(n > 0, tp[np.maximum(n - 1, 0)], 0)
        precision[c] = tp_at / np.maximum(n, 1)
        recall[c] = tp_at / counts[c]
    p, r = precision[present].mean(0), recall[present].mean(0)
    f1 = 2 * p * r / np.maximum(p + r, 1e-16)
    best = int(np.argmax(f1))
    return float(p[best]), float(r[best]), float(thresholds[best])
