"""Models by name: compose ``configs/model/<name>.yaml`` and instantiate it."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from detector.config import compose, describe_error, instantiate_node, validate
from detector.errors import ConfigError
from detector.models.detector import Detector

COMPONENT_GROUPS = ("backbone", "neck", "head")


def build_model(name: str, num_classes: int = 80, **overrides: Any) -> Detector:
    """Build ``configs/model/<name>.yaml`` for ``num_classes`` classes (see :func:`model_config`)."""
    return instantiate_model(model_config(name, num_classes, **overrides))


def model_config(name: str, num_classes: int = 80, **overrides: Any) -> DictConfig:
    """The composed, validated config of ``configs/model/<name>.yaml`` for ``num_classes`` classes.

    ``overrides`` are applied to the model config: a component group given a string swaps that
    component (``backbone="resnet50"``); anything else sets keys, dotted or nested
    (``**{"backbone.width": 0.5}``, ``scale={"width": 0.5}``). Mistakes raise :class:`ConfigError`.
    """
    swaps = {k: v for k, v in overrides.items() if k in COMPONENT_GROUPS and isinstance(v, str)}
    cfg = compose(
        "model_only",
        [f"model={name}", f"data.num_classes={int(num_classes)}", *(f"model/{k}={v}" for k, v in swaps.items())],
    )
    for key, value in overrides.items():
        if key in swaps:
            continue
        try:
            OmegaConf.update(cfg.model, key, value, merge=True)
        except OmegaConfBaseException as err:
            raise ConfigError(describe_error(err)) from err
    validate(cfg)
    return cfg.model


def instantiate_model(model_cfg: DictConfig) -> Detector:
    """Instantiate a composed model config; a failure in a part names that part in one line."""
    model = instantiate_node(model_cfg, "model")
    if not isinstance(model, Detector):
        raise ConfigError(f"model config built a {type(model).__name__}, not a Detector")
    return model
