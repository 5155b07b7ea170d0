"""OpenVINO export: parity with PyTorch (float32, fp16 weights, end-to-end), the IR's metadata,
evaluate.py / predict.py / compare.py on the .xml, INT8 (what stays in float), one-line errors."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from detector import build_model
from detector.data.shapes import SHAPE_NAMES
from detector.errors import ConfigError
from detector.export.openvino import OpenVinoModel, export_openvino
from detector.export.runtime import load_exported
from detector.models.detector import Decoded, EndToEnd
from tests.eval.test_coco_metrics import tiny_checkpoint
from tests.helpers import REPO, assert_same_detections, randomize_batchnorm, run_script, run_task

pytest.importorskip("openvino")
NAMES = ["a", "b", "c"]


def reference(name: str = "yolo11n", **overrides):
    model = build_model(name, num_classes=3, **overrides)
    randomize_batchnorm(model)
    return model.eval()


def test_float32_and_fp16_ir_match_pytorch(tmp_path) -> None:
    """float32: boxes within 1e-3 px and scores within 1e-4 of PyTorch (one image, a dynamic batch of 3,
    one image again; compiled for latency, for throughput, and for either as the call needs). fp16 weights: boxes within 0.05 px and scores within 1e-3
    (weights rounded to 11 significant bits; the CPU still computes in float32)."""
    model = reference()
    x = torch.rand(3, 3, 96, 96)
    with torch.no_grad():
        boxes, scores = Decoded(model).eval()(x)
    full = export_openvino(model, tmp_path / "fp32" / "m.xml", 96, NAMES, dynamic=True)
    half = export_openvino(model, tmp_path / "fp16" / "m.xml", 96, NAMES, dynamic=True, half=True)
    assert (tmp_path / "fp16" / "m.bin").stat().st_size < 0.6 * (tmp_path / "fp32" / "m.bin").stat().st_size
    for throughput in (False, True, None):  # None: LATENCY for one image, a THROUGHPUT copy for several
        runtime = OpenVinoModel(full, throughput=throughput)
        assert runtime.batch is None and runtime.metadata.precision == "fp32"
        for part in (slice(0, 1), slice(0, 3), slice(1, 2)):
            got_boxes, got_scores = runtime(x[part])
            assert got_boxes.shape == (len(x[part]), 189, 4) and got_scores.shape[1:] == (189, 3)  # 12² + 6² + 3²
            torch.testing.assert_close(got_boxes, boxes[part], atol=1e-3, rtol=0)
            torch.testing.assert_close(got_scores, scores[part], atol=1e-4, rtol=0)
        assert (runtime.queue is not None) == (throughput is not False)  # the batch of 3 made the copy
    runtime = OpenVinoModel(half)
    assert runtime.metadata.precision == "fp16"
    got_boxes, got_scores = runtime(x)
    torch.testing.assert_close(got_boxes, boxes, atol=0.05, rtol=0)
    torch.testing.assert_close(got_scores, scores, atol=1e-3, rtol=0)


def test_amp_runs_an_ir_in_bf16_and_onnx_refuses_it(tmp_path) -> None:
    """amp=true on an OpenVINO IR: the plugin computes in bf16 (on a CPU with native bf16), boxes within
    a few pixels of float32 but not equal to them (the hint took effect); without native bf16 it is
    refused as for a .pt; an ONNX file refuses it."""
    from detector import load
    from detector.device import cpu_has_native_bf16
    from detector.export.onnx import export_onnx

    model = reference(**{"scale.width": 0.25})
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        boxes, scores = Decoded(model).eval()(x)
    xml = export_openvino(model, tmp_path / "m.xml", 96, NAMES, dynamic=True)
    onnx = export_onnx(model, tmp_path / "m.onnx", 96, NAMES)
    with pytest.raises(ConfigError, match=r"amp=true: .*m.onnx runs on onnxruntime in float32"):
        load(onnx, "cpu", amp=True)
    if not cpu_has_native_bf16():
        with pytest.raises(ConfigError, match="amp=true on a CPU without native bf16"):
            load(xml, "cpu", amp=True)
        return
    runtime = load(xml, "cpu", amp=True).predictor.model
    assert "computing in bf16" in runtime.description
    got_boxes, got_scores = runtime(x)
    torch.testing.assert_close(got_boxes, boxes, atol=3.0, rtol=0)
    torch.testing.assert_close(got_scores, scores, atol=0.02, rtol=0)
    assert (got_boxes - boxes).abs().max() > 1e-3


def test_end_to_end_ir_equals_pytorch_top_k(tmp_path) -> None:
    """YOLO26: the IR ends with the top-k, [B, max_det, 6] rows as the PyTorch end-to-end model gives them."""
    torch.manual_seed(0)
    model = reference("yolo26n")
    runtime = OpenVinoModel(export_openvino(model, tmp_path / "e2e.xml", 96, NAMES, dynamic=True, max_det=50))
    assert runtime.end2end and runtime.metadata.extra["max_det"] == "50"
    x = torch.rand(3, 3, 96, 96)
    with torch.no_grad():
        expected = EndToEnd(model, max_det=50).eval()(x)
    for batch in (1, 3):
        got = runtime(x[:batch])
        assert got.shape == (batch, 50, 6)
        assert_same_detections(got, expected[:batch])


def test_metadata_round_trip_and_errors(tmp_path) -> None:
    """The .xml and .bin alone (copied elsewhere) are the whole model: names, imgsz, layout; a folder
    holding them loads too; its static batch of 1 runs a batch of 3 image by image, as PyTorch does
    it. Bad paths are one-line ConfigErrors."""
    import openvino as ov

    names = ["person", "traffic light", 'a "quoted", name', "ünïcode"]
    model = build_model("yolov8n", num_classes=4, **{"scale.width": 0.0625}).eval()
    export_openvino(model, tmp_path / "export" / "m.xml", 64, names)
    alone = tmp_path / "alone"
    alone.mkdir()
    for suffix in (".xml", ".bin"):
        shutil.copy(tmp_path / "export" / f"m{suffix}", alone / f"m{suffix}")
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        boxes, scores = Decoded(model)(x)
    for path, throughput in ((alone / "m.xml", False), (alone, True)):
        runtime = load_exported(path, throughput=throughput)
        assert (runtime.names, runtime.imgsz, runtime.end2end, runtime.batch) == (names, 64, False, 1)
        assert runtime.metadata.precision == "fp32"
        got_boxes, got_scores = runtime(x)
        torch.testing.assert_close(got_boxes, boxes, atol=1e-3, rtol=0)
        torch.testing.assert_close(got_scores, scores, atol=1e-4, rtol=0)
    assert not list(tmp_path.joinpath("export").glob(".m*"))  # no temporary folder left behind

    (tmp_path / "empty").mkdir()
    (tmp_path / "nobin").mkdir()
    shutil.copy(alone / "m.xml", tmp_path / "nobin" / "m.xml")
    (tmp_path / "two").mkdir()
    for name in ("a", "b"):
        shutil.copy(alone / "m.xml", tmp_path / "two" / f"{name}.xml")
    parameter = ov.opset13.parameter([1, 3, 8, 8], np.float32, name="images")  # an IR we did not write
    ov.save_model(ov.Model([ov.opset13.relu(parameter)], [parameter]), str(tmp_path / "foreign.xml"))
    cases = {
        tmp_path / "missing.xml": "OpenVINO model not found",
        tmp_path / "nobin" / "m.xml": "its weights file m.bin is missing beside it",
        tmp_path / "empty": "is a folder with no .xml file: give a checkpoint file (.pt), an .onnx,",
        tmp_path / "two": "holds 2 .xml files (a.xml, b.xml): give the one to use",
        tmp_path / "foreign.xml": "was not exported by detector",
        tmp_path / "missing.onnx": "ONNX model not found",
    }
    for path, message in cases.items():
        with pytest.raises(ConfigError, match=re.escape(message)) as caught:
            load_exported(path)
        assert "\n" not in str(caught.value)
    result = run_script(
        str(REPO / "scripts" / "evaluate.py"), f"checkpoint={tmp_path / 'nobin' / 'm.xml'}", cwd=tmp_path
    )
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nobin' / 'm.xml'}: its weights file m.bin is missing beside it"
    ]


def test_missing_openvino_is_one_line_with_the_pip_command(monkeypatch, tmp_path) -> None:
    import sys

    from detector.export.quantize import quantize_int8

    for module in ("openvino", "onnx", "nncf"):
        monkeypatch.setitem(sys.modules, module, None)  # its import raises ImportError
    with pytest.raises(ConfigError, match=r"format=openvino needs the openvino package .*: pip install openvino "):
        export_openvino(build_model("yolov8n", num_classes=3), tmp_path / "m.xml", 64, NAMES)
    with pytest.raises(ConfigError, match=r"an OpenVINO model \(.xml\) needs the openvino package"):
        OpenVinoModel(tmp_path / "m.xml")
    monkeypatch.delitem(sys.modules, "openvino")
    with pytest.raises(ConfigError, match=r"format=openvino needs the onnx package .*: pip install onnx "):
        export_openvino(build_model("yolov8n", num_classes=3), tmp_path / "m.xml", 64, NAMES)
    with pytest.raises(ConfigError, match=r"int8=true needs the nncf package .*: pip install nncf \(or pip install -e"):
        quantize_int8(object(), [np.zeros((1, 3, 8, 8), np.float32)])


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_evaluate_predict_and_compare_take_the_xml(tmp_path, tiny_data, monkeypatch) -> None:
    """evaluate.py on the .xml gives the .pt's figures and predictions (boxes 1e-3 px, scores 1e-4);
    predict.py and compare.py take the IR's folder."""
    monkeypatch.chdir(tmp_path)
    checkpoint = tiny_checkpoint(tmp_path)
    xml = run_task("scripts/export.py", f"checkpoint={checkpoint}", "format=openvino", "imgsz=64", "name=fp32")
    assert xml == Path("runs/export/fp32/tiny.xml") and xml.with_suffix(".bin").is_file()
    common = [*tiny_data, "imgsz=64", "batch=4", "workers=0", "conf=0.0002", "plots=false"]
    pt_dir = run_task("scripts/evaluate.py", f"checkpoint={checkpoint}", *common, "name=pt")
    ov_dir = run_task("scripts/evaluate.py", f"checkpoint={xml}", *common, "name=ov")
    pt, ov = read_json(pt_dir / "metrics.json"), read_json(ov_dir / "metrics.json")
    for key in ("mAP50-95", "mAP50", "mAP75", "AR100"):
        assert ov[key] == pytest.approx(pt[key], abs=1e-3), key
    pt_predictions, ov_predictions = read_json(pt_dir / "predictions.json"), read_json(ov_dir / "predictions.json")
    assert len(ov_predictions) == len(pt_predictions) > 0
    for a, b in zip(pt_predictions, ov_predictions):
        assert a["category_id"] == b["category_id"] and abs(a["score"] - b["score"]) <= 1e-4
        assert np.allclose(a["bbox"], b["bbox"], atol=2e-3)  # 1e-3 px per corner, written to 3 decimals
    assert ov["settings"]["checkpoint"] == str(xml) and ov["settings"]["branch"] == "one2many"
    with pytest.raises(ConfigError, match="branch=one2one: .* holds the one2many branch only"):
        run_task("scripts/evaluate.py", f"checkpoint={xml}", *common, "branch=one2one")

    images = tmp_path / "images"
    images.mkdir()
    for p in sorted((Path(tiny_data[-1].split("=", 1)[1]) / "images" / "val").glob("*"))[:2]:
        shutil.copy(p, images / p.name)
    for name, model in (("pt", checkpoint), ("ov", xml.parent)):
        run_task(
            "scripts/predict.py", f"checkpoint={model}", f"source={images}", "imgsz=64", "conf=0.0002", f"name={name}"
        )
    for p in images.iterdir():
        a = read_json(tmp_path / "runs" / "predict" / "pt" / f"{p.stem}.json")["detections"]
        b = read_json(tmp_path / "runs" / "predict" / "ov" / f"{p.stem}.json")["detections"]
        assert [d["class_id"] for d in a] == [d["class_id"] for d in b]
        assert np.allclose([d["box"] for d in a], [d["box"] for d in b], atol=0.02)

    compare_dir = run_task(
        "scripts/compare.py",
        f"models=[{checkpoint},{xml.parent}]",
        *tiny_data,
        "imgsz=64",
        "device=cpu",
        "batch=4",
        "workers=0",
        "latency_warmup=1",
        "latency_repeats=2",
    )
    ov_metrics = read_json(compare_dir / "models" / "fp32" / "metrics.json")
    pt_metrics = read_json(compare_dir / "models" / "tiny" / "metrics.json")
    assert ov_metrics["kind"] == "exported" and ov_metrics["latency_ms"] > 0 and ov_metrics["params"] is None
    assert ov_metrics["our_evaluator"]["mAP50-95"] == pytest.approx(pt_metrics["our_evaluator"]["mAP50-95"], abs=1e-3)


