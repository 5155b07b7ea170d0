"""scripts/compare.py end to end on a few generated images: our checkpoint, Ultralytics checkpoints
(one on a superset of the classes), a YAML baseline; one-line errors; the same-recipe head-to-head."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from detector.data.shapes import SHAPE_NAMES
from tests.helpers import REPO, run_script, run_task, write_ultralytics_checkpoint

COMPARE = str(REPO / "scripts" / "compare.py")
EVALUATE = str(REPO / "scripts" / "evaluate.py")
SUPERSET = ["person", *reversed(SHAPE_NAMES), "car"]  # the shapes, in another order, between two others


def data_args(tmp_path, num_train: int = 4) -> list[str]:
    return [
        f"data.root={tmp_path / 'shapes'}",
        f"data.num_train={num_train}",
        "data.num_val=4",
        "data.imgsz=96",
        "imgsz=64",
        "device=cpu",
        "batch=4",
        "workers=0",
    ]


def quick(tmp_path, *extra: str) -> list[str]:
    return [*data_args(tmp_path), "latency_warmup=1", "latency_repeats=2", *extra]


def compare(tmp_path, *args: str):
    return run_script(COMPARE, *args, cwd=tmp_path)


def rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_ours(path, names=SHAPE_NAMES) -> torch.nn.Module:
    from detector.checkpoint import save_checkpoint
    from detector.config import compose
    from detector.models.zoo import instantiate_model

    cfg = compose("train", ["model=yolov8n", "model.scale.width=0.0625"])
    config = OmegaConf.to_container(cfg.model, resolve=True)
    model = instantiate_model(config)
    save_checkpoint(path, model, config, list(names))
    return model


@pytest.mark.slow  # 11 s; the default run compares an IR beside its .pt (tests/eval/test_openvino.py) and checks class matching and bad input here
def test_compare_eval_mode_end_to_end(tmp_path, monkeypatch) -> None:
    from detector.interop.ultralytics import ultralytics_model
    from detector.interop.ultralytics_weights import read, to_detector

    ours = write_ours(tmp_path / "ours.pt")
    write_ultralytics_checkpoint(tmp_path / "u.pt", "yolov8n.yaml", num_classes=6, names=list(SHAPE_NAMES))
    # YOLO26 (end-to-end) with a superset of the data's classes
    write_ultralytics_checkpoint(tmp_path / "super.pt", "yolo26n.yaml", num_classes=8, names=SUPERSET)
    models = "models=[ours.pt,u.pt,super.pt,yolov8n.yaml]"
    result = compare(tmp_path, models, *quick(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "compare" / "exp"
    for name in ("compare.md", "compare.csv", "map_vs_latency.png", "data.yaml", "config.yaml"):
        assert (run / name).is_file(), name
    table = {r["model"]: r for r in rows(run / "compare.csv")}
    assert list(table) == ["ours.pt", "u.pt", "super.pt", "yolov8n.yaml"]
    assert [table[m]["kind"] for m in table] == ["ours", "ultralytics", "ultralytics", "ultralytics (untrained yaml)"]

    # params: every parameter of the model as given, the same in our import and in their module
    assert int(table["ours.pt"]["params"]) == sum(p.numel() for p in ours.parameters())
    for name in ("u.pt", "super.pt"):
        checkpoint = read(tmp_path / name)
        count = sum(p.numel() for p in to_detector(checkpoint).parameters())
        assert int(table[name]["params"]) == count == sum(p.numel() for p in ultralytics_model(checkpoint).parameters())
    assert table["super.pt"]["classes"] == "6 of 8"
    assert "matched by name" in table["super.pt"]["notes"]
    # the end-to-end model is scored by its one-to-one branch, its one-to-many branch beside it
    assert table["super.pt"]["branch"] == "one2one" and table["super.pt"]["other_mAP50-95"] != ""
    assert table["u.pt"]["branch"] == "" and table["u.pt"]["other_mAP50-95"] == ""

    # Ultralytics' own validator ran for their models only; our import agrees with their module
    assert table["ours.pt"]["ultralytics_mAP50-95"] == ""
    for name, slug in (("u.pt", "u"), ("super.pt", "super"), ("yolov8n.yaml", "yolov8n")):
        assert table[name]["ultralytics_mAP50-95"] != "" and float(table[name]["ultralytics_latency_ms"]) > 0
        metrics = json.loads((run / "models" / slug / "metrics.json").read_text())
        assert metrics["parity"]["max_abs_score_diff"] < 1e-4, name
        assert metrics["ultralytics_validator"]["images"] == 4
    for row in table.values():
        assert float(row["latency_ms"]) > 0 and float(row["gflops"]) > 0

    # our evaluator's figures for an Ultralytics checkpoint are exactly those of scripts/evaluate.py
    monkeypatch.chdir(tmp_path)
    run_task(EVALUATE, "checkpoint=u.pt", *data_args(tmp_path), "plots=false")  # in this process: saves a start
    evaluated = tmp_path / "runs" / "evaluate" / "exp"
    reference = json.loads((evaluated / "metrics.json").read_text())
    assert float(table["u.pt"]["mAP50-95"]) == reference["mAP50-95"]
    assert float(table["u.pt"]["mAP50"]) == reference["mAP50"]
    predictions = json.loads((run / "models" / "u" / "predictions.json").read_text())
    assert predictions == json.loads((evaluated / "predictions.json").read_text())
    assert len(predictions) > 0

    markdown = (run / "compare.md").read_text()
    assert "| model | kind |" in markdown and "Ultralytics val mAP50-95" in markdown and "conf 0.001" in markdown


@pytest.mark.parametrize(
    ("models", "message"),
    [
        pytest.param("models=[missing.pt]", "checkpoint not found", marks=pytest.mark.slow),
        # the same path through the entry point; the message itself: test_models_that_cannot_be_compared
        pytest.param("models=[garbage.pt]", "neither a detector checkpoint nor an Ultralytics", marks=pytest.mark.slow),
    ],
)
def test_compare_bad_input_is_one_line(tmp_path, models: str, message: str) -> None:
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    result = compare(tmp_path, models, *quick(tmp_path))
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("yolov9z", "unknown model 'yolov9z'"),
        ("rtdetr-l.yaml", "not an Ultralytics model name this project mirrors"),
        ("fewer.pt", "has no class named hexagon, cross"),
        ("garbage.pt", "neither a detector checkpoint nor an Ultralytics"),
    ],
)
def test_models_that_cannot_be_compared(tmp_path, spec: str, message: str) -> None:
    from detector.errors import ConfigError
    from detector.tools.compare.classes import class_map
    from detector.tools.compare.contenders import load_contender

    write_ours(tmp_path / "fewer.pt", names=list(SHAPE_NAMES[:4]))
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ConfigError, match=message):
        contender = load_contender(str(tmp_path / spec) if spec.endswith(".pt") else spec, list(SHAPE_NAMES))
        class_map(contender.names, list(SHAPE_NAMES), contender.label)


def test_class_matching_by_name_equals_dropping_other_classes(tmp_path) -> None:
    """Both restricted modules give exactly the superset model's scores of the data's classes."""
    from detector.interop.ultralytics import ultralytics_model
    from detector.interop.ultralytics_weights import read, to_detector
    from detector.tools.compare.classes import class_map, restrict_classes, restrict_ultralytics_classes
    from detector.tools.compare.scoring import parity

    keep = class_map(SUPERSET, list(SHAPE_NAMES), "superset")
    assert [SUPERSET[k] for k in keep] == list(SHAPE_NAMES)
    assert class_map(list(SHAPE_NAMES), list(SHAPE_NAMES), "same") is None
    checkpoint = read(write_ultralytics_checkpoint(tmp_path / "s.pt", "yolov8n.yaml", 8, SUPERSET))
    ours, theirs = to_detector(checkpoint), ultralytics_model(checkpoint)
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        boxes, scores = ours.head.decode(ours(x))
        restricted = restrict_classes(ours, keep)
        r_boxes, r_scores = restricted.head.decode(restricted(x))
        theirs_restricted = restrict_ultralytics_classes(theirs, keep, list(SHAPE_NAMES))
        decoded = theirs_restricted(x)[0]
    assert restricted.num_classes == 6 and ours.num_classes == 8  # the original is untouched
    torch.testing.assert_close(r_scores, scores[..., keep], atol=1e-6, rtol=0)
    torch.testing.assert_close(r_boxes, boxes, atol=0, rtol=0)
    assert decoded.shape[1] == 4 + 6 and theirs_restricted.names == dict(enumerate(SHAPE_NAMES))
    assert parity(restricted, theirs_restricted, x)["max_abs_score_diff"] < 1e-4


@pytest.mark.slow
def test_compare_train_mode_head_to_head(tmp_path) -> None:
    """Two seeds trained by both sides, scored and summarised; a second run reuses all four trainings."""
    args = [
        *quick(tmp_path),
        "mode=train",
        "seeds=[0,1]",
        "recipe.epochs=1",
        "recipe.batch=4",
        "recipe.nbs=4",
        "recipe.warmup_epochs=0",
        "recipe.close_mosaic=0",
    ]
    args[args.index("data.num_train=4")] = "data.num_train=8"
    # torch's thread count in a fresh process with this environment
    fresh = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"], capture_output=True, text=True
    )
    result = compare(tmp_path, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "compare" / "exp"
    trained = sorted((tmp_path / "runs" / "compare" / "trained").glob("*/seed*/trained.json"))
    assert [(p.parent.parent.name.split("-")[0], p.parent.name) for p in trained] == [
        ("ours", "seed0"),
        ("ours", "seed1"),
        ("ultralytics", "seed0"),
        ("ultralytics", "seed1"),
    ]
    weights = [p.parent / json.loads(p.read_text())["run"]["weights"] for p in trained]
    assert all(w.is_file() for w in weights)
    stamps = {p: p.stat().st_mtime_ns for p in [*trained, *weights]}
    for name in ("compare.md", "compare.csv", "summary.csv", "models.csv", "curves.png", "map_vs_latency.png"):
        assert (run / name).is_file(), name

    table = rows(run / "compare.csv")
    assert [(r["seed"], r["side"], r["reused"]) for r in table] == [
        (s, side, "False") for s in ("0", "1") for side in ("ours", "ultralytics")
    ]
    for row in table:
        assert float(row["images_per_s"]) > 0 and float(row["wall_time_s"]) >= float(row["train_time_s"]) > 0
        assert row["epochs"] == "1" and row["train_images"] == "8" and row["ultralytics_mAP50-95"] != ""
        assert (row["latency_ms"] != "") == (row["seed"] == "0")  # latency at the first seed only
    assert {r["side"]: r["workers"] for r in table} == {"ours": "2", "ultralytics": "0"}  # theirs: 0 on a CPU
    assert table[0]["params"] == table[1]["params"]  # the same architecture
    for seed in ("0", "1"):
        for side in ("ours", "ultralytics"):
            metrics = json.loads((run / "seeds" / seed / "models" / f"{side}_best" / "metrics.json").read_text())
            assert metrics["training"]["epochs"] == 1 and metrics["training"]["train_images"] == 8
    summary = {r["metric"]: r for r in rows(run / "summary.csv")}
    assert summary["mAP50-95"]["n"] == "2" and summary["train images/s"]["ratio_is"] == "ratio of means"
    markdown = (run / "compare.md").read_text()
    assert "Same-recipe head-to-head over 2 seeds" in markdown and "Not matched" in markdown
    assert "## Per seed" in markdown and "| 0 |" in markdown and "| 1 |" in markdown and "t-interval" in markdown

    again = compare(tmp_path, *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert " ".join(again.stdout.split()).count("reused from") == 4, again.stdout[-3000:]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing retrained
    second = tmp_path / "runs" / "compare" / "exp2"
    assert [(r["seed"], r["side"], r["reused"]) for r in rows(second / "compare.csv")] == [
        (s, side, "True") for s in ("0", "1") for side in ("ours", "ultralytics")
    ]
    assert (second / "curves.png").is_file() and "| both |" in (second / "compare.md").read_text()

    # imported last: importing Ultralytics sets OMP_NUM_THREADS for this process's later children
    from ultralytics.utils import NUM_THREADS  # the CPU thread count their trainer sets for itself

    # ours: torch's count in a fresh process (what train.py uses), at every seed although their trainer
    # set the process's count to theirs after the first
    counts = {(r["seed"], r["side"]): r["threads"] for r in table}
    assert counts == {
        (s, side): n for s in "01" for side, n in (("ours", fresh.stdout.strip()), ("ultralytics", str(NUM_THREADS)))
    }
