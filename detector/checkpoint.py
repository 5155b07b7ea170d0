"""Checkpoints: a dict of state_dicts, plain metadata and the resolved model config.

They load with ``torch.load(weights_only=True)``: nothing in them can run code. Writes are
atomic (temporary file, then ``os.replace``), so an interrupted write never leaves a broken file.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detector.errors import ConfigError
from detector.models.detector import Detector
from detector.models.zoo import instantiate_model
from detector.runs import write_atomic

FORMAT = "detector"
VERSION = 1


def checkpoint_payload(
    model: nn.Module, model_config: dict[str, Any], names: list[str], **extra: Any
) -> dict[str, Any]:
    """``model``'s weights, the config that builds it (plain containers, resolved: as
    :func:`detector.config.models.model_config` gives it), the class names and ``extra`` metadata
    (plain Python values and tensors only): what a checkpoint file holds."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model_config": plain(model_config, "model_config"),
        "names": list(names),
        **extra,
    }


def plain(value: Any, where: str) -> Any:
    """``value`` as data ``torch.load(weights_only=True)`` reads back: dicts with string keys, lists,
    strings, numbers, booleans and None; enum members become their values. Anything else is a
    ``TypeError`` naming where it is (it could not be loaded safely)."""
    if isinstance(value, Enum):
        value = value.value
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: plain(v, f"{where}.{k}") for k, v in value.items()}
    raise TypeError(f"{where} holds a {type(value).__name__}: a checkpoint keeps plain data only")


def write_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write a checkpoint payload atomically."""
    return write_atomic(Path(path), lambda f: torch.save(payload, f))


def save_checkpoint(
    path: str | Path, model: Detector, model_config: dict[str, Any], names: list[str], **extra: Any
) -> Path:
    """Write ``model`` as a checkpoint (see :func:`checkpoint_payload`)."""
    return write_checkpoint(path, checkpoint_payload(model, model_config, names, **extra))


class ForeignCheckpoint(ConfigError):
    """A file that holds objects beyond tensors and plain data: not one of ours (maybe Ultralytics')."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Our checkpoint's contents, loaded safely; one clear error for anything else
    (:class:`ForeignCheckpoint` for a pickle of objects, which is not unpickled further here)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ForeignCheckpoint(
            f"{path} is not a detector checkpoint: it holds objects other than tensors and plain data "
            "(an Ultralytics .pt file is accepted where a model is loaded: evaluate, predict, export, "
            "inspect_layers, compare, train.init; not by resume)"
        ) from err
    except (RuntimeError, zipfile.BadZipFile, EOFError) as err:
        raise ConfigError(f"{path} is not a detector checkpoint: {type(err).__name__} while reading it") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a detector checkpoint (no 'format: {FORMAT}' entry)")
    return payload


def load_checkpoint(path: str | Path) -> tuple[Detector, dict[str, Any]]:
    """The model one of our checkpoints describes, with its weights, in eval mode; and the
    checkpoint's metadata (``names``, ``model_config`` ...). It loads with
    ``torch.load(weights_only=True)``; any other file raises :class:`ConfigError`
    (:class:`ForeignCheckpoint` for a pickle of objects: :func:`detector.interop.weights.load_weights`
    reads Ultralytics' files, explicitly)."""
    payload = read_checkpoint(path)
    model = instantiate_model(payload["model_config"])
    missing, unexpected = model.load_state_dict(payload["model"], strict=False)
    if missing or unexpected:
        raise ConfigError(
            f"{path}: weights do not fit the model they describe (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    meta = {k: v for k, v in payload.items() if k != "model"}
    model.names = list(payload["names"])
    return model.eval(), meta