def fake_quantized_consumers(xml: Path) -> set[str]:
    """Names of the operations that read a FakeQuantize's output in the IR at ``xml``."""
    import openvino as ov

    consumers = set()
    for op in ov.Core().read_model(str(xml)).get_ordered_ops():
        if op.get_type_name() == "FakeQuantize":
            consumers |= {i.get_node().get_friendly_name() for i in op.output(0).get_target_inputs()}
    return consumers


def test_int8_export_keeps_the_decoding_in_float(tmp_path, tiny_data, monkeypatch) -> None:
    """int8=true through export.py: INT8 metadata; with int8_float=decode no operation of the decoding
    reads a quantized tensor, with int8_float=none NNCF quantizes some of them."""
    import openvino as ov

    from detector.export.quantize import float_nodes

    monkeypatch.chdir(tmp_path)
    checkpoint = tiny_checkpoint(tmp_path)
    args = [
        f"checkpoint={checkpoint}",
        "format=openvino",
        "int8=true",
        "int8_images=4",
        "imgsz=64",
        "data=shapes",
        *tiny_data,
    ]
    decode = run_task("scripts/export.py", *args, "name=decode")
    none = run_task("scripts/export.py", *args, "int8_float=none", "name=none")
    runtime = OpenVinoModel(decode)
    assert runtime.metadata.precision == "int8" and runtime.names == list(SHAPE_NAMES)
    extra = runtime.metadata.extra
    settings = (extra["int8_images"], extra["int8_float"], extra["int8_preset"], extra["int8_ranges"])
    assert settings == ("4", "decode", "performance", "histogram")
    decoding = set(float_nodes(ov.Core().read_model(str(decode)), "decode"))
    assert {"boxes", "scores"} <= decoding and not any(name.startswith("/model/") for name in decoding)
    assert fake_quantized_consumers(decode) and not fake_quantized_consumers(decode) & decoding
    assert fake_quantized_consumers(none) & decoding


