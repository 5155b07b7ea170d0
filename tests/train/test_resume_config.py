"""The config of a resumed run: the saved one, with only train.*, device and logger.* changed from
the command line (read by Hydra's override parser), anything else accepted when it repeats the run's
value and refused, naming each, when it differs; configs saved before schedule and logger were
``_target_`` nodes still resume. Which checkpoint ``resume=true`` finds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from detector.config import compose, instantiate_node
from detector.errors import ConfigError
from detector.tasks.resume import resume_checkpoint, resumed_config
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
        ("model.scale.width=0.5", "a resumed run keeps its model, data and augmentation"),
        ("model.scale.width=0.5", "differ from the run: model.scale.width=0.5 (the run has 0.25)"),
        ("augment=none", "augment=none (augment.mosaic: the run has Mosaic(...), this gives None,"),
        ("logger=csv", "logger=csv (logger.wandb: the run has WandbLogger(...), this gives (not set))"),
        ("train.epochs=1,2", "train.epochs=1,2: a resumed run takes one value per key, not a sweep"),
        ("model=yolov8n,yolo11n", "model=yolov8n,yolo11n: a resumed run takes one value per key"),
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


ORIGINAL = ["model=yolov8n", "model.scale.width=0.0625", "imgsz=64", "data=shapes", "optim=sgd", "logger=wandb"]


def test_the_original_command_line_resumes() -> None:
    """The command that started the run, with resume= appended: every value it repeats is accepted
    (group options too: they compose to the run's nodes), and train.* / logger.* still change."""
    run = saved(*ORIGINAL, "logger.wandb.mode=offline", "project=somewhere", "train.epochs=3")
    cfg = resumed_config(
        run, [*ORIGINAL, "logger.wandb.mode=offline", "project=somewhere", "train.epochs=5", "resume=last.pt"]
    )
    assert cfg.train.epochs == 5 and cfg.imgsz == 64 and cfg.model.scale.width == 0.0625
    assert OmegaConf.to_container(cfg.model) == run["model"]


def test_only_what_differs_is_refused_each_with_both_values() -> None:
    run = saved(*ORIGINAL)
    with pytest.raises(ConfigError) as err:
        resumed_config(run, [*ORIGINAL[:1], "model.scale.width=0.125", "imgsz=96", *ORIGINAL[3:], "optim.lr=0.02"])
    message = str(err.value)
    assert "\n" not in message
    differ = message.split("differ from the run: ")[1]
    assert (
        differ
        == "model.scale.width=0.125 (the run has 0.0625); imgsz=96 (the run has 64); optim.lr=0.02 (the run has 0.01)"
    )
    with pytest.raises(ConfigError) as err:
        resumed_config(run, ["model=yolo11n", "model.scale.width=0.0625", "optim=sgd", "optim=adamw"])
    differ = str(err.value).split("differ from the run: ")[1]
    assert differ.startswith("model=yolo11n (model.scale.depth: the run has 0.33, this gives 0.5, ")  # another option
    assert "; optim=adamw (optim._target_: the run has 'torch.optim.SGD', this gives 'torch.optim.AdamW', " in differ
    assert "optim.lr: the run has 0.01, this gives 0.002" in differ and "and 2 more)" in differ
    assert "optim=sgd" not in differ  # the last value of a key counts
    with pytest.raises(ConfigError) as err:
        resumed_config(run, ["model=yolov8n", "model/backbone=resnet18", "model.scale.width=0.0625"])
    differ = str(err.value).split("differ from the run: ")[1]
    assert differ.startswith(
        "model/backbone=resnet18 (model.backbone._target_: the run has"
    )  # model=yolov8n is the run's


def touch(path: Path, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    os.utime(path, (mtime, mtime))
    return path


def test_resume_true_finds_the_latest_last_checkpoint_of_the_name(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    touch(runs / "train" / "exp" / "weights" / "last.pt", 1_000)
    touch(runs / "train" / "exp3" / "weights" / "last.pt", 2_000)
    newest = touch(runs / "train" / "exp2" / "weights" / "last.pt", 3_000)  # not the highest number: the newest
    touch(runs / "train" / "expert" / "weights" / "last.pt", 9_000)  # another name
    touch(runs / "train" / "exp4" / "weights" / "best.pt", 9_000)  # no last.pt
    touch(runs / "train" / "exp5" / "weights" / "epoch3.pt", 9_000)
    for value in ("true", "True", "last"):
        assert resume_checkpoint(value, str(runs), "train", "exp") == newest
    assert resume_checkpoint("true", str(runs), "train", "expert") == runs / "train" / "expert" / "weights" / "last.pt"
    assert resume_checkpoint("some/file.pt", str(runs), "train", "exp") == Path("some/file.pt")
    with pytest.raises(ConfigError) as err:
        resume_checkpoint("true", str(runs), "train", "other")
    assert str(err.value) == (
        f"resume=true: no run to resume, there is no {runs / 'train' / 'other'}*/weights/last.pt "
        f"(the run is found by project={runs} and name=other)"
    )
    with pytest.raises(ConfigError, match="no run to resume"):
        resume_checkpoint("last", str(tmp_path / "nowhere"), "train", "exp")


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
