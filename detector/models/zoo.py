"""Models by name: ``configs/model/<name>.yaml`` composed (:mod:`detector.config.models`) and built."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detector.config import instantiate_node
from detector.config.models import model_config
from detector.errors import ConfigError
from detector.models.detector import Detector


def build_model(name: str, num_classes: int = 80, **overrides: Any) -> Detector:
    """Build ``configs/model/<name>.yaml`` for ``num_classes`` classes; ``overrides`` as
    :func:`detector.config.models.model_config` takes them (``backbone="resnet50"``,
    ``**{"scale.width": 0.5}``)."""
    return instantiate_model(model_config(name, num_classes, **overrides))


def instantiate_model(config: Mapping[str, Any]) -> Detector:
    """Build the detector a model config describes (the ``model`` node: ``_target_``, ``scale``,
    ``backbone``, ``neck``, ``head``); a failure in a part names that part in one line."""
    model = instantiate_node(config, "model")
    if not isinstance(model, Detector):
        raise ConfigError(f"model config built a {type(model).__name__}, not a Detector")
    return model
