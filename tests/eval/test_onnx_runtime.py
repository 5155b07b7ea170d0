"""onnxruntime done well: the session settings reach the session (and keep the outputs), onnxslim's
graph equals the plain export, and the predictor's pre-processing for a runtime is exact."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from detector import build_model
from detector.config.schemas import OnnxRuntimeConfig, OrtExecution, OrtOptimization
from detector.eval.predict import runtime_input
from detector.export.onnx import Decoded, OnnxModel, export_onnx
from detector.letterbox import letterbox, letterbox_batch
from detector.models.detector import EndToEnd
from tests.helpers import assert_same_detections, randomize_batchnorm, run_task

NAMES = ["a", "b", "c"]


def small_model(name: str) -> torch.nn.Module:
    """A 1/16-width model of the family (quick to export), BatchNorm randomised, in eval mode."""
    torch.manual_seed(0)
    model = build_model(name, num_classes=len(NAMES), **{"scale.width": 0.0625})
    randomize_batchnorm(model)
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, object]:
    """A yolov8n (BatchNorm randomised) and its export at 64 px with a dynamic batch axis."""
    model = small_model("yolov8n")
    return model, export_onnx(model, tmp_path_factory.mktemp("onnx") / "m.onnx", 64, NAMES, dynamic=True)


def test_the_default_settings_reach_the_session(exported) -> None:
    import onnxruntime as ort

    options = OnnxModel(exported[1]).session.get_session_options()
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.intra_op_num_threads == 0 and options.inter_op_num_threads == 0
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


@pytest.mark.parametrize(
    "settings",
    [
        OnnxRuntimeConfig(threads=1, spinning=True, optimization=OrtOptimization.basic),
        OnnxRuntimeConfig(
            threads=2, optimization=OrtOptimization.disable, execution=OrtExecution.parallel, inter_threads=2
        ),
        OnnxRuntimeConfig(optimization=OrtOptimization.layout),
    ],
    ids=["one-thread-spinning-basic", "parallel-unoptimised", "layout"],
)
def test_settings_are_applied_and_keep_the_outputs(exported, settings: OnnxRuntimeConfig) -> None:
    import onnxruntime as ort

    model, path = exported
    runtime = OnnxModel(path, settings)
    options = runtime.session.get_session_options()
    level = {"basic": "ORT_ENABLE_BASIC", "disable": "ORT_DISABLE_ALL", "layout": "ORT_ENABLE_LAYOUT"}
    assert options.graph_optimization_level == getattr(ort.GraphOptimizationLevel, level[settings.optimization.value])
    assert options.intra_op_num_threads == settings.threads
    assert options.inter_op_num_threads == settings.inter_threads
    parallel = settings.execution is OrtExecution.parallel
    assert options.execution_mode == (ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == ("1" if settings.spinning else "0")
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = Decoded(model).eval()(x)
    for got, want in zip(runtime(x), expected):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["yolov8n", "yolo26n"])
def test_an_onnxslim_export_equals_the_plain_one(tmp_path, name: str) -> None:
    """simplify=true: far fewer nodes, the same outputs within 1e-5 (boxes in pixels, scores), at batch
    1 and 3; an end-to-end model's top-k rows too. The metadata survives."""
    model = small_model(name)
    plain = export_onnx(model, tmp_path / "plain.onnx", 64, NAMES, dynamic=True, max_det=20)
    slim = export_onnx(model, tmp_path / "slim.onnx", 64, NAMES, dynamic=True, max_det=20, simplify=True)
    nodes = [len(onnx.load(str(p)).graph.node) for p in (plain, slim)]
    assert nodes[1] < 0.75 * nodes[0], nodes
    a, b = OnnxModel(plain), OnnxModel(slim)
    assert (b.names, b.imgsz, b.end2end) == (a.names, a.imgsz, a.end2end) == (NAMES, 64, name == "yolo26n")
    for batch in (1, 3):
        x = torch.rand(batch, 3, 64, 64)
        if a.end2end:
            assert_same_detections(b(x), a(x))
            with torch.no_grad():
                assert_same_detections(b(x), EndToEnd(model, max_det=20).eval()(x))
        else:
            for got, want in zip(b(x), a(x)):
                torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_the_runtime_input_equals_the_pytorch_conversion() -> None:
    """Letterboxed into one array: the same pixels as each image letterboxed alone; then numpy's
    [B, 3, S, S] float32 equals PyTorch's permute and ``/ 255`` bit for bit, contiguous."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((50, 90, 3), (120, 40, 3), (64, 64, 3))]
    boxed, params = letterbox_batch(images, 64)
    alone = [letterbox(image, 64) for image in images]
    np.testing.assert_array_equal(boxed, np.stack([b for b, _ in alone]))
    np.testing.assert_array_equal(params, np.stack([p for _, p in alone]))
    x = runtime_input(boxed)
    assert x.dtype == np.float32 and x.flags["C_CONTIGUOUS"] and x.shape == (3, 3, 64, 64)
    expected = torch.from_numpy(boxed).permute(0, 3, 1, 2).float().div_(255)
    assert torch.equal(torch.from_numpy(x), expected)


def test_predict_py_hands_its_onnxruntime_settings_to_the_session(exported, tmp_path, monkeypatch) -> None:
    import cv2

    import detector.export.runtime

    sessions: list[OnnxModel] = []

    class Recorded(OnnxModel):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            sessions.append(self)

    monkeypatch.setattr(detector.export.runtime, "OnnxModel", Recorded)
    monkeypatch.chdir(tmp_path)
    cv2.imwrite(str(tmp_path / "a.png"), np.random.default_rng(0).integers(0, 256, (40, 70, 3), dtype=np.uint8))
    run_task(
        "scripts/predict.py",
        f"checkpoint={exported[1]}",
        f"source={tmp_path / 'a.png'}",
        "onnxruntime.threads=1",
        "onnxruntime.optimization=extended",
        "onnxruntime.spinning=true",
    )
    (runtime,) = sessions
    assert (runtime.settings.threads, runtime.settings.optimization, runtime.settings.spinning) == (
        1,
        OrtOptimization.extended,
        True,
    )
    options = runtime.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert (tmp_path / "runs" / "predict" / "exp" / "a.json").is_file()
