"""Composition outside a Hydra app (``compose``) and the checks a schema cannot express (``validate``)."""

from __future__ import annotations

import yaml
from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from detector.config.errors import describe_error
from detector.config.store import CONFIG_DIR, register_configs
from detector.errors import ConfigError


def compose(config_name: str, overrides: list[str]) -> DictConfig:
    """Compose ``configs/<config_name>.yaml`` with command-line style overrides, then validate.

    Raises :class:`ConfigError` with a one-line message for any mistake.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    register_configs()
    running = get_gh_backup()  # inside a Hydra app (train.py composing a model): put its state back after
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            cfg = hydra_compose(config_name=config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(describe_error(err)) from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{mark.name}:{mark.line + 1}" if mark is not None else "a config file"
        raise ConfigError(f"invalid YAML in {where}: {getattr(err, 'problem', None) or err}") from err
    finally:
        if running is not None and running.is_initialized():
            restore_gh_from_backup(running)
    validate(cfg)
    return cfg


def validate(cfg: DictConfig) -> None:
    """Checks a schema cannot express: every value resolves, and the values agree with each other."""
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:
        raise ConfigError(describe_error(err)) from err
    data = cfg.get("data")
    if data is not None and "names" in data and len(data.names) != data.num_classes:
        raise ConfigError(
            f"data.names has {len(data.names)} entries but data.num_classes is {data.num_classes}; they must agree"
        )
    head = OmegaConf.select(cfg, "model.head")
    if data is not None and head is not None and "num_classes" in head and head.num_classes != data.num_classes:
        raise ConfigError(
            f"model.head.num_classes={head.num_classes} but data.num_classes={data.num_classes}; set the class count "
            "once, in the data config"
        )
    if "imgsz" in cfg:
        sizes = list(cfg.imgsz) if isinstance(cfg.imgsz, ListConfig) else [cfg.imgsz]  # [H, W] where the schema allows
        if len(sizes) not in (1, 2) or any(type(s) is not int or s < 32 or s % 32 for s in sizes):
            shown = f"[{','.join(map(str, sizes))}]" if isinstance(cfg.imgsz, ListConfig) else cfg.imgsz
            raise ConfigError(
                f"imgsz={shown} must be a positive multiple of 32 (the largest model stride), or [H,W] of such"
            )
    augment = cfg.get("augment")
    if augment is not None:
        for key in ("close_mosaic", "mosaic_window"):
            if augment.get(key) is not None and augment[key] < 0:
                raise ConfigError(f"augment.{key}={augment[key]} must be >= 0")
        if not 0 <= augment.mixup <= 1:
            raise ConfigError(f"augment.mixup={augment.mixup} is a probability: it must be in [0, 1]")
    loop = cfg.get("train")
    if loop is not None:
        for key in ("epochs", "batch"):
            if loop[key] < 1:
                raise ConfigError(f"train.{key}={loop[key]} must be >= 1")
