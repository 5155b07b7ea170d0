"""The config of a resumed run: configs saved before schedule and logger were ``_target_`` nodes
still resume; every logger option builds its loggers."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from detector.config import compose, instantiate_node
from detector.tasks.train import resumed_config
from detector.train.loggers import CSVLogger, WandbLogger
from detector.train.optim import LinearSchedule


def saved(*overrides: str) -> dict:
    return OmegaConf.to_container(compose("train", list(overrides)), resolve=True, enum_to_str=True)


def test_a_config_saved_with_schedule_shape_and_logger_backend_resumes() -> None:
    old = saved()
    old["schedule"] = {
        "shape": "linear",
        "final_lr_ratio": 0.05,
        "warmup_epochs": 0.0,
        "warmup_momentum": 0.8,
        "warmup_bias_lr": 0.1,
    }
    old["logger"] = {"backend": "wandb", "project": "p", "entity": None, "mode": "disabled", "tags": ["x"]}
    cfg = resumed_config(old, ["train.epochs=2"])
    schedule = instantiate_node(cfg.schedule, "schedule")(epochs=10)
    assert isinstance(schedule, LinearSchedule) and schedule.final_lr_ratio == 0.05 and schedule.warmup_epochs == 0
    assert cfg.logger.project == "p" and cfg.logger.mode == "disabled" and list(cfg.logger.tags) == ["x"]
    old["logger"] = {"backend": "csv", "project": "detector", "entity": None, "mode": "online", "tags": []}
    cfg = resumed_config(old, [])
    assert set(cfg.logger.keys()) == {"_target_", "_partial_"}


@pytest.mark.parametrize("option, kinds", [("csv", [CSVLogger]), ("wandb", [CSVLogger, WandbLogger])])
def test_every_logger_option_builds_its_loggers(tmp_path, monkeypatch, option: str, kinds: list[type]) -> None:
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    plain = saved(f"logger={option}", *(["logger.mode=disabled"] if option == "wandb" else []))
    loggers = instantiate_node(OmegaConf.create(plain["logger"]), "logger")(tmp_path, run_id=None, name="exp")
    assert [type(x) for x in loggers.loggers] == kinds
    loggers.finish()
