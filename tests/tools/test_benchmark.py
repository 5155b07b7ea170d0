"""scripts/benchmark.py end to end on a tiny dataset (every part once), and its measuring pieces.
No timed asserts: only that every figure is there, positive and consistent."""

from __future__ import annotations

import json
import statistics

import pytest
import torch

from detector import build_model
from detector.checkpoint import save_checkpoint
from detector.config.models import model_config
from detector.device import cpu_has_native_bf16
from detector.errors import ConfigError
from detector.tools.benchmark.figure import GOALS, Figure
from detector.tools.benchmark.weights import reference_weights
from detector.tools.timing import alternate
from tests.helpers import REPO, run_script, run_task

TINY = [
    "device=cpu",
    "repeats=2",
    "warmup=0",
    "data.num_train=8",
    "data.num_val=4",
    "data.imgsz=64",
    "train_step.imgsz=64",
    "train_step.batch=2",
    "train_step.steps=1",
    "loader.imgsz=64",
    "loader.batch=2",
    "loader.workers=0",
    "loader.batches=2",
    "loader.warmup=1",
    "predict.imgsz=64",
    "predict.calls=1",
    "val.imgsz=64",
    "val.batch=4",
    "val.workers=0",
]


@pytest.mark.slow
def test_benchmark_script_writes_every_figure(tmp_path) -> None:
    result = run_script(
        "scripts/benchmark.py",
        *TINY,
        f"data.root={tmp_path / 'shapes'}",
        f"project={tmp_path / 'runs'}",
        "name=tiny",
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "runs" / "benchmark" / "tiny" / "benchmark.json").read_text())
    figures = report["figures"]
    bf16 = cpu_has_native_bf16()  # then ours is measured a second time, in bf16 autocast (cpu_bf16=true)
    parts = ["train_step", "loader", "predict", "val"]
    expected = [(p, d) for p in parts for d in ("cpu", "cpu, ours bf16") if d == "cpu" or (bf16 and p != "loader")]
    assert [(f["part"], f["device"]) for f in figures] == expected
    for f in figures:
        for side in ("ours", "ultralytics"):
            assert len(f["repeats"][side]) == 2 and all(v > 0 for v in f["repeats"][side])
            assert f[side] == pytest.approx(statistics.median(f["repeats"][side]))
        assert f["ratio_is"] == "ours / ultralytics"
        assert f["ratio"] == pytest.approx(f["ours"] / f["ultralytics"])
        op, bound = GOALS[f["part"]]
        assert f["goal"] == {"ratio": op, "value": bound}
        assert f["met"] == (f["ratio"] >= bound if op == ">=" else f["ratio"] <= bound)
        assert f["better"] == ("higher" if f["unit"] == "images/s" else "lower")
    units = {"train_step": "images/s", "loader": "images/s", "predict": "ms", "val": "s"}
    assert [f["unit"] for f in figures] == [units[f["part"]] for f in figures]
    assert all(set(f["notes"]["metrics"]) == {"ours", "ultralytics"} for f in figures if f["part"] == "val")
    assert report["weights"].startswith("untrained") and report["versions"]["ultralytics"]
    assert (tmp_path / "runs" / "benchmark" / "tiny" / "predict.jpg").is_file()  # the generated 64 x 64 image
    assert "train step" in result.stdout and "ours / ultralytics" in result.stdout


def test_benchmark_settings_mistakes_are_one_line(tmp_path) -> None:
    result = run_script("scripts/benchmark.py", "repeats=0", f"project={tmp_path}", cwd=REPO)
    assert result.returncode == 2 and result.stderr.strip() == "error: repeats=0 must be >= 1"
    with pytest.raises(ConfigError, match="at most once"):  # the same check, in-process
        run_task("scripts/benchmark.py", "parts=[val,val]", f"project={tmp_path}")


def test_benchmark_modules_import_ultralytics_lazily() -> None:
    code = "import sys, detector.tasks.benchmark; print('ultralytics' in sys.modules)"
    result = run_script("-c", code, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_alternate_takes_turns_after_warmup() -> None:
    calls: list[str] = []

    def side(name: str, value: float):
        return lambda: calls.append(name) or value

    results = alternate(side("ours", 2.0), side("theirs", 4.0), repeats=3, warmup=1)
    assert calls == ["ours", "theirs", "ours", "theirs", "theirs", "ours", "ours", "theirs"]
    assert results == {"ours": [2.0, 2.0, 2.0], "ultralytics": [4.0, 4.0, 4.0]}
    time_figure = Figure("val", "cpu", "", "s", "lower", [1.0, 3.0, 2.0], [4.0, 4.0, 5.0])
    assert time_figure.ratio == 0.5 and time_figure.met
    rate_figure = Figure("loader", "cpu", "", "images/s", "higher", [1.0], [1.0])
    assert rate_figure.ratio == 1.0 and not rate_figure.met


def test_reference_weights_from_a_checkpoint(tmp_path) -> None:
    names = ["circle", "rectangle", "triangle", "star", "hexagon", "cross"]
    model = build_model("yolov8n", num_classes=6)
    path = save_checkpoint(tmp_path / "w.pt", model, model_config("yolov8n", 6), names)
    reference = reference_weights("yolov8n", str(path), 0, names)
    weights, got_names, described = reference.weights, reference.names, reference.described
    assert got_names == names and described.startswith(f"checkpoint {path}")
    for ours, theirs in zip(weights.values(), model.state_dict().values()):
        assert torch.equal(ours, theirs)
    with pytest.raises(ConfigError, match="do not fit arch=yolo11n"):
        reference_weights("yolo11n", str(path), 0, names)
