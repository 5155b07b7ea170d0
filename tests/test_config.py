"""Typed configs: composition, one-line errors, num_classes written once, run directories."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf

from detector import build_model
from detector.config import compose, instantiate_node
from detector.data.build import AugmentSettings, train_pipeline
from detector.device import select_device
from detector.errors import ConfigError, DataError
from detector.train.loggers import open_loggers
from tests.helpers import REPO, run_script, run_task

TRAIN = str(REPO / "train.py")


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["train.epochz=3"], "train.epochz"),
        # the same path through the entry point; the messages themselves: test_compose_errors_name_the_key
        pytest.param(["train.epochs=many"], "train.epochs", marks=pytest.mark.slow),
        pytest.param(["model=yolov9z"], "yolov9z", marks=pytest.mark.slow),
    ],
)
def test_cli_rejects_bad_config_in_one_line(tmp_path, overrides: list[str], key: str) -> None:
    result = run_script(TRAIN, *overrides, cwd=tmp_path)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert key in lines[0] and lines[0].startswith("error:")
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "runs").exists()  # failed before any work


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["train.epochz=3"], "unknown key 'train.epochz' (did you mean 'train.epochs'?)"),
        (["train.epochs=many"], "invalid value for 'train.epochs'"),
        (["model.backbone.widht=0.5"], "unknown key 'model.backbone.widht'"),
        (["model=yolov9z"], "unknown model 'yolov9z'; choose one of:"),
        (["model/backbone=resnet9"], "unknown model/backbone 'resnet9'"),
        (["optim=adamw", "optim.momentum=0.9"], "unknown key 'optim.momentum'"),
        (["logger=wandb", "logger.wandb.mode=sometimes"], "invalid value for 'logger.wandb.mode'"),
        (["data.num_classes=3"], "data.names has 6 entries but data.num_classes is 3"),
        (["model.head.num_classes=4"], "model.head.num_classes=4 but data.num_classes=6"),
        (["imgsz=100"], "imgsz=100 must be a positive multiple of 32"),
        (["train.batch=0"], "train.batch=0 must be >= 1"),
        (["augment.mosaic_window=-3"], "augment.mosaic_window=-3 must be >= 0"),
        (["augment.close_mosaic=-1"], "augment.close_mosaic=-1 must be >= 0"),
        (["augment.mixup=1.5"], "augment.mixup=1.5 is a probability: it must be in [0, 1]"),
    ],
)
def test_compose_errors_name_the_key(overrides: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        compose("train", overrides)
    message = str(err.value)
    assert expected in message and "\n" not in message


def test_num_classes_is_written_once_and_interpolated() -> None:
    cfg = compose("train", ["data.num_classes=3", "data.names=[a,b,c]"])
    assert cfg.model.head.num_classes == 3
    raw = (REPO / "configs" / "model" / "head" / "dfl.yaml").read_text()
    assert "num_classes: ${data.num_classes}" in raw


def test_components_and_scales_can_be_overridden() -> None:
    swapped = compose("train", ["model=yolov8s", "model/backbone=resnet50"])
    assert swapped.model.backbone.arch._target_ == "torchvision.models.resnet50"
    assert swapped.model.neck.width == 0.5  # the neck keeps yolov8s' scale
    one = compose("train", ["model.backbone.width=0.5"])
    assert (one.model.backbone.width, one.model.neck.width) == (0.5, 0.25)
    both = compose("train", ["model.scale.width=0.5"])
    assert (both.model.backbone.width, both.model.neck.width) == (0.5, 0.5)


@pytest.mark.parametrize(
    "group, option",
    [
        (p.parent.name, p.stem)
        for p in sorted((REPO / "configs").glob("*/*.yaml"))
        if p.parent.name not in ("model", "setup")
    ],
)
def test_every_group_option_composes_and_builds(group: str, option: str, tmp_path, request) -> None:
    """Each option of each group composes, and what it describes is built and works: the transforms
    make a pipeline, the optimizer steps, the schedule gives factors, the loggers write, the data
    source lists its images (or names the missing file in one line), a search's parameters exist."""
    if (group, option) in {("data", "yolo"), ("data", "coco_json")}:  # they need a file: one clear line
        with pytest.raises(ConfigError, match="no dataset file given: set data"):
            compose("train", [f"{group}={option}"])
        return
    generated = {  # the built-in datasets, made small (crowd's smallest image size is 256)
        name: [f"data.root={tmp_path / name}", "data.num_train=2", "data.num_val=1", f"data.imgsz={size}"]
        for name, size in (("shapes", 64), ("crowd", 256))
    }
    cfg = compose("train", [f"{group}={option}", "imgsz=64", *generated.get(option, [])])
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    if group == "augment":
        augment = AugmentSettings(**instantiate_node(cfg.augment, "augment"))
        one = (np.full((64, 64, 3), 90, np.uint8), np.array([[8.0, 8, 40, 40]], np.float32), np.array([1]))
        sample = train_pipeline(augment, 64)(*one, seed=0, partners=lambda: [one] * 3)
        assert sample.image.shape == (64, 64, 3)
    elif group == "optim":
        weight = torch.nn.Parameter(torch.ones(3))
        optimizer = instantiate_node(cfg.optim, "optim")([weight])
        weight.sum().backward()
        optimizer.step()
        assert isinstance(optimizer, torch.optim.Optimizer) and (weight < 1).all()
    elif group == "schedule":
        schedule = instantiate_node(cfg.schedule, "schedule")(epochs=10)
        assert schedule.factor(0) == pytest.approx(1.0)
        assert schedule.factor(10) == pytest.approx(cfg.schedule.final_lr_ratio)
    elif group == "logger":
        makers = {key: instantiate_node(node, f"logger.{key}") for key, node in cfg.logger.items()}
        assert list(makers) == (["csv"] if option == "csv" else ["csv", option])  # every option writes the CSV
        if option == "wandb":  # starting a real run is the training tests' business; it builds offline
            assert callable(makers["wandb"])
            return
        if option == "mlflow":  # the session's store, not the default one under ./runs
            makers["mlflow"] = functools.partial(makers["mlflow"], tracking_uri=request.getfixturevalue("mlflow_uri"))
        loggers = open_loggers(makers, tmp_path, {}, "exp")
        loggers.log_epoch(0, {"train/box": 1.0})
        loggers.finish()
        assert (tmp_path / "metrics.csv").is_file()
    elif group == "hparams_search":  # every searched key is a key of the training config
        params = yaml.safe_load((REPO / "configs" / group / f"{option}.yaml").read_text())["hydra"]["sweeper"]["params"]
        assert params and all(OmegaConf.select(cfg, key) is not None for key in params)
    elif group == "data":
        source = instantiate_node(cfg.data, "data")
        try:
            images = source.split("train").images
        except DataError as err:  # a dataset to download first: the message says where and how
            assert "\n" not in str(err) and "not found" in str(err) and "data/README.md" in str(err)
            return
        assert len(images) == 2


