"""Ultralytics checkpoints: exact import through the restricted unpickler, refusal of anything else."""

from __future__ import annotations

import os
import pickle
import subprocess

import cv2
import numpy as np
import pytest
import torch

from detector.errors import ConfigError
from detector.interop import ultralytics_weights
from detector.interop.ultralytics import ultralytics_model
from detector.interop.weights import load_weights
from tests.helpers import REPO, run_script, run_task, write_ultralytics_checkpoint


def their_model(path):
    """Ultralytics' own loader on a file this test wrote (never do this with a file from elsewhere)."""
    from ultralytics.nn.tasks import load_checkpoint as ultralytics_load

    return ultralytics_load(str(path))[0].float().eval()


def raw_outputs(theirs: torch.nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Ultralytics' per-level box and class logits (the inputs of its decoding), through hooks."""
    detect, box, cls = theirs.model[-1], {}, {}
    handles = [detect.cv2[i].register_forward_hook(lambda m, a, out, i=i: box.__setitem__(i, out)) for i in range(3)]
    handles += [detect.cv3[i].register_forward_hook(lambda m, a, out, i=i: cls.__setitem__(i, out)) for i in range(3)]
    with torch.no_grad():
        theirs(x)
    for handle in handles:
        handle.remove()
    return [box[i] for i in range(3)], [cls[i] for i in range(3)]


@pytest.mark.parametrize(
    ("yaml", "num_classes", "stripped"),
    [("yolov8n.yaml", 80, True), ("yolo11n.yaml", 7, False), ("yolov8s.yaml", 3, True)],
)
def test_import_equals_ultralytics_forward_unfused_and_fused(tmp_path, yaml, num_classes, stripped) -> None:
    names = [f"thing{i}" for i in range(num_classes)]
    path = write_ultralytics_checkpoint(tmp_path / "u.pt", yaml, num_classes, names, stripped=stripped)
    ours = ultralytics_weights.load(path)
    theirs = their_model(path)
    assert ours.names == names
    assert ours.head.num_classes == num_classes
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())

    x = torch.rand(2, 3, 96, 128)
    for fused in (False, True):
        if fused:
            ours.fuse()
            theirs.fuse(verbose=False)
        box, cls = raw_outputs(theirs, x)
        with torch.no_grad():
            out = ours(x)
        for level in range(3):
            torch.testing.assert_close(out.box[level], box[level], atol=1e-4, rtol=0)
            torch.testing.assert_close(out.cls[level], cls[level], atol=1e-4, rtol=0)
    if stripped and num_classes == 80:  # the Python API reads their file too: what this model predicts
        assert_predicts_as(path, ours, names)


def assert_predicts_as(path, model, names: list[str]) -> None:
    """``detector.load(path)`` predicts what ``model`` (already read from ``path``) predicts."""
    import detector
    from detector.eval.postprocess import PostProcess
    from detector.eval.predict import Predictor

    image = np.random.default_rng(0).integers(0, 255, (70, 110, 3), dtype=np.uint8)
    result = detector.load(path, "cpu").predict(image, conf=0.0, imgsz=96)[0]  # untrained: low scores
    expected = Predictor(model, torch.device("cpu"), 96, PostProcess(conf=0.0, multi_label=False))(image)
    assert result.names == names and len(result) == len(expected) > 0
    np.testing.assert_allclose(result.boxes, expected.boxes.numpy(), atol=1e-3, rtol=0)
    np.testing.assert_array_equal(result.class_ids, expected.classes.numpy())


