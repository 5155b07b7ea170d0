"""The config of a resumed run: the saved one, with only train.*, device and logger.* changed from
the command line (read by Hydra's override parser); configs saved before schedule and logger were
``_target_`` nodes still resume."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from detector.config import compose, instantiate_node
from detector.errors import ConfigError
from detector.tasks.train import resumed_config
from detector.train.loggers import CSVLogger, WandbLogger
from detector.train.optim import LinearSchedule


def saved(*overrides: str) -> dict:
    return OmegaConf.to_container(compose("train", list(overrides)), resolve=True, enum_to_str=True)


def test_train_device_and_logger_values_change() -> None:
    cfg = resumed_config(
        saved("logger=wandb", "train.epochs=3"),
        [
            "resume=runs/train/exp/weights/last.pt",
            "train.epochs=5",
            "device=cpu",
            "logger.mode=offline",
            "+logger.tags=[a,b]",
        ],
    )
    assert cfg.resume is None and cfg.train.epochs == 5 and cfg.device == "cpu"
    assert cfg.logger.mode == "offline" and list(cfg.logger.tags) == ["a", "b"]
    assert cfg.model == compose("train", []).model  # the rest as saved


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.scale.width=0.5", "model.scale.width=0.5: a resumed run keeps its model, data and augmentation"),
        ("augment=none", "augment=none: a resumed run keeps"),
        ("logger=csv", "logger=csv: a resumed run keeps"),
        ("train.epochs=1,2", "only train.*, device and logger.* can change, one value each"),
        ("train.epochz=2", "unknown key 'train.epochz' (did you mean 'train.epochs'?)"),
        ("train.epochs=many", "invalid value for 'train.epochs'"),
        ("logger.mode=sometimes", "invalid value for 'logger.mode'"),
        ("train.epochs=[", "cannot parse override 'train.epochs=['"),
    ],
)
def test_anything_else_is_one_line(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        resumed_config(saved("logger=wandb"), [override])
    assert message in str(err.value) and "\n" not in str(err.value)


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
