"""Experiment loggers: the CSV file and plot, wandb in offline and disabled modes (never online), and
the logger options as the task builds them (TensorBoard and MLflow: tests/train/test_trackers.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib.image
import pytest

from detector.config import compose, instantiate_node
from detector.errors import ConfigError
from detector.train.loggers import CSVLogger, MultiLogger, WandbLogger, open_loggers


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def test_csv_rows_new_keys_and_plot(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path)
    logger.log_config({"lr": 0.01})
    logger.log_epoch(0, {"train/loss": 2.5, "lr": 0.01})
    logger.log_epoch(1, {"train/loss": 1.25, "lr": 0.009})
    logger.log_epoch(2, {"train/loss": 0.5, "lr": 0.008, "val/mAP50": 0.3})
    logger.log_files([tmp_path / "results.png"])
    logger.finish()

    header, rows = read_csv(tmp_path / "metrics.csv")
    assert header == ["epoch", "train/loss", "lr", "val/mAP50"]
    assert [row["epoch"] for row in rows] == ["0", "1", "2"]
    assert [float(row["train/loss"]) for row in rows] == [2.5, 1.25, 0.5]
    assert [float(row["lr"]) for row in rows] == pytest.approx([0.01, 0.009, 0.008])
    assert [row["val/mAP50"] for row in rows] == ["", "", "0.3"]
    assert logger.run_id is None

    image = matplotlib.image.imread(tmp_path / "results.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv", "results.png"]  # no temporaries


def test_csv_resume_replaces_later_epochs(tmp_path: Path) -> None:
    first = CSVLogger(tmp_path)
    for epoch in range(3):
        first.log_epoch(epoch, {"loss": float(epoch)})
    resumed = CSVLogger(tmp_path)  # resumed from the checkpoint of epoch 0
    resumed.log_epoch(1, {"loss": 10.0, "map": 0.5})
    resumed.log_epoch(2, {"loss": 20.0, "map": 0.6})

    header, rows = read_csv(tmp_path / "metrics.csv")
    assert header == ["epoch", "loss", "map"]
    assert [(row["epoch"], row["loss"], row["map"]) for row in rows] == [
        ("0", "0", ""),
        ("1", "10", "0.5"),
        ("2", "20", "0.6"),
    ]
    fresh = CSVLogger(tmp_path, resume_rows=False)
    fresh.log_epoch(0, {"loss": 7.0})
    assert [row["loss"] for row in read_csv(tmp_path / "metrics.csv")[1]] == ["7"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv", "results.png"]


@pytest.fixture
def wandb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """wandb quiet, with its config and cache dirs in tmp_path, and never online: an online init fails."""
    import wandb

    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    real_init = wandb.init

    def init(*args, **kwargs):
        if kwargs.get("mode") not in ("offline", "disabled"):
            raise wandb.errors.CommError("no network in tests")
        return real_init(*args, **kwargs)

    monkeypatch.setattr(wandb, "init", init)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return run_dir


def write_png(path: Path) -> Path:
    import cv2
    import numpy as np

    cv2.imwrite(str(path), np.full((32, 48, 3), 127, np.uint8))
    return path


def test_wandb_offline_run_is_syncable_and_resumable(wandb_env: Path) -> None:
    run_dir = wandb_env
    (run_dir / "weights").mkdir()
    (run_dir / "weights" / "notes.txt").write_text("best epoch 1\n")
    logger = WandbLogger(run_dir, "detector-tests", entity=None, mode="offline", tags=["test"], name="t")
    run_id = logger.run_id
    assert isinstance(run_id, str) and run_id
    logger.log_config({"model": {"depth": 0.33}, "epochs": 2})
    logger.log_epoch(0, {"train/loss": 2.0})
    logger.log_epoch(1, {"train/loss": 1.0})
    logger.log_files([write_png(run_dir / "results.png"), run_dir / "weights" / "notes.txt"])
    logger.finish()

    (offline,) = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert offline.name.endswith(f"-{run_id}")
    assert (offline / f"run-{run_id}.wandb").stat().st_size > 0
    saved = offline / "files" / "weights" / "notes.txt"
    assert saved.read_text() == "best epoch 1\n" and not saved.is_symlink()  # survives moving run_dir
    assert list((offline / "files" / "media" / "images").glob("results_*.png"))

    resumed = WandbLogger(run_dir, "detector-tests", entity=None, mode="offline", tags=[], run_id=run_id)
    assert resumed.run_id == run_id
    resumed.log_epoch(2, {"train/loss": 0.5})
    resumed.finish()
    # a resumed offline run is a second directory for the same id ("...-<id>-1" in the same second)
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all((run / f"run-{run_id}.wandb").is_file() for run in runs)


def test_wandb_online_failure_falls_back_to_offline(wandb_env: Path) -> None:
    with pytest.warns(UserWarning, match="offline"):
        logger = WandbLogger(wandb_env, project="detector-tests", entity=None, mode="online", tags=[])
    logger.log_epoch(0, {"loss": 1.0})
    logger.finish()
    (offline,) = (wandb_env / "wandb").glob("offline-run-*")
    assert (offline / f"run-{logger.run_id}.wandb").is_file()


def makers(*overrides: str) -> dict:
    """The ``logger`` option's nodes as the task instantiates them, by key."""
    nodes = compose("train", list(overrides)).logger
    return {key: instantiate_node(node, f"logger.{key}") for key, node in nodes.items()}


def test_wandb_disabled_writes_nothing(wandb_env: Path) -> None:
    logger = open_loggers(makers("logger=wandb", "logger.wandb.mode=disabled"), wandb_env, {}, None)
    assert isinstance(logger, MultiLogger) and [type(x) for x in logger.loggers.values()] == [CSVLogger, WandbLogger]
    logger.log_config({"epochs": 1})
    logger.log_epoch(0, {"loss": 1.0})
    with pytest.warns(UserWarning, match="missing.txt"):
        logger.log_files([write_png(wandb_env / "results.png"), wandb_env / "missing.txt"])
    logger.finish()
    assert not (wandb_env / "wandb").exists()
    assert (wandb_env / "metrics.csv").is_file()


def test_build_loggers_and_bad_values(tmp_path: Path) -> None:
    logger = open_loggers(makers("logger=csv"), tmp_path, {}, None)  # the logger option's _target_
    assert list(logger.loggers) == ["csv"] and isinstance(logger.loggers["csv"], CSVLogger)
    assert logger.run_id is None and logger.run_ids == {}
    with pytest.raises(ConfigError, match="unknown logger 'neptune'"):
        compose("train", ["logger=neptune"])
    with pytest.raises(ConfigError, match="unknown key 'logger.mode'"):
        compose("train", ["logger=wandb", "logger.mode=offline"])  # the wandb logger's keys: logger.wandb.*
    with pytest.raises(ValueError, match="mode"):
        WandbLogger(tmp_path, project="p", entity=None, mode="shared", tags=[])
