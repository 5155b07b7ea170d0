"""The config of a resumed run: the saved one, with only train.*, device and logger.* changed from
the command line (read by Hydra's override parser); configs saved before schedule and logger were
``_target_`` nodes still resume."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from detector.config import compose, instantiate_node
from detector.errors import ConfigError
from detector.tasks.train import resumed_config
from detector.train.loggers import CSVLogger, TensorBoardLogger, WandbLogger, open_loggers
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
            "logger.wandb.mode=offline",
            "+logger.wandb.tags=[a,b]",
        ],
    )
    assert cfg.resume is None and cfg.train.epochs == 5 and cfg.device == "cpu"
    assert cfg.logger.wandb.mode == "offline" and list(cfg.logger.wandb.tags) == ["a", "b"]
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
        ("logger.wandb.mode=sometimes", "invalid value for 'logger.wandb.mode'"),
        ("logger.mlflow.experiment=x", "this run has no logger 'mlflow' (it has csv, wandb)"),
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
    assert list(cfg.logger) == ["csv", "wandb"] and cfg.logger.wandb.project == "p"
    assert cfg.logger.wandb.mode == "disabled" and list(cfg.logger.wandb.tags) == ["x"]
    old["logger"] = {"backend": "csv", "project": "detector", "entity": None, "mode": "online", "tags": []}
    cfg = resumed_config(old, [])
    assert list(cfg.logger) == ["csv"] and set(cfg.logger.csv.keys()) == {"_target_", "_partial_"}


def test_a_config_saved_with_one_logger_node_resumes() -> None:
    """``logger`` as saved before it held one node per logger: the csv_loggers / wandb_loggers node."""
    old = saved()
    old["logger"] = {"_target_": "detector.train.loggers.csv_loggers", "_partial_": True}
    assert resumed_config(old, []).logger == compose("train", ["logger=csv"]).logger
    old["logger"] = {
        "_target_": "detector.train.loggers.wandb_loggers",
        "_partial_": True,
        "project": "p",
        "entity": "me",
        "mode": "offline",
        "tags": ["x"],
    }
    cfg = resumed_config(old, ["logger.wandb.mode=disabled"])
    expected = compose(
        "train", ["logger=wandb", "logger.wandb.project=p", "logger.wandb.entity=me", "+logger.wandb.tags=[x]"]
    )
    expected.logger.wandb.mode = "disabled"
    assert cfg.logger == expected.logger


@pytest.mark.parametrize(
    "option, kinds",
    [
        ("csv", [CSVLogger]),
        ("wandb", [CSVLogger, WandbLogger]),
        ("tensorboard", [CSVLogger, TensorBoardLogger]),
        ("[tensorboard,wandb]", [CSVLogger, TensorBoardLogger, WandbLogger]),
    ],
)
def test_every_logger_option_builds_its_loggers(tmp_path, monkeypatch, option: str, kinds: list[type]) -> None:
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    plain = saved(f"logger={option}", *(["logger.wandb.mode=disabled"] if "wandb" in option else []))
    cfg = resumed_config(plain, [])  # the saved nodes, as a resumed run builds them
    makers = {key: instantiate_node(node, f"logger.{key}") for key, node in cfg.logger.items()}
    loggers = open_loggers(makers, tmp_path, {}, "exp")
    assert [type(x) for x in loggers.loggers.values()] == kinds
    loggers.finish()
