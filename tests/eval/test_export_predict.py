"""ONNX / TorchScript parity with PyTorch, and predict.py on real and awkward images."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from detector import build_model
from detector.export.onnx import Decoded, OnnxModel, export_onnx, export_torchscript
from detector.models.detector import EndToEnd
from tests.eval.test_coco_metrics import tiny_checkpoint
from tests.helpers import assert_same_detections, randomize_batchnorm, run_task


def fused_reference(name: str = "yolo11n"):
    model = build_model(name, num_classes=3)
    randomize_batchnorm(model)
    return model.eval()


def test_onnx_outputs_match_pytorch_at_two_batch_sizes(tmp_path) -> None:
    import onnx

    model = fused_reference()
    path = export_onnx(model, tmp_path / "m.onnx", 96, ["a", "b", "c"], dynamic=True, opset=17)
    assert onnx.load(str(path)).opset_import[0].version >= 17
    exported = OnnxModel(path)
    assert exported.names == ["a", "b", "c"] and exported.imgsz == 96
    reference = Decoded(model).eval()
    for batch in (1, 3):
        x = torch.rand(batch, 3, 96, 96)
        with torch.no_grad():
            boxes, scores = reference(x)
        onnx_boxes, onnx_scores = exported(x)
        assert onnx_boxes.shape == (batch, 189, 4) and onnx_scores.shape == (batch, 189, 3)  # 12² + 6² + 3² cells
        torch.testing.assert_close(onnx_boxes, boxes, atol=1e-4, rtol=0)
        torch.testing.assert_close(onnx_scores, scores, atol=1e-4, rtol=0)


def test_end_to_end_onnx_equals_pytorch_top_k_at_batch_1_and_3(tmp_path) -> None:
    """YOLO26: the graph ends with the top-k, [B, max_det, 6] rows as the PyTorch end-to-end model gives them."""
    torch.manual_seed(0)
    model = fused_reference("yolo26n")
    path = export_onnx(model, tmp_path / "e2e.onnx", 96, ["a", "b", "c"], dynamic=True, max_det=50)
    exported = OnnxModel(path)
    assert exported.end2end
    reference = EndToEnd(model, max_det=50).eval()
    for batch in (1, 3):
        x = torch.rand(batch, 3, 96, 96)
        with torch.no_grad():
            expected = reference(x)
        got = exported(x)
        assert got.shape == expected.shape == (batch, 50, 6)
        assert_same_detections(got, expected)
    one2many = build_model("yolo26n", num_classes=3, **{"head.inference": "one2many"})
    one2many.load_state_dict(model.state_dict())
    boxes, scores = OnnxModel(export_onnx(one2many.eval(), tmp_path / "o2m.onnx", 96, ["a", "b", "c"]))(x[:1])
    assert boxes.shape == (1, 189, 4) and scores.shape == (1, 189, 3)  # today's layout, for NMS


def test_torchscript_outputs_match_pytorch(tmp_path) -> None:
    model = fused_reference("yolov8n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        path = export_torchscript(model, tmp_path / "m.torchscript", 64, ["a", "b", "c"])
        extra = {"names.json": ""}
        loaded = torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(extra["names.json"]) == ["a", "b", "c"]
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        for ours, theirs in zip(loaded(x), Decoded(model)(x)):
            torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


def awkward_images(folder: Path) -> list[str]:
    import ultralytics

    assets = Path(ultralytics.__file__).parent / "assets"
    folder.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(folder / "grey.png"), rng.integers(0, 255, (50, 90), dtype=np.uint8))
    cv2.imwrite(str(folder / "rgba.png"), rng.integers(0, 255, (120, 40, 4), dtype=np.uint8))
    cv2.imwrite(str(folder / "deep.png"), rng.integers(0, 65535, (33, 33, 3), dtype=np.uint16))
    cv2.imwrite(str(folder / "tiny.jpg"), rng.integers(0, 255, (9, 17, 3), dtype=np.uint8))
    cv2.imwrite(str(folder / "wide.jpg"), rng.integers(0, 255, (300, 1000, 3), dtype=np.uint8))
    (folder / "broken.jpg").write_bytes(b"not an image")
    for name in ("bus.jpg", "zidane.jpg"):
        (folder / name).write_bytes((assets / name).read_bytes())
    return ["grey", "rgba", "deep", "tiny", "wide", "bus", "zidane"]


def test_predict_on_images_of_every_kind_with_pt_and_onnx(tmp_path, monkeypatch, capsys) -> None:
    """scripts/predict.py and export.py's tasks, in-process from tmp_path (their command lines are
    covered by the one-line-error tests)."""
    monkeypatch.chdir(tmp_path)
    checkpoint = tiny_checkpoint(tmp_path)
    expected = awkward_images(tmp_path / "images")
    run_task(
        "scripts/predict.py", f"checkpoint={checkpoint}", f"source={tmp_path / 'images'}", "imgsz=64", "conf=0.0002"
    )
    printed = capsys.readouterr().out
    assert "skipped" in printed and "broken.jpg" in printed
    run_dir = tmp_path / "runs" / "predict" / "exp"
    assert sorted(p.stem for p in run_dir.glob("*.json")) == sorted(expected)
    for stem in expected:
        content = json.loads((run_dir / f"{stem}.json").read_text())
        drawn = cv2.imread(str(run_dir / f"{stem}.png"))
        assert drawn.shape[:2] == (content["height"], content["width"])  # drawn at the original size
        for d in content["detections"]:
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 <= x2 <= content["width"] and 0 <= y1 <= y2 <= content["height"]
            assert d["class"] in {"circle", "rectangle", "triangle", "star", "hexagon", "cross"}
    bus = json.loads((run_dir / "bus.json").read_text())
    assert (bus["width"], bus["height"]) == (810, 1080)

    run_task("scripts/export.py", f"checkpoint={checkpoint}", "imgsz=64")
    onnx_file = tmp_path / "runs" / "export" / "exp" / "tiny.onnx"
    run_task(
        "scripts/predict.py",
        f"checkpoint={onnx_file}",
        f"source={tmp_path / 'images' / '*.jpg'}",
        "conf=0.0002",
        "name=onnx",
    )
    for stem in ("bus", "zidane", "tiny", "wide"):
        pt = json.loads((run_dir / f"{stem}.json").read_text())["detections"]
        ox = json.loads((tmp_path / "runs" / "predict" / "onnx" / f"{stem}.json").read_text())["detections"]
        assert len(pt) == len(ox)
        for a, b in zip(pt, ox):
            assert a["class_id"] == b["class_id"] and abs(a["score"] - b["score"]) < 1e-3
            assert np.allclose(a["box"], b["box"], atol=0.05)