def test_shared_settings_at_top_level_and_loop_settings_under_train() -> None:
    cfg = compose("train", [])
    assert {"imgsz", "device", "name"} <= set(cfg.keys())
    assert {"epochs", "batch", "seed"} <= set(cfg.train.keys())


def test_cfg_job_prints_the_composed_config(tmp_path) -> None:
    result = run_script(TRAIN, "--cfg", "job", "--resolve", "train.epochs=7", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    printed = OmegaConf.create(result.stdout)
    assert printed.train.epochs == 7 and printed.model.head.num_classes == printed.data.num_classes == 6


@pytest.mark.slow  # 10 s; tests/test_runs.py checks the numbering itself in the default run
def test_train_writes_into_numbered_run_dirs(tmp_path, tiny_data, monkeypatch) -> None:
    shapes = tiny_data
    args = (
        TRAIN,
        "model=yolo11n",
        "model.scale.width=0.125",
        "imgsz=64",
        "device=cpu",
        "name=trial",
        "project=out",
        "train.epochs=1",
        "train.workers=0",
        "train.batch=4",
        *shapes,
    )
    first = run_script(*args, cwd=tmp_path)  # the command line once, then the same run in this process
    assert first.returncode == 0, first.stderr
    monkeypatch.chdir(tmp_path)
    assert run_task(*args) == Path("out/train/trial2")
    for d in ("trial", "trial2"):
        saved = OmegaConf.load(tmp_path / "out" / "train" / d / "config.yaml")
        assert saved.imgsz == 64 and saved.model.head.num_classes == 6
    assert (tmp_path / "out" / "train" / "trial" / "weights" / "last.pt").is_file()
    assert sorted(p.name for p in (tmp_path / "out" / "train").iterdir()) == ["trial", "trial2"]


def test_device_selection() -> None:
    assert select_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="not one of"):
        select_device("gpu please")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            select_device("cuda:0")


def test_build_model_api_errors_and_overrides() -> None:
    with pytest.raises(ConfigError, match="unknown model 'yolov99'"):
        build_model("yolov99")
    with pytest.raises(ConfigError, match="did you mean 'model.backbone.width'"):
        build_model("yolov8n", backbone={"widht": 0.5})
    with pytest.raises(ConfigError, match="unknown weights 'BOGUS'"):
        build_model("resnet18_pan", **{"backbone.weights": "BOGUS"})
    narrow = build_model("yolov8n", num_classes=2, **{"scale.width": 0.125})
    assert narrow.neck.out_channels == (32, 64, 128) and narrow.num_classes == 2
    assert build_model("yolov8n", backbone="resnet18").backbone.out_channels == (128, 256, 512)


def test_sweeps_are_validated_value_by_value(tmp_path) -> None:
    from detector.cli import _override_sets

    sets = _override_sets(["imgsz=64", "model=yolov8n,yolo11n", "train.epochs=range(1,3)"])
    assert sets == [
        ["imgsz=64", "model=yolov8n", "train.epochs=1"],
        ["imgsz=64", "model=yolo11n", "train.epochs=1"],
        ["imgsz=64", "model=yolov8n", "train.epochs=1"],
        ["imgsz=64", "model=yolov8n", "train.epochs=2"],
    ]
    result = run_script(TRAIN, "-m", "model=yolov8n,yolov9z", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        next(line for line in result.stderr.splitlines() if line.startswith("error: unknown model 'yolov9z'"))
    ]
    assert not (tmp_path / "runs").exists()


def test_unparseable_override_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"cannot parse override 'model=a=b'"):
        compose("train", ["model=a=b"])