class PerfectModel:
    """Stands in for a compiled OpenVINO model: returns the letterboxed ground truth of the image it is
    given (found by its bytes) as boxes with score 0.9 for their class, optionally dropping one image's."""

    def __init__(self, metric, end2end: bool, miss: int | None = None) -> None:
        self.truth = {}
        for i in range(len(metric)):
            item = metric.dataset[i]
            boxes = item.boxes.numpy() if i != miss else np.zeros((0, 4), np.float32)
            classes = item.classes.numpy()[: len(boxes)]
            self.truth[metric.input(i).tobytes()] = (boxes, classes)
        self.end2end = end2end

    def output(self, name: str) -> str:
        return name

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        boxes, classes = self.truth[x.tobytes()]
        if self.end2end:
            rows = np.zeros((1, 30, 6), np.float32)
            rows[0, : len(boxes), :4], rows[0, : len(boxes), 4], rows[0, : len(boxes), 5] = boxes, 0.9, classes
            return {"detections": rows}
        scores = np.zeros((1, max(len(boxes), 1), len(SHAPE_NAMES)), np.float32)
        scores[0, np.arange(len(boxes)), classes] = 0.9
        padded = np.zeros((1, scores.shape[1], 4), np.float32)
        padded[0, : len(boxes)] = boxes
        return {"boxes": padded, "scores": scores}


