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


def deploy_figures(runtime: str, ms: tuple[float, float], rate: tuple[float, float], maps: tuple[float, float]):
    notes = {"map": {"ours": {"mAP50-95": maps[0]}, "ultralytics": {"mAP50-95": maps[1]}}}
    settings = {"runtime": runtime, "batch": 8}
    return [
        Figure("deploy_latency", f"cpu, {runtime}", "", "ms", "lower", [ms[0]], [ms[1]], settings, notes),
        Figure("deploy_throughput", f"cpu, {runtime}", "", "images/s", "higher", [rate[0]], [rate[1]], settings, notes),
    ]


def test_deploy_table_and_each_sides_best_runtime() -> None:
    """Each side's best runtime is its own fastest at batch 1, whichever that is; the table has a
    row per runtime with both sides' figures, ratios and mAP."""
    from rich.console import Console

    from detector.tools.benchmark.deploy import best_runtimes
    from detector.tools.benchmark.report import deploy_table

    figures = [
        *deploy_figures("eager", (40.0, 50.0), (30.0, 20.0), (0.41, 0.40)),
        *deploy_figures("onnxruntime", (20.0, 30.0), (60.0, 40.0), (0.41, 0.40)),
        *deploy_figures("openvino_int8", (25.0, 10.0), (90.0, 95.0), (0.40, 0.31)),
    ]
    best = best_runtimes(figures)
    assert best["ours"] == {"runtime": "onnxruntime", "ms": 20.0}
    assert best["ultralytics"] == {"runtime": "openvino_int8", "ms": 10.0}
    assert best["ratio"] == 2.0 and not best["met"] and best["goal"] == {"ratio": "<=", "value": 0.8}
    assert best_runtimes(figures[:0]) is None
    console = Console(width=250, record=True, color_system=None)
    console.print(deploy_table(figures, "yolov8n", "checkpoint w.pt", best))
    lines = console.export_text().splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.split() and line.split()[0] in GOAL_ROWS}
    assert rows["eager"] == ["40.0", "50.0", "0.80", "30.0", "20.0", "1.50", "0.4100", "0.4000"]
    assert rows["onnxruntime"] == ["20.0", "30.0", "0.67", "60.0", "40.0", "1.50", "0.4100", "0.4000"]
    assert rows["openvino_int8"] == ["25.0", "10.0", "2.50", "90.0", "95.0", "0.95", "0.4000", "0.3100"]
    assert "ours onnxruntime 20.0 ms, Ultralytics openvino_int8 10.0 ms, ratio 2.00 (goal <= 0.80: not met)" in (
        " ".join(" ".join(lines).split())
    )


GOAL_ROWS = ("eager", "compiled", "onnxruntime", "openvino", "openvino_int8")


def test_split_scores_of_the_ground_truth_is_a_perfect_map(tiny_data) -> None:
    """The deploy figures' mAP comes from detections per image scored by our COCO evaluator: the
    split's own boxes score 1.0, and dropping every other image's boxes halves the recall that AP sees."""
    from detector.config import compose, instantiate_node
    from detector.data.build import load_split
    from detector.tools.benchmark.deploy import split_scores
    from detector.types import Detections

    cfg = compose("evaluate", ["checkpoint=x", *tiny_data])
    index = load_split(instantiate_node(cfg.data, "data"), "val")
    truth = []
    for i in range(len(index)):
        rows = slice(int(index.offsets[i]), int(index.offsets[i + 1]))
        boxes = torch.from_numpy(index.boxes[rows])
        truth.append(Detections(boxes, torch.ones(len(boxes)), torch.from_numpy(index.classes[rows])))
    assert split_scores(index, truth) == {"mAP50-95": pytest.approx(1.0), "mAP50": pytest.approx(1.0)}
    empty = Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long))
    half = [d if i % 2 == 0 else empty for i, d in enumerate(truth)]
    assert split_scores(index, half)["mAP50-95"] < 0.9


def test_deploy_settings_mistakes_are_one_line(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"^deploy.runtimes=\['onnxruntime', 'onnxruntime'\]: name each of eager, "):
        run_task(
            "scripts/benchmark.py", "parts=[deploy]", "deploy.runtimes=[onnxruntime,onnxruntime]", f"project={tmp_path}"
        )
    with pytest.raises(ConfigError, match=r"^deploy.int8_images=0 must be >= 1$"):
        run_task("scripts/benchmark.py", "parts=[deploy]", "deploy.int8_images=0", f"project={tmp_path}")
    with pytest.raises(ConfigError, match=r"^deploy.imgsz=100 must be a positive multiple of 32"):
        run_task("scripts/benchmark.py", "parts=[deploy]", "deploy.imgsz=100", f"project={tmp_path}")


