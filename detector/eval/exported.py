"""The evaluator of an exported model's runtime (ONNX Runtime, OpenVINO): the split through the graph
and post-processing, scored as :func:`detector.eval.coco.evaluate` scores a PyTorch model."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from detector.data.index import SplitIndex
from detector.data.loader import build_loader
from detector.eval.coco import EvalResult, coco_scores, detections_to_coco, ground_truth_coco
from detector.eval.postprocess import PostProcess
from detector.types import Detections


@torch.no_grad()
def evaluate_exported(
    model: Callable[[Tensor], Any],
    index: SplitIndex,
    dataset: torch.utils.data.Dataset,
    post: PostProcess,
    batch: int = 16,
    workers: int = 4,
) -> EvalResult:
    """Run an exported graph's runtime over ``dataset`` (the letterboxed split of ``index``, at the
    graph's input size) and score it. ``model`` is called like :class:`detector.models.detector.Decoded`
    (``images [B, 3, H, W] in [0, 1] -> (boxes, scores)``, then ``post``'s NMS) or, when its
    ``end2end`` attribute is true, like :class:`~detector.models.detector.EndToEnd` (``-> [B, k, 6]``
    rows, then ``post``'s confidence threshold only). Runs on the CPU; inference time is the runtime's."""
    end2end = bool(getattr(model, "end2end", False))
    post = post.for_branch("one2one" if end2end else "one2many")
    loader = build_loader(dataset, batch, shuffle=False, workers=workers, distributed=False)
    timings = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
    detections: list[Detections] = []
    predictions: list[dict[str, Any]] = []
    images = 0
    for batch_data in loader:
        t0 = time.perf_counter()
        x = batch_data.images.float().div_(255)
        t1 = time.perf_counter()
        out = model(x)
        t2 = time.perf_counter()
        if end2end:
            dets = post.rows(out, batch_data.letterbox, batch_data.orig_sizes)
        else:
            dets = post(out[0], out[1], batch_data.letterbox, batch_data.orig_sizes)
        t3 = time.perf_counter()
        timings["preprocess"] += t1 - t0
        timings["inference"] += t2 - t1
        timings["postprocess"] += t3 - t2
        images += len(batch_data)
        for image_id, det in zip(batch_data.image_ids.tolist(), dets):
            detections.append(det)
            predictions.extend(detections_to_coco(image_id, det))
    ground_truth = ground_truth_coco(index)
    speed = {k: 1000.0 * v / max(images, 1) for k, v in timings.items()}
    return EvalResult(coco_scores(ground_truth, predictions), speed, predictions, ground_truth, detections)
