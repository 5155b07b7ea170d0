"""Model configs by name: ``configs/model/<name>.yaml`` composed for a class count, with overrides,
resolved into plain containers (what :func:`detector.models.zoo.instantiate_model` builds and a
checkpoint stores)."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from detector.config.compose import compose, validate
from detector.config.errors import describe_error
from detector.errors import ConfigError

COMPONENT_GROUPS = ("backbone", "neck", "head")


def model_config(name: str, num_classes: int = 80, **overrides: Any) -> dict[str, Any]:
    """The composed, validated, resolved config (plain containers) of ``configs/model/<name>.yaml`` for ``num_classes`` classes.

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
    return OmegaConf.to_container(cfg.model, resolve=True, enum_to_str=True)