@pytest.mark.parametrize(("num_classes", "stripped"), [(5, False), pytest.param(80, True, marks=pytest.mark.slow)])
def test_yolo26_import_equals_ultralytics_both_branches(tmp_path, num_classes, stripped) -> None:
    """A YOLO26 file (training form: fp16 EMA and optimizer; or stripped): every tensor placed, both
    branches' raw outputs equal to theirs, end-to-end detections equal to their ``[B, 300, 6]``."""
    from detector.models.heads import top_k

    names = [f"thing{i}" for i in range(num_classes)]
    path = write_ultralytics_checkpoint(tmp_path / "u.pt", "yolo26n.yaml", num_classes, names, stripped=stripped)
    checkpoint = ultralytics_weights.read(path)
    assert (checkpoint.family, checkpoint.scale, checkpoint.model_name) == ("yolo26", "n", "yolo26n")
    ours = ultralytics_weights.to_detector(checkpoint)
    theirs = their_model(path)
    assert ours.names == names and ours.head.end2end and ours.head.inference == "one2one"
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())

    detect, captured = theirs.model[-1], {}
    for name in ("cv2", "cv3", "one2one_cv2", "one2one_cv3"):
        for i in range(3):
            getattr(detect, name)[i].register_forward_hook(lambda m, a, o, k=(name, i): captured.__setitem__(k, o))
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        theirs(x)
        with ours.head.running(("one2many", "one2one")):
            out = ours(x)
        detect._end2end = True
        expected = theirs(x)[0]
        got = top_k(*ours.head.decode(ours(x)), max_det=300)
    for level in range(3):
        for mine, box, cls in ((out, "cv2", "cv3"), (out.one2one, "one2one_cv2", "one2one_cv3")):
            torch.testing.assert_close(mine.box[level], captured[(box, level)], atol=1e-4, rtol=0)
            torch.testing.assert_close(mine.cls[level], captured[(cls, level)], atol=1e-4, rtol=0)
    torch.testing.assert_close(got, expected, atol=1e-3, rtol=1e-5)


def test_load_weights_takes_ultralytics_files_and_describes_them(tmp_path) -> None:
    path = write_ultralytics_checkpoint(tmp_path / "u.pt", "yolo11n.yaml", 4, ["a", "b", "c", "d"], stripped=False)
    model, meta = load_weights(path)
    assert meta["format"] == "ultralytics" and meta["names"] == ["a", "b", "c", "d"]
    assert meta["ultralytics"]["model"] == "yolo11n"
    assert meta["model_config"]["head"]["num_classes"] == 4
    checkpoint = ultralytics_weights.read(path)
    theirs = ultralytics_model(checkpoint)  # their module, built by them, our safely read tensors
    with torch.no_grad():
        x = torch.rand(1, 3, 64, 64)
        torch.testing.assert_close(theirs(x)[0], their_model(path)(x)[0])


def test_custom_scale_multipliers_are_followed(tmp_path) -> None:
    """A yaml with its own ``scales`` entry (here yolo11 at 1/16 width, 2/3 depth) maps onto our config
    with the same multipliers."""
    from ultralytics.nn.tasks import DetectionModel, yaml_model_load

    cfg = yaml_model_load("yolo11n.yaml")
    cfg["scales"] = {"n": [0.67, 0.0625, 512]}
    theirs = DetectionModel(cfg, nc=2, verbose=False)
    theirs.names = {0: "a", 1: "b"}
    torch.save({"model": theirs.half(), "ema": None}, tmp_path / "tiny.pt")
    ours = ultralytics_weights.load(tmp_path / "tiny.pt")
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    box, cls = raw_outputs(theirs.float().eval(), x := torch.rand(1, 3, 64, 64))
    with torch.no_grad():
        out = ours(x)
    torch.testing.assert_close(out.cls[0], cls[0], atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("yolov8n-seg.yaml", "only detection models"),
        ("yolov8n-ghost.yaml", "cannot place module model.1 (GhostConv)"),
        ("yolov8n-p2.yaml", "a detection head on 4 levels (a P2 / P6 variant)"),
        ("yolo26n-seg.yaml", "only detection models"),
        ("yolo26n-p6.yaml", "a detection head on 4 levels (a P2 / P6 variant)"),
    ],
)
def test_a_checkpoint_that_cannot_be_mapped_names_the_first_module(tmp_path, yaml, message) -> None:
    from ultralytics.nn.tasks import DetectionModel, SegmentationModel

    cls = SegmentationModel if "seg" in yaml else DetectionModel
    torch.save({"model": cls(yaml, nc=3, verbose=False).half(), "ema": None}, tmp_path / "x.pt")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ultralytics_weights.load(tmp_path / "x.pt")


