"""The evaluator reports how far it is after each batch, and scripts/evaluate.py shows it (a line now
and then where no terminal is)."""

from __future__ import annotations

import torch

from detector import build_model
from detector.data.build import load_split, val_dataset
from detector.data.shapes import SHAPE_NAMES
from detector.data.sources import YoloSource
from detector.eval.coco import evaluate
from detector.eval.postprocess import PostProcess


def test_evaluate_reports_the_images_done_after_each_batch(tiny_shapes) -> None:
    index = load_split(YoloSource(list(SHAPE_NAMES), len(SHAPE_NAMES), file=str(tiny_shapes / "data.yaml")), "val")
    model = build_model("yolov8n", num_classes=len(SHAPE_NAMES), **{"scale.width": 0.0625})
    calls: list[tuple[int, int]] = []
    cpu = torch.device("cpu")
    evaluate(
        model,
        index,
        val_dataset(index, 64),
        PostProcess(),
        cpu,
        batch=3,
        workers=0,
        progress=lambda *c: calls.append(c),
    )
    assert calls == [(3, 4), (4, 4)]