@pytest.mark.slow
def test_deploy_runs_every_runtime_of_both_sides_on_the_same_trained_weights(tmp_path, monkeypatch) -> None:
    """A yolov8n trained on 16 images until it detects them, benchmarked on every runtime at 160 px:
    each runtime gives a latency and a throughput figure of both sides; scored on those images, the
    two sides' float32 runtimes agree on mAP50-95 (the same weights through two predictors), every
    float32 runtime of ours gives the checkpoint's mAP, and our INT8 and bf16 runs stay within a point."""
    monkeypatch.chdir(tmp_path)
    data = ["data=shapes", f"data.root={tmp_path / 'shapes'}", "data.num_train=16", "data.num_val=4", "data.imgsz=160"]
    train = ["model=yolov8n", "imgsz=160", "augment=none", "device=cpu", "train.epochs=80", "train.batch=8"]
    train += ["train.nbs=8", "train.workers=0", "train.val=false", "schedule.warmup_epochs=0"]
    run_task("train.py", *data, *train)
    checkpoint = tmp_path / "runs" / "train" / "exp" / "weights" / "last.pt"
    run_dir = run_task(
        "scripts/benchmark.py",
        "parts=[deploy]",
        f"checkpoint={checkpoint}",
        *data,
        "repeats=1",
        "warmup=1",
        "deploy.imgsz=160",
        "deploy.calls=1",
        "deploy.split=train",
        "deploy.int8_images=16",
    )
    report = json.loads((run_dir / "benchmark.json").read_text())
    runtimes = ["eager", "compiled", "onnxruntime", "openvino", "openvino_int8"]
    if cpu_has_native_bf16():
        runtimes.append("openvino_bf16")  # left out (with a line saying so) where the CPU has no native bf16
    parts = [(f["part"], f["settings"]["runtime"]) for f in report["figures"]]
    assert parts == [(p, r) for r in runtimes for p in ("deploy_latency", "deploy_throughput")]
    for f in report["figures"]:
        assert all(v > 0 for side in ("ours", "ultralytics") for v in f["repeats"][side])
        assert f["ratio"] == pytest.approx(f["ours"] / f["ultralytics"])
    scores = {
        f["settings"]["runtime"]: {side: f["notes"]["map"][side]["mAP50-95"] for side in ("ours", "ultralytics")}
        for f in report["figures"]
        if f["part"] == "deploy_latency"
    }
    assert scores["eager"]["ours"] >= 0.1, scores
    for runtime in runtimes[:4]:
        assert abs(scores[runtime]["ours"] - scores["eager"]["ours"]) <= 1e-3, scores
        assert abs(scores[runtime]["ours"] - scores[runtime]["ultralytics"]) <= 0.01, scores
    assert abs(scores["openvino_int8"]["ours"] - scores["eager"]["ours"]) <= 0.01, scores
    if "openvino_bf16" in scores:  # bf16 arithmetic on both sides: close to float32, not equal
        assert abs(scores["openvino_bf16"]["ours"] - scores["eager"]["ours"]) <= 0.01, scores
        assert abs(scores["openvino_bf16"]["ours"] - scores["openvino_bf16"]["ultralytics"]) <= 0.01, scores
    best = report["deploy_best"]
    latency = {f["settings"]["runtime"]: f for f in report["figures"] if f["part"] == "deploy_latency"}
    assert best["ours"]["ms"] == min(f["ours"] for f in latency.values())
    assert best["ultralytics"]["ms"] == min(f["ultralytics"] for f in latency.values())


@pytest.mark.slow
def test_train_step_of_our_compiled_model(tmp_path) -> None:
    """``train_step.compile=true``: ours steps through torch.compile (as train.compile=true), theirs eager;
    the row says so."""
    run_dir = run_task(
        "scripts/benchmark.py",
        *TINY,
        "parts=[train_step]",
        "train_step.compile=true",
        "cpu_bf16=false",
        f"data.root={tmp_path / 'shapes'}",
        f"project={tmp_path / 'runs'}",
    )
    (figure,) = json.loads((run_dir / "benchmark.json").read_text())["figures"]
    assert figure["device"] == "cpu, ours compiled"
    assert figure["settings"]["compiled"] == {"ours": True, "ultralytics": False}
    assert all(v > 0 for side in ("ours", "ultralytics") for v in figure["repeats"][side])
