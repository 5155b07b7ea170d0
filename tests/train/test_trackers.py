"""TensorBoard and MLflow loggers: what they write is read back with the tracker's own reader
(TensorBoard's EventAccumulator, MLflow's MlflowClient on a local store), alone, in a training run
with several loggers, and when that run is resumed."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from detector.errors import ConfigError
from detector.train.loggers import MLflowLogger, TensorBoardLogger
from tests.helpers import run_task


def events(log_dir: Path):
    """TensorBoard's own reader over ``log_dir``, everything kept (no sampling)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    reader = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    reader.Reload()
    return reader


def scalars(reader, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in reader.Scalars(tag)]


def same_points(got: list[tuple[int, float]], expected: list[tuple[int, float]], rel: float = 1e-6) -> bool:
    """The same steps in the same order, and the values equal to ``rel`` (float32 in the event files)."""
    return [s for s, _ in got] == [s for s, _ in expected] and [v for _, v in got] == pytest.approx(
        [v for _, v in expected], rel=rel, abs=1e-7
    )


def write_png(path: Path, height: int = 30, width: int = 50) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), 90, np.uint8))
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_tensorboard_events_read_back_and_a_resumed_run_replaces_its_epochs(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path)
    logger.log_config({"train": {"epochs": 3}})
    for epoch in range(3):
        logger.log_epoch(epoch, {"train/box": 2.0 - epoch, "mAP50-95": 0.1 * epoch})
    with pytest.warns(UserWarning, match="missing.png"):
        logger.log_files([write_png(tmp_path / "pr_curves.png"), tmp_path / "missing.png", tmp_path / "notes.txt"])
    logger.finish()

    reader = events(tmp_path)
    assert sorted(reader.Tags()["scalars"]) == ["mAP50-95", "train/box"]
    assert scalars(reader, "train/box") == [(0, 2.0), (1, 1.0), (2, 0.0)]
    assert same_points(scalars(reader, "mAP50-95"), [(0, 0.0), (1, 0.1), (2, 0.2)])
    (image,) = reader.Images("pr_curves")
    assert (image.step, image.width, image.height) == (2, 50, 30)
    (text,) = reader.Tensors("config/text_summary")
    assert b"epochs: 3" in text.tensor_proto.string_val[0]

    resumed = TensorBoardLogger(tmp_path)  # resumed after epoch 0: epochs 1 and 2 again, other values
    resumed.log_epoch(1, {"train/box": 5.0, "mAP50-95": 0.5})
    resumed.log_epoch(2, {"train/box": 4.0, "mAP50-95": 0.6})
    resumed.finish()
    reader = events(tmp_path)
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2  # the same log directory, a second file
    assert scalars(reader, "train/box") == [(0, 2.0), (1, 5.0), (2, 4.0)]  # each epoch once, the newest values
    assert same_points(scalars(reader, "mAP50-95"), [(0, 0.0), (1, 0.5), (2, 0.6)])