class RunsCode:
    """Unpickling this runs ``func(*args)``: what a malicious checkpoint does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def malicious_files(folder, marker) -> dict[str, object]:
    """Files whose loading would create ``marker``, one per route a pickle can take."""
    touch = f"touch {marker}"
    files = {
        "os_system.pt": {"model": RunsCode(os.system, touch)},
        "eval.pt": {"ema": RunsCode(eval, f"open({str(marker)!r}, 'w')")},
        "subprocess.pt": {"model": None, "ema": RunsCode(subprocess.Popen, ["touch", str(marker)])},
    }
    paths = {}
    for name, payload in files.items():
        torch.save(payload, folder / name)
        paths[name] = folder / name
    (folder / "raw.pt").write_bytes(pickle.dumps(RunsCode(os.system, touch)))  # not a zip: a bare pickle
    paths["raw.pt"] = folder / "raw.pt"
    return paths


def test_malicious_pickles_are_refused_before_anything_runs(tmp_path) -> None:
    marker = tmp_path / "pwned"
    for name, path in malicious_files(tmp_path, marker).items():
        with pytest.raises(ConfigError) as err:
            load_weights(path)
        assert "\n" not in str(err.value)
        if name != "raw.pt":
            assert "refused" in str(err.value), str(err.value)
        assert not marker.exists(), name


@pytest.mark.parametrize(
    "command",
    [
        ["scripts/evaluate.py", "checkpoint={}"],
        ["scripts/predict.py", "checkpoint={}", "source={images}"],
        ["scripts/export.py", "checkpoint={}"],
        ["train.py", "train.init={}", "train.epochs=1"],
        ["train.py", "resume={}"],
        ["scripts/compare.py", "models=[{}]"],
        ["scripts/benchmark.py", "checkpoint={}", "parts=[val]"],
    ],
)
def test_every_command_that_takes_a_checkpoint_refuses_them(tmp_path, monkeypatch, command) -> None:
    """Each task refuses the file with one line naming it, before anything in it runs (in-process:
    how the entry point prints a ConfigError is the CLI tests' business, e.g. the one below)."""
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned"
    path = malicious_files(tmp_path, marker)["os_system.pt"]
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((32, 32, 3), np.uint8))
    args = [a.format(path, images=tmp_path / "images") for a in command]
    with pytest.raises(ConfigError) as err:
        run_task(*args)
    assert "\n" not in str(err.value) and str(path) in str(err.value), str(err.value)
    assert not marker.exists()


def test_a_refused_checkpoint_is_one_line_on_the_command_line(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = malicious_files(tmp_path, marker)["os_system.pt"]
    result = run_script(str(REPO / "scripts" / "evaluate.py"), f"checkpoint={path}", cwd=tmp_path)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert lines == [f"error: {lines[0].removeprefix('error: ')}"] and str(path) in lines[0], lines
    assert not marker.exists()


def test_fine_tuning_from_an_ultralytics_checkpoint_with_another_class_count(tmp_path, tiny_data, capsys) -> None:
    path = write_ultralytics_checkpoint(tmp_path / "u.pt", "yolov8n.yaml", 80, stripped=True)
    run_task(
        "train.py",
        "model=yolov8n",
        f"train.init={path}",
        "train.freeze=3",
        "imgsz=64",
        "device=cpu",
        *tiny_data,
        "train.epochs=1",
        "train.batch=2",
        "train.nbs=2",
        "train.workers=0",
        "schedule.warmup_epochs=0",
        f"project={tmp_path / 'runs'}",
    )
    printed = capsys.readouterr().err
    # Everything but the class branch came from the checkpoint: YOLOv8's class-branch width is
    # max(64, min(classes, 100)), so going from 80 to 6 classes changes all of its 36 tensors.
    assert "train.init: 319/355 tensors" in printed, printed[-2000:]
    model, meta = load_weights(tmp_path / "runs" / "train" / "exp" / "weights" / "last.pt")
    source = ultralytics_weights.load(path)
    assert model.head.num_classes == 6 and len(meta["names"]) == 6
    # frozen layers (stem and the first two stages' blocks) kept the imported weights exactly
    torch.testing.assert_close(model.backbone.stem.conv.weight, source.backbone.stem.conv.weight)
