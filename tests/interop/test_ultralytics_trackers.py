"""Their trainers in a comparison log to no experiment tracker, and the user's settings file is
left as it was."""

from __future__ import annotations

import pytest

pytest.importorskip("ultralytics")
pytest.importorskip("mlflow")


def tracker_modules() -> set[str]:
    """The modules of the callbacks their code adds to a trainer built now."""
    from ultralytics.utils.callbacks.base import add_integration_callbacks, get_default_callbacks

    class DetectionTrainer:  # their rule: trackers go to instances whose class name has "Trainer"
        callbacks = get_default_callbacks()

    trainer = DetectionTrainer()
    add_integration_callbacks(trainer)
    return {f.__module__.rsplit(".", 1)[-1] for fs in trainer.callbacks.values() for f in fs}


def test_trackers_are_off_inside_and_restored_after_without_writing_settings() -> None:
    from ultralytics.utils import SETTINGS

    from detector.interop.ultralytics import trackers_off

    before = dict(SETTINGS)
    dict.update(SETTINGS, mlflow=True)  # as their default settings have it (in memory: no file write)
    written = SETTINGS.file.read_bytes() if SETTINGS.file.is_file() else None
    try:
        assert "mlflow" in tracker_modules()
        with trackers_off():
            assert all(SETTINGS[key] is False for key in ("mlflow", "wandb", "comet", "clearml", "dvc"))
            assert not tracker_modules() & {"mlflow", "wb", "comet", "clearml", "dvc", "raytune", "tensorboard"}
        assert SETTINGS["mlflow"] is True and "mlflow" in tracker_modules()
        assert (SETTINGS.file.read_bytes() if SETTINGS.file.is_file() else None) == written
    finally:
        dict.clear(SETTINGS)
        dict.update(SETTINGS, before)