@pytest.mark.parametrize("end2end", [False, True])
def test_split_metric_scores_the_images_it_is_given(tiny_shapes, end2end: bool) -> None:
    """NNCF's validation function (int8_max_drop): the ground truth back through the letterbox scores
    mAP50-95 1.0 on the whole split and on any subset of it (only those images' objects count); one
    image missed scores what our evaluator gives for the same predictions."""
    from detector.data.build import load_split
    from detector.data.sources import YoloSource
    from detector.eval.coco import coco_scores
    from detector.eval.exported import SplitMetric

    index = load_split(YoloSource(list(SHAPE_NAMES), len(SHAPE_NAMES), file=str(tiny_shapes / "data.yaml")), "val")
    metric = SplitMetric(index, 128, end2end)  # the 96 px images letterboxed up to 128: scale and padding
    assert len(metric) == 4 and metric.input(0).shape == (1, 3, 128, 128)
    perfect = PerfectModel(metric, end2end)
    assert metric(perfect, range(4))[0] == pytest.approx(1.0)
    assert metric(perfect, [2])[0] == pytest.approx(1.0)
    value, raw = metric(perfect, [1, 3])
    assert value == pytest.approx(1.0) and len(raw) == 2
    assert [a.shape[-1] for a in raw[0]] == ([6] if end2end else [4, len(SHAPE_NAMES)])
    missed = metric(PerfectModel(metric, end2end, miss=0), range(4))[0]
    found = sum(len(index.annotations(i)[0]) for i in range(1, 4))
    assert found and missed < 1.0
    # the same predictions in image pixels (the labels themselves), scored by the evaluator directly
    predictions = [
        {
            "image_id": int(index.image_ids[i]),
            "category_id": int(c),
            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
            "score": 0.9,
        }
        for i in range(1, 4)
        for b, c in zip(index.annotations(i)[0].tolist(), index.annotations(i)[1].tolist())
    ]
    assert missed == pytest.approx(coco_scores(metric.ground_truth, predictions).metrics["mAP50-95"], abs=1e-3)


