"""Validation after each epoch, through the evaluator of :mod:`detector.eval.coco` (Ultralytics' defaults)."""

from __future__ import annotations

import torch
from rich.console import Console
from torch import nn
from torch.utils.data import Dataset

from detector.console import progress_report
from detector.data.index import SplitIndex
from detector.eval.coco import evaluate, precision_recall
from detector.eval.postprocess import PostProcess


class Validator:
    """``validator(model, epoch)``: mAP50-95, mAP50, precision and recall of ``model`` on the split,
    printed as one line and returned (a progress bar while it runs, at a terminal)."""

    def __init__(
        self, index: SplitIndex, dataset: Dataset, device: torch.device, console: Console, batch: int, workers: int
    ) -> None:
        self.index = index
        self.dataset = dataset
        self.device = device
        self.console = console
        self.batch = batch
        self.workers = workers
        self.post = PostProcess()
        self.truth = index.truth()

    def __call__(self, model: nn.Module, epoch: int) -> dict[str, float]:
        with progress_report(self.console, f"validating epoch {epoch + 1}") as report:
            result = evaluate(
                model,
                self.index,
                self.dataset,
                self.post,
                self.device,
                batch=self.batch,
                workers=self.workers,
                progress=report,
            )
        precision, recall, _ = precision_recall(result.detections, self.truth, len(self.index.names))
        m = result.scores.metrics
        self.console.print(
            f"val epoch {epoch + 1}: mAP50-95 {m['mAP50-95']:.4f} mAP50 {m['mAP50']:.4f} "
            f"P {precision:.3f} R {recall:.3f}"
        )
        return {"mAP50-95": m["mAP50-95"], "mAP50": m["mAP50"], "precision": precision, "recall": recall}
