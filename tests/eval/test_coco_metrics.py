"""Metrics equal pycocotools' COCOeval on the same files; evaluate.py writes what it promises."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detector.data.sources import YoloSource
from detector.data.verify import verify_split
from detector.eval.coco import METRIC_NAMES, coco_scores, ground_truth_coco
from tests.data.fixtures import NAMES, write_twin_datasets
from tests.helpers import REPO, run_script, run_task


def pycocotools_stats(gt_path, dt_path) -> np.ndarray:
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        dt = gt.loadRes(str(dt_path))
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def noisy_predictions(ground_truth: dict, seed: int = 0) -> list[dict]:
    """Jittered true boxes with varied scores, some with the wrong class, plus false positives."""
    rng = np.random.default_rng(seed)
    out = []
    for ann in ground_truth["annotations"]:
        x, y, w, h = ann["bbox"]
        for _ in range(int(rng.integers(1, 3))):
            jitter = rng.normal(0, 0.08, 4) * [w, h, w, h]
            cat = ann["category_id"] if rng.random() > 0.15 else int(rng.integers(0, 3))
            out.append(
                {
                    "image_id": ann["image_id"],
                    "category_id": cat,
                    "bbox": [
                        float(x + jitter[0]),
                        float(y + jitter[1]),
                        float(max(w + jitter[2], 1)),
                        float(max(h + jitter[3], 1)),
                    ],
                    "score": float(rng.random()),
                }
            )
    for image in ground_truth["images"]:
        for _ in range(3):
            out.append(
                {
                    "image_id": image["id"],
                    "category_id": int(rng.integers(0, 3)),
                    "bbox": [float(rng.uniform(0, 40)), float(rng.uniform(0, 40)), 20.0, 15.0],
                    "score": float(rng.random() * 0.5),
                }
            )
    return out


def test_metrics_equal_pycocotools_on_the_same_files(tmp_path) -> None:
    data_yaml, _, _ = write_twin_datasets(tmp_path)
    index = verify_split(YoloSource(NAMES, 3, file=str(data_yaml)).split("val"), cache_dir=tmp_path / "c")
    gt = ground_truth_coco(index)
    predictions = noisy_predictions(gt)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(predictions))
    ours = coco_scores(json.loads((tmp_path / "gt.json").read_text()), json.loads((tmp_path / "dt.json").read_text()))
    reference = pycocotools_stats(tmp_path / "gt.json", tmp_path / "dt.json")
    assert 0.2 < ours.metrics["mAP50-95"] < 0.95  # a non-trivial case
    for name, i in METRIC_NAMES.items():
        assert ours.metrics[name] == pytest.approx(reference[i], abs=1e-6), name


def tiny_checkpoint(tmp_path) -> str:
    from omegaconf import OmegaConf

    from detector.checkpoint import save_checkpoint
    from detector.config import compose
    from detector.models.zoo import instantiate_model

    cfg = compose("train", ["model=yolov8n", "model.scale.width=0.0625"])
    config = OmegaConf.to_container(cfg.model, resolve=True)
    model = instantiate_model(config)
    return str(save_checkpoint(tmp_path / "tiny.pt", model, config, list(cfg.data.names), imgsz=64))


def test_evaluate_script_writes_metrics_that_pycocotools_reproduces(tmp_path) -> None:
    checkpoint = tiny_checkpoint(tmp_path)
    shapes = ["data.num_train=4", "data.num_val=6", "data.imgsz=96", f"data.root={tmp_path / 'shapes'}"]
    result = run_script(
        str(REPO / "scripts" / "evaluate.py"),
        f"checkpoint={checkpoint}",
        *shapes,
        "imgsz=64",
        "batch=4",
        "workers=0",
        "conf=0.0001",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "runs" / "evaluate" / "exp"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    predictions = json.loads((run_dir / "predictions.json").read_text())
    assert predictions and {"image_id", "category_id", "bbox", "score"} <= set(predictions[0])
    reference = pycocotools_stats(run_dir / "ground_truth.json", run_dir / "predictions.json")
    for name, i in METRIC_NAMES.items():
        assert metrics[name] == pytest.approx(reference[i], abs=1e-6), name
    assert set(metrics["speed_ms_per_image"]) == {"preprocess", "inference", "postprocess"}
    assert set(metrics["per_class_AP50-95"]) == {"circle", "rectangle", "triangle", "star", "hexagon", "cross"}
    for png in ("pr_curves.png", "confusion_matrix.png", "val_predictions.png"):
        assert (run_dir / png).stat().st_size > 1000
    assert "AP50-95" in result.stdout and "circle" in result.stdout


def test_confusion_matrix_counts_hand_computed_cases() -> None:
    import torch

    from detector.eval.plots import confusion_matrix
    from detector.types import Detections

    det = Detections(
        boxes=torch.tensor([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60], [0, 0, 10, 10.0]]),
        scores=torch.tensor([0.9, 0.8, 0.7, 0.1]),  # the last is below conf 0.25: ignored
        classes=torch.tensor([0, 1, 1, 1]),
    )
    truth = (np.array([[0, 0, 10, 10], [20, 20, 30, 30], [80, 80, 90, 90]], np.float32), np.array([0, 0, 1]))
    matrix = confusion_matrix([det], [truth], num_classes=2)
    expected = np.zeros((3, 3), int)
    expected[0, 0] = 1  # right
    expected[1, 0] = 1  # class 0 taken for class 1
    expected[1, 2] = 1  # a detection of nothing
    expected[2, 1] = 1  # a class-1 object missed
    np.testing.assert_array_equal(matrix, expected)


def test_evaluate_scores_both_branches_of_an_end_to_end_model(tmp_path, monkeypatch, capsys) -> None:
    """YOLO26 (tiny width): the table and files are the inference branch's (one2one unless branch=),
    metrics.json holds both branches, and a run with branch=one2many reproduces the other's figures."""
    from omegaconf import OmegaConf

    from detector.checkpoint import save_checkpoint
    from detector.config import compose
    from detector.models.zoo import instantiate_model
    from detector.tasks.evaluate import selected_by

    cfg = compose("train", ["model=yolo26n", "model.scale.width=0.0625"])
    config = OmegaConf.to_container(cfg.model, resolve=True)
    checkpoint = save_checkpoint(tmp_path / "e2e.pt", instantiate_model(config), config, list(cfg.data.names), imgsz=64)
    shapes = ["data.num_train=4", "data.num_val=6", "data.imgsz=96", f"data.root={tmp_path / 'shapes'}"]
    common = [f"checkpoint={checkpoint}", *shapes, "imgsz=64", "batch=4", "workers=0", "conf=0.0001", "plots=false"]
    monkeypatch.chdir(tmp_path)
    run_task("scripts/evaluate.py", *common)
    printed = capsys.readouterr().out
    assert "end-to-end (one-to-one branch" in printed and "one-to-many branch + NMS" in printed
    run_task("scripts/evaluate.py", *common, "branch=one2many")
    one2one = json.loads((tmp_path / "runs" / "evaluate" / "exp" / "metrics.json").read_text())
    one2many = json.loads((tmp_path / "runs" / "evaluate" / "exp2" / "metrics.json").read_text())
    assert one2one["settings"]["branch"] == "one2one" and one2many["settings"]["branch"] == "one2many"
    assert set(one2one["branches"]) == set(one2many["branches"]) == {"one2one", "one2many"}
    for name in METRIC_NAMES:
        assert one2one["branches"]["one2many"][name] == one2many[name], name
        assert one2many["branches"]["one2one"][name] == one2one[name], name
    predictions = json.loads((tmp_path / "runs" / "evaluate" / "exp" / "predictions.json").read_text())
    per_image = np.bincount([p["image_id"] for p in predictions])
    assert per_image.max() == 8 * 8 + 4 * 4 + 2 * 2  # top-k of min(max_det, locations at 64 px) rows per image
    nms = json.loads((tmp_path / "runs" / "evaluate" / "exp2" / "predictions.json").read_text())
    assert len(nms) != len(predictions)

    ultralytics = {"format": "ultralytics", "ultralytics": {"train_args": {"nms": False}}}
    assert "one-to-one" in selected_by(ultralytics)
    assert "one-to-many" in selected_by({"format": "ultralytics", "ultralytics": {"train_args": {"nms": None}}})
    ours = {"train": {"config": {"train": {"fitness": "mAP50"}}}, "model_config": {"head": {"end2end": True}}}
    assert selected_by(ours) == (
        "our training chose best.pt by the end-to-end (one-to-one branch, top-k, no NMS)'s mAP50 on its validation split"
    )
    assert selected_by({"model_config": {"head": {}}}) is None  # no training record: nothing to say