@pytest.mark.slow  # NNCF's accuracy-controlled search; the INT8 bound test runs it on trained models
def test_int8_max_drop_measures_both_models_on_the_split(tmp_path, tiny_data, monkeypatch) -> None:
    """int8_max_drop through export.py: NNCF's accuracy control, the float and INT8 mAP50-95 on the
    validation split in the metadata; the float figure is evaluate.py's on the checkpoint (which the
    float32 IR reproduces, tests above), the INT8 one evaluate.py's on the INT8 IR, and the drop is
    within the bound."""
    monkeypatch.chdir(tmp_path)
    checkpoint = tiny_checkpoint(tmp_path)
    common = [f"checkpoint={checkpoint}", "format=openvino", "imgsz=64", "data=shapes", *tiny_data]
    int8 = run_task("scripts/export.py", *common, "int8=true", "int8_images=4", "int8_max_drop=0.0", "name=ac")
    extra = OpenVinoModel(int8).metadata.extra
    assert (extra["int8_max_drop"], extra["int8_val_split"], extra["int8_val_images"]) == ("0.0", "val", "4")
    scores = {}
    for name, path in (("pt", checkpoint), ("int8", int8)):
        args = [
            f"checkpoint={path}",
            "data=shapes",
            *tiny_data,
            "imgsz=64",
            "workers=0",
            "plots=false",
            f"name=eval_{name}",
        ]
        scores[name] = read_json(run_task("scripts/evaluate.py", *args) / "metrics.json")["mAP50-95"]
    assert float(extra["int8_val_map_float"]) == pytest.approx(scores["pt"], abs=1e-6)
    assert float(extra["int8_val_map_int8"]) == pytest.approx(scores["int8"], abs=1e-6)
    assert scores["int8"] >= scores["pt"] - 1e-9