def test_mlflow_run_reads_back_and_continues(tmp_path: Path, mlflow_uri: str) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    logger = MLflowLogger(tmp_path, mlflow_uri, "tracker-tests", {"team": "vision"}, name="exp3")
    logger.log_config({"train": {"epochs": 3, "box": 7.5}, "names": ["a", "b"], "resume": None})
    logger.log_epoch(0, {"train/box": 2.0, "mAP50-95": 0.0})
    logger.log_epoch(1, {"train/box": 1.5, "mAP50-95": 0.25})
    notes = tmp_path / "weights" / "notes.txt"
    notes.parent.mkdir()
    notes.write_text("best epoch 1\n")
    with pytest.warns(UserWarning, match="missing.txt"):
        logger.log_files([write_png(tmp_path / "pr_curves.png"), notes, tmp_path / "missing.txt"])
    logger.finish()

    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "exp3"
    assert client.get_experiment(run.info.experiment_id).name == "tracker-tests"
    assert run.data.params == {"train.epochs": "3", "train.box": "7.5", "names": "['a', 'b']", "resume": "None"}
    assert run.data.tags["team"] == "vision" and run.data.tags["run_dir"] == str(tmp_path.resolve())
    history = {
        key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)] for key in run.data.metrics
    }
    assert history == {"train/box": [(0, 2.0), (1, 1.5)], "mAP50-95": [(0, 0.0), (1, 0.25)]}
    files = {f.path for f in client.list_artifacts(run.info.run_id)} | {
        f.path for f in client.list_artifacts(run.info.run_id, "weights")
    }
    assert files == {"config.yaml", "pr_curves.png", "weights", "weights/notes.txt"}
    root = Path(mlflow_uri.removeprefix("sqlite:///")).parent / "mlartifacts"  # beside the local database
    assert run.info.artifact_uri == str(root / run.info.run_id / "artifacts")
    assert (root / run.info.run_id / "artifacts" / "weights" / "notes.txt").read_text() == "best epoch 1\n"

    resumed = MLflowLogger(tmp_path, mlflow_uri, "tracker-tests", {}, run_id=logger.run_id, name="exp3")
    assert resumed.run_id == logger.run_id and client.get_run(logger.run_id).info.status == "RUNNING"
    resumed.log_config({"train": {"epochs": 5, "box": 7.5}, "names": ["a", "b"], "resume": None})
    resumed.log_epoch(1, {"train/box": 1.25, "mAP50-95": 0.5})
    resumed.finish()
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED" and run.data.params["train.epochs"] == "3"  # MLflow keeps the first
    assert run.data.tags["resumed.train.epochs"] == "5" and "resumed.train.box" not in run.data.tags
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/box")] == [
        (0, 2.0),
        (1, 1.5),
        (1, 1.25),
    ]
    assert run.data.metrics["train/box"] == 1.25  # the latest point
    assert len(client.search_runs([run.info.experiment_id])) == 1


def test_tracker_errors_are_one_line(tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as err:
        MLflowLogger(tmp_path, mlflow_uri, "tracker-tests", {}, run_id="0" * 32)
    assert f"logger=mlflow (run {'0' * 32} in {mlflow_uri}):" in str(err.value) and "\n" not in str(err.value)
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"^logger=mlflow needs the mlflow package \(.*\): pip install mlflow-skinny"):
        MLflowLogger(tmp_path, mlflow_uri, "tracker-tests", {})
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ConfigError, match=r"^logger=tensorboard needs .*: pip install tensorboard$"):
        TensorBoardLogger(tmp_path)


def test_several_loggers_follow_a_resumed_run(tmp_path: Path, tiny_run: list[str], mlflow_uri: str) -> None:
    """``logger=[tensorboard,mlflow]``: the CSV, TensorBoard and MLflow hold the same epochs; a resumed
    run (here: a finished one extended by an epoch) writes into the same log directory and continues
    the same MLflow run. (Without validation, to stay short: the columns are the training ones.)"""
    from mlflow.tracking import MlflowClient

    loggers = [
        "logger=[tensorboard,mlflow]",
        f"logger.mlflow.tracking_uri={mlflow_uri}",
        "logger.mlflow.experiment=e2e",
    ]
    run_dir = run_task("train.py", *tiny_run, "train.epochs=1", "train.val=false", *loggers)
    first = torch.load(run_dir / "weights" / "last.pt", weights_only=True)["train"]["logger_run_id"]
    assert list(first) == ["mlflow"]
    client = MlflowClient(tracking_uri=mlflow_uri)
    run = client.get_run(first["mlflow"])
    assert run.info.run_name == "exp" and run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "1" and run.data.params["logger.mlflow.experiment"] == "e2e"
    assert {f.path for f in client.list_artifacts(run.info.run_id)} == {"config.yaml", "results.png"}
    assert events(run_dir).Tags()["images"] == ["results"]

    run_task("train.py", f"resume={run_dir / 'weights' / 'last.pt'}", "train.epochs=2")  # one epoch more
    again = torch.load(run_dir / "weights" / "last.pt", weights_only=True)["train"]["logger_run_id"]
    assert again == first
    assert len(client.search_runs([run.info.experiment_id])) == 1
    run = client.get_run(first["mlflow"])
    assert run.info.status == "FINISHED" and run.data.tags["resumed.train.epochs"] == "2"
    rows = read_csv(run_dir / "metrics.csv")
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 2  # one per process, in the one directory
    reader = events(run_dir)
    for key in ("train/box", "train/cls", "train/dfl", "lr/weights", "images_per_s"):
        expected = [(int(row["epoch"]), float(row[key])) for row in rows]
        assert same_points(scalars(reader, key), expected, rel=1e-5), key  # the CSV keeps 6 digits
        history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
        assert same_points(history, expected, rel=1e-5), key
