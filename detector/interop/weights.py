"""Weights from any file a user may give a checkpoint-taking command: one of our checkpoints, or an
Ultralytics detection ``.pt`` read through the restricted unpickler and placed on our equivalent
model. Reading a foreign file is this explicit step; :mod:`detector.checkpoint` reads ours only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detector.checkpoint import ForeignCheckpoint, load_checkpoint
from detector.interop import ultralytics_weights
from detector.models.detector import Detector


def load_weights(path: str | Path) -> tuple[Detector, dict[str, Any]]:
    """The model in ``path`` (eval mode) and its metadata: ``names`` and ``model_config`` always,
    ``format: ultralytics`` and the source model's name and training arguments for theirs."""
    try:
        return load_checkpoint(path)
    except ForeignCheckpoint:
        checkpoint = ultralytics_weights.read(path)
    model = ultralytics_weights.to_detector(checkpoint)
    meta = {
        "format": "ultralytics",
        "names": list(checkpoint.names),
        "model_config": ultralytics_weights.equivalent_config(checkpoint),
        "ultralytics": {"model": checkpoint.model_name, "train_args": checkpoint.train_args},
    }
    return model, meta