def test_int8_needs_data_and_openvino_options_need_openvino(tmp_path) -> None:
    checkpoint = tiny_checkpoint(tmp_path)
    for args, message in (
        (["format=openvino", "int8=true"], "int8=true calibrates on images: give data=NAME"),
        (["format=onnx", "half=true"], "half=true is an option of format=openvino"),
        (["format=openvino", "half=true", "int8=true", "data=shapes"], "choose one"),
        (["format=openvino", "int8_max_drop=0.01", "data=shapes"], "int8_max_drop is an option of int8=true"),
        (["format=openvino", "int8=true", "int8_max_drop=-1", "data=shapes"], "int8_max_drop=-1.0: mAP50-95"),
    ):
        with pytest.raises(ConfigError, match=message):
            run_task("scripts/export.py", f"checkpoint={checkpoint}", *args, f"project={tmp_path / 'runs'}")
    assert not (tmp_path / "runs").exists()  # refused before any run directory is made


@pytest.mark.slow
@pytest.mark.parametrize("model", ["yolov8n", "yolo11n", "yolo26n"])
def test_int8_keeps_map_within_one_point_of_float32(tmp_path, monkeypatch, model: str) -> None:
    """A model trained on 16 images of the built-in data until it detects them (mAP50-95 0.49-0.65 on
    them: the bound means something), exported as float32, as INT8 with the defaults and as INT8 with
    ``int8_max_drop=0.01`` (all calibrated and measured on the same 16 images): evaluated on them,
    the float32 IR gives the checkpoint's mAP50-95 (1e-3); the accuracy-controlled INT8 IR stays
    within 1.0 point of it (measured: yolov8n -0.97, yolo11n -0.16, yolo26n -0.95), and the
    defaults within 3 points, which a collapse fails (quantizing yolo26n's decoding lost 5.8; their
    YOLO26 INT8 export is reported near zero). The defaults are not held to one point on these
    over-fitted models: they lost 1.07 (yolov8n) and 1.05 to 2.4 (yolo26n, in three trainings of the
    recipe with other code versions), against 0.1-0.3 on models trained as users train (README).
    About 5-7 minutes per model on 2 busy cores."""
    monkeypatch.chdir(tmp_path)
    data = ["data=shapes", f"data.root={tmp_path / 'shapes'}", "data.num_train=16", "data.num_val=4", "data.imgsz=160"]
    run_task(
        "train.py",
        f"model={model}",
        *data,
        "imgsz=160",
        "augment=none",
        "device=cpu",
        "train.epochs=120",
        "train.batch=8",
        "train.nbs=8",
        "train.workers=0",
        "train.val=false",
        "schedule.warmup_epochs=0",
        "optim.lr=0.01",
    )
    checkpoint = tmp_path / "runs" / "train" / "exp" / "weights" / "last.pt"
    exported = {}
    int8 = ["int8=true", "int8_images=16"]
    for name, extra in (
        ("fp32", []),
        ("int8", int8),
        ("int8_ac", [*int8, "int8_max_drop=0.01", "int8_val_split=train"]),
    ):
        exported[name] = run_task(
            "scripts/export.py",
            f"checkpoint={checkpoint}",
            "format=openvino",
            "imgsz=160",
            *data,
            *extra,
            f"name={name}",
        )
    scores = {}
    for name, path in (("pt", checkpoint), *exported.items()):
        args = [f"checkpoint={path}", *data, "imgsz=160", "split=train", "workers=0", "plots=false", f"name={name}"]
        scores[name] = read_json(run_task("scripts/evaluate.py", *args) / "metrics.json")["mAP50-95"]
    print(model, scores)
    assert scores["pt"] >= 0.3, scores
    assert abs(scores["fp32"] - scores["pt"]) <= 1e-3, scores
    assert scores["int8_ac"] >= scores["fp32"] - 0.01, scores
    assert abs(scores["int8"] - scores["fp32"]) <= 0.03, scores


