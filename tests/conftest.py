"""Test-wide setup: Ultralytics runs offline; its settings and the doctor's cache stay out of the
home directory. Fixtures: one tiny generated dataset for the whole session and the overrides of a
tiny training run on it (the one shrunk config every end-to-end test starts from)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="ultralytics-settings-"))
os.environ.setdefault("DETECTOR_CACHE", tempfile.mkdtemp(prefix="detector-cache-"))  # the doctor's cache
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # MLflow sends no usage data from the tests

# The tiny dataset: 8 train and 4 val images of the built-in shapes data, generated at 96 px. Every
# test that points data.root at the shared folder passes exactly these (another count would make
# the generator rebuild the folder under the other tests).
TINY_DATA = ("data.num_train=8", "data.num_val=4", "data.imgsz=96")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny dataset, generated once per session (its data.yaml lies in this folder)."""
    from detector.data.shapes import ensure_shapes

    root = tmp_path_factory.mktemp("tiny") / "shapes"
    ensure_shapes(root, num_train=8, num_val=4, imgsz=96, seed=0)
    return root


@pytest.fixture
def tiny_data(tiny_shapes: Path) -> list[str]:
    """``data=shapes`` overrides that select the session's tiny dataset."""
    return [*TINY_DATA, f"data.root={tiny_shapes}"]


@pytest.fixture
def tiny_run(tiny_data: list[str], tmp_path: Path) -> list[str]:
    """Overrides of a tiny training run: a 1/16-width yolov8n at 64 px on the tiny dataset, batch 4
    with a step per batch, no loader workers, no warmup, on the CPU, run directories under
    ``tmp_path / "runs"``. Tests append what they vary (``train.epochs=2``, ...)."""
    return [
        "model=yolov8n",
        "model.scale.width=0.0625",
        "imgsz=64",
        "device=cpu",
        *tiny_data,
        "train.batch=4",
        "train.nbs=4",
        "train.workers=0",
        "schedule.warmup_epochs=0",
        f"project={tmp_path / 'runs'}",
    ]


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One local MLflow store (SQLite) for the session, for ``logger.mlflow.tracking_uri``: creating its
    tables takes seconds, so they are made once."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri).search_experiments()
    return uri
