"""The evaluator of an exported model's runtime (ONNX Runtime, OpenVINO): the split through the graph
and post-processing, scored as :func:`detector.eval.coco.evaluate` scores a PyTorch model; and the
same score of a compiled OpenVINO model for NNCF's accuracy control (:class:`SplitMetric`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from detector.data.build import val_dataset
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


class SplitMetric:
    """mAP50-95 of a compiled OpenVINO model on a labelled split, as our evaluator computes it (the
    letterboxed images, the float32 model's post-processing at validation settings, boxes back in
    image pixels, COCO scores): NNCF's validation function for accuracy control.

    NNCF calls it with the compiled model and some of the split's positions (``range(len(self))``;
    :meth:`input` gives the model's input for one); it returns the mAP50-95 over those images and
    the raw outputs per image, which NNCF compares between float and INT8 to rank the operations."""

    def __init__(self, index: SplitIndex, imgsz: int, end2end: bool, post: PostProcess = PostProcess()) -> None:
        if len(index) == 0:
            raise ValueError("no validation images")
        self.dataset = val_dataset(index, imgsz)
        self.ground_truth = ground_truth_coco(index)
        self.end2end = end2end
        self.post = post.for_branch("one2one" if end2end else "one2many")
        self.outputs = ["detections"] if end2end else ["boxes", "scores"]

    def __len__(self) -> int:
        return len(self.dataset)

    def input(self, i: int) -> np.ndarray:
        """The model's input for image ``i``: ``[1, 3, imgsz, imgsz]`` float32 in [0, 1]."""
        return self.dataset[int(i)].image.numpy()[None].astype(np.float32) / 255.0

    def __call__(self, compiled: Any, positions: Iterable[int]) -> tuple[float, list[list[np.ndarray]]]:
        predictions: list[dict[str, Any]] = []
        raw: list[list[np.ndarray]] = []
        image_ids = set()
        for i in positions:
            item = self.dataset[int(i)]
            result = compiled(self.input(i))
            arrays = [np.asarray(result[compiled.output(name)]) for name in self.outputs]
            raw.append(arrays)
            out = [torch.from_numpy(a) for a in arrays]
            letterbox, size = item.letterbox[None], torch.tensor([item.orig_size])
            if self.end2end:
                dets = self.post.rows(out[0], letterbox, size)
            else:
                dets = self.post(out[0], out[1], letterbox, size)
            predictions.extend(detections_to_coco(item.image_id, dets[0]))
            image_ids.add(item.image_id)
        truth = dict(self.ground_truth)
        truth["images"] = [im for im in truth["images"] if im["id"] in image_ids]
        truth["annotations"] = [a for a in truth["annotations"] if a["image_id"] in image_ids]
        return coco_scores(truth, predictions).metrics["mAP50-95"], raw