SIGNAL_AFTER_TWO_MODELS = """
import gc, os, signal, sys
import torch
from detector.export.openvino import OpenVinoModel
from detector.export.signal_stack import signal_stack

before = signal_stack()
first, second = OpenVinoModel(sys.argv[1]), OpenVinoModel(sys.argv[1])
first(torch.rand(1, 3, 64, 64)), second(torch.rand(1, 3, 64, 64))
del first; gc.collect()  # dropped in the order they were made
del second; gc.collect()
print("same stack", signal_stack() == before, flush=True)
signal.signal(signal.SIGUSR1, lambda s, f: print("handled", flush=True))
os.kill(os.getpid(), signal.SIGUSR1)
print("alive", flush=True)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="OpenVINO's CPU plugin swaps signal stacks on Linux")
def test_two_models_dropped_in_order_keep_the_threads_signal_stack(tmp_path) -> None:
    """In this process: two IRs loaded and dropped first-made-first leave the thread on the alternate
    signal stack it had (pytest's faulthandler's), not on the first Core's unmapped one; a signal with
    a Python handler then runs it. (The stack is put back whatever happens, so a failure here does
    not crash the rest of the suite; the slow test below shows the crash in a process of its own.)"""
    import gc
    import os
    import signal

    from detector.export.signal_stack import set_signal_stack, signal_stack

    xml = export_openvino(reference(**{"scale.width": 0.0625}), tmp_path / "m.xml", 64, NAMES)
    before = signal_stack()
    handled = []
    previous = signal.signal(signal.SIGUSR1, lambda s, f: handled.append(s))
    try:
        first, second = OpenVinoModel(xml), OpenVinoModel(xml)
        first(torch.rand(1, 3, 64, 64))
        second(torch.rand(1, 3, 64, 64))
        del first
        gc.collect()
        del second
        gc.collect()
        assert signal_stack() == before
        os.kill(os.getpid(), signal.SIGUSR1)
        assert handled == [signal.SIGUSR1]
    finally:
        set_signal_stack(before)
        signal.signal(signal.SIGUSR1, previous)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="OpenVINO's CPU plugin swaps signal stacks on Linux")
def test_two_models_dropped_in_order_leave_a_signal_stack_that_works(tmp_path) -> None:
    """OpenVINO's CPU plugin gives each Core its own alternate signal stack and, destroyed first made
    first gone, leaves the thread on an unmapped one: the next Python signal handler killed the
    process with SIGSEGV (exit -11 before ``kept_signal_stack``). Now the thread keeps the stack it
    had (faulthandler's here) and the handler runs."""
    xml = export_openvino(reference(**{"scale.width": 0.0625}), tmp_path / "m.xml", 64, NAMES)
    result = run_script("-X", "faulthandler", "-c", SIGNAL_AFTER_TWO_MODELS, str(xml), cwd=tmp_path)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert result.stdout.split() == ["same", "stack", "True", "handled", "alive"]
