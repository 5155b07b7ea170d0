"""detector.load(...).predict(...): the same detections as scripts/predict.py and as the single-image
predictor, batched or not, from paths, arrays (RGB or BGR), PIL images, checkpoints of ours,
Ultralytics' and exported ONNX files; end-to-end models on either branch."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import detector
from detector.errors import ConfigError
from detector.eval.postprocess import PostProcess
from detector.eval.predict import Predictor
from detector.images import decode_image
from detector.interop.weights import load_weights
from detector.models.heads import use_branch
from detector.predict import Results, load
from tests.helpers import REPO, run_task

SETTINGS = dict(conf=0.55, imgsz=96)


def reference(weights: Path, image: np.ndarray, branch: str | None = None, imgsz: int = 96):
    """The single-image predictor scripts/predict.py ran per image before the API."""
    model, _ = load_weights(weights)
    use_branch(model.head, branch)
    post = PostProcess(conf=SETTINGS["conf"], multi_label=False)
    return Predictor(model, torch.device("cpu"), imgsz, post)(image)


def assert_matches(result: Results, det) -> None:
    """The same detections up to float rounding (a batched convolution rounds differently from a
    single image's: boxes 1e-3 px + 1e-4 relative, scores 1e-4), in score order up to near-ties; a
    detection within that rounding of the threshold may be on one side only."""
    near = SETTINGS["conf"] + 1e-4
    assert int((result.scores > near).sum()) == int((det.scores > near).sum())
    keep = det.scores.numpy() > near
    det = type(det)(det.boxes[keep], det.scores[keep], det.classes[keep])
    kept = result.scores > near
    result = dataclasses.replace(
        result, boxes=result.boxes[kept], scores=result.scores[kept], class_ids=result.class_ids[kept]
    )
    np.testing.assert_allclose(result.scores, det.scores.numpy(), atol=1e-4, rtol=0)
    free = np.ones(len(det), dtype=bool)
    for box, score, c in zip(result.boxes, result.scores, result.class_ids):
        same = (
            free
            & (det.classes.numpy() == c)
            & (np.abs(det.scores.numpy() - score) <= 1e-4)
            & np.all(np.abs(det.boxes.numpy() - box) <= 1e-3 + 1e-4 * np.abs(box), axis=1)
        )
        assert same.any(), f"no reference detection matches {box}, {score}, {c}"
        free[np.flatnonzero(same)[0]] = False


def test_predict_script_writes_what_the_api_returns(yolov8_weights, images, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = images[0].parent
    run_dir = run_task(
        "scripts/predict.py", f"checkpoint={yolov8_weights}", f"source={folder}", "imgsz=96", "conf=0.55", "device=cpu"
    )
    skipped: list[str] = []
    results = load(yolov8_weights, "cpu").predict(folder, **SETTINGS, batch=3, on_skip=skipped.append)
    assert skipped == [f"{folder / 'broken.jpg'}: not an image OpenCV can read"]
    assert [r.source for r in results] == [str(p) for p in images]  # sorted, the broken file skipped
    assert sum(len(r) for r in results) > 10
    for path, result in zip(images, results):
        assert json.loads((run_dir / f"{path.stem}.json").read_text()) == result.to_dict()
        drawn = decode_image(run_dir / f"{path.stem}.png")
        np.testing.assert_array_equal(drawn, result.plot())


def test_batched_equals_one_at_a_time_and_the_single_image_predictor(yolov8_weights, images) -> None:
    model = load(yolov8_weights, "cpu")
    one = model.predict(images, **SETTINGS, batch=1)
    many = model.predict(images, **SETTINGS, batch=4)
    for path, a, b in zip(images, one, many):
        det = reference(yolov8_weights, decode_image(path))
        assert_matches(a, det)
        assert_matches(b, det)
        assert (a.width, a.height) == (decode_image(path).shape[1], decode_image(path).shape[0])


@pytest.mark.parametrize("branch", [None, "one2many"])
def test_end_to_end_models_on_either_branch(yolo26_weights, images, branch) -> None:
    results = load(yolo26_weights, "cpu", branch=branch).predict(images[:3], **SETTINGS)
    for path, result in zip(images, results):
        assert_matches(result, reference(yolo26_weights, decode_image(path), branch))
    assert sum(len(r) for r in results) > 0


def test_the_branches_differ_and_a_plain_head_has_one(yolo26_weights, yolov8_weights, images) -> None:
    one2one = load(yolo26_weights, "cpu").predict(images[1], **SETTINGS)[0]
    one2many = load(yolo26_weights, "cpu", branch="one2many").predict(images[1], **SETTINGS)[0]
    assert len(one2one) != len(one2many) or not np.allclose(one2one.scores, one2many.scores)
    with pytest.raises(ConfigError, match="branch=one2one: the model's head has no such branch"):
        load(yolov8_weights, "cpu", branch="one2one")


def test_arrays_in_either_channel_order_and_pil_images(yolov8_weights, images) -> None:
    from PIL import Image

    model = load(yolov8_weights, "cpu")
    path = images[1]
    expected = model.predict(path, **SETTINGS)[0]
    bgr = cv2.imread(str(path))
    rgb = decode_image(path)
    got = model.predict([bgr, rgb, Image.open(path)], **SETTINGS, channels="bgr")
    assert [r.source for r in got] == ["array 0", "array 1", "array 2"]
    assert got[0].to_dict()["detections"] == expected.to_dict()["detections"]  # BGR read as BGR
    assert got[2].to_dict()["detections"] == expected.to_dict()["detections"]  # PIL is RGB whatever channels says
    np.testing.assert_array_equal(got[0].image, rgb)
    np.testing.assert_array_equal(got[1].image, bgr)  # RGB read as BGR: swapped
    assert not np.array_equal(got[1].scores, expected.scores)
    grey = model.predict(images[4], **SETTINGS)[0]  # written as one channel
    from_array = model.predict(cv2.imread(str(images[4]), cv2.IMREAD_GRAYSCALE), **SETTINGS)[0]
    assert from_array.to_dict()["detections"] == grey.to_dict()["detections"]
    with pytest.raises(ConfigError, match=r"source array 0: expected a uint8 image .* float32 of shape \(3, 8, 8\)"):
        model.predict(np.zeros((3, 8, 8), np.float32))


def test_results_serialise_and_draw(yolov8_weights, images) -> None:
    result = load(yolov8_weights, "cpu").predict(str(images[0]), **SETTINGS)[0]
    content = json.loads(result.to_json())
    assert content == result.to_dict() and content["image"] == str(images[0]) and "frame" not in content
    assert [d["class"] for d in content["detections"]] == result.classes
    assert set(result.classes) <= set(result.names)
    rgb, bgr = result.plot(), result.plot("bgr")
    assert rgb.shape == result.image.shape and rgb.dtype == np.uint8
    np.testing.assert_array_equal(bgr, rgb[..., ::-1])
    assert not np.array_equal(rgb, result.image)  # boxes drawn, on a copy


def test_sources_that_name_nothing_and_bad_settings(yolov8_weights, tmp_path) -> None:
    model = load(yolov8_weights, "cpu")
    with pytest.raises(ConfigError, match="no image or video file, folder or glob match"):
        model.predict(tmp_path / "nothing*.jpg")
    with pytest.raises(ConfigError, match="batch=0"):
        model.stream(tmp_path, batch=0)  # checked when called, before anything is read
    with pytest.raises(ConfigError, match="channels='brg'"):
        model.predict(np.zeros((8, 8, 3), np.uint8), channels="brg")


def test_unreadable_files_are_skipped_with_a_warning(yolov8_weights, images) -> None:
    with pytest.warns(UserWarning, match="skipped .*broken.jpg: not an image OpenCV can read"):
        results = load(yolov8_weights, "cpu").predict(images[0].parent / "*.jpg", **SETTINGS)
    assert [Path(r.source).name for r in results] == ["im1.jpg", "im3.jpg"]


def test_onnx_with_a_fixed_batch_predicts_in_batches_as_the_checkpoint(yolov8_weights, images, tmp_path) -> None:
    from detector.export.onnx import export_onnx

    model, meta = load_weights(yolov8_weights)
    path = export_onnx(model, tmp_path / "m.onnx", 64, meta["names"], dynamic=False)
    exported = load(path, "cpu")
    assert exported.imgsz == 64 and exported.names == meta["names"]
    got = exported.predict(images, conf=SETTINGS["conf"], batch=3)  # a static [1, 3, 64, 64] graph, run in chunks
    for result, expected in zip(got, load(yolov8_weights, "cpu").predict(images, conf=SETTINGS["conf"], imgsz=64)):
        assert len(result) == len(expected)
        np.testing.assert_allclose(result.boxes, expected.boxes, atol=1e-2, rtol=0)
        np.testing.assert_allclose(result.scores, expected.scores, atol=1e-4, rtol=0)
    with pytest.raises(ConfigError, match="imgsz=320: this exported model takes 64 x 64 inputs"):
        exported.predict(images[0], imgsz=320)
    with pytest.raises(ConfigError, match="branch=one2many: an exported model predicts with the branch"):
        load(path, "cpu", branch="one2many")


@pytest.mark.slow  # 6 s: the export; the rows' path is in the default run below, the graph in tests/eval
def test_an_end_to_end_onnx_export_predicts_as_its_checkpoint(yolo26_weights, images, tmp_path) -> None:
    from detector.export.onnx import export_onnx
    from detector.types import Detections

    model, meta = load_weights(yolo26_weights)
    path = export_onnx(model, tmp_path / "e2e.onnx", 64, meta["names"], dynamic=True)
    exported = load(path, "cpu")
    got = exported.predict(images, conf=SETTINGS["conf"], batch=3)
    expected = load(yolo26_weights, "cpu").predict(images, conf=SETTINGS["conf"], imgsz=64, batch=3)
    assert sum(len(r) for r in got) > 0
    for result, reference_result in zip(got, expected):
        as_det = Detections(
            *(torch.from_numpy(a) for a in (reference_result.boxes, reference_result.scores)),
            torch.from_numpy(reference_result.class_ids),
        )
        assert_matches(result, as_det)


def test_an_end_to_end_runtime_gives_its_rows_above_conf_in_image_pixels() -> None:
    """A runtime saying ``end2end`` (an ONNX export of YOLO26's one-to-one branch) returns top-k rows
    [B, k, 6] in input pixels: kept above conf, letterbox undone, no NMS."""
    from detector.predict import Model

    class Rows:
        end2end, imgsz = True, 64

        def __call__(self, images: torch.Tensor) -> torch.Tensor:
            rows = torch.tensor([[0.0, 16, 64, 48, 0.9, 2], [0, 16, 32, 32, 0.8, 2], [8, 24, 16, 40, 0.1, 0]])
            return rows.expand(len(images), 3, 6)  # [B, 3, 6], sorted by score

    model = Model(Rows(), ["a", "b", "c"], "cpu")
    wide = np.zeros((100, 200, 3), np.uint8)  # fitted to 64 x 32, padded 16 above: x = 0.32 x', y = 0.32 y' + 16
    results = model.predict([wide, wide], conf=0.5, batch=2)
    for r in results:
        np.testing.assert_allclose(r.boxes, [[0, 0, 200, 100], [0, 0, 100, 50]], atol=1e-4)  # two rows overlap: kept
        assert r.scores.tolist() == pytest.approx([0.9, 0.8]) and r.classes == ["c", "c"]


def test_load_is_the_package_entry_and_importing_detector_stays_light() -> None:
    assert detector.load is load and detector.Results is Results
    code = "import sys, detector; print(sorted(m for m in ('torch', 'cv2', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stderr
