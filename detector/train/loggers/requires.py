"""The trackers' packages, imported when their logger is chosen (never at import time), with one line
naming the pip command when one is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from detector.errors import ConfigError


def require(module: str, option: str, pip: str) -> ModuleType:
    """``import module``, or a :class:`ConfigError` saying that ``option`` needs ``pip install pip``
    (the project's ``track`` extra installs every tracker: ``pip install -e ".[track]"``)."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(f"{option} needs the {module} package ({err.msg}): pip install {pip}") from err
