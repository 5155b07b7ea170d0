"""Ultralytics detection checkpoints (YOLOv8, YOLO11, YOLO26) read safely and placed exactly on our models.

Nothing here imports ``ultralytics`` or runs its code: a checkpoint is unpickled by
:mod:`detector.interop.safe_load`, which admits only data, ``torch.nn`` modules and inert stand-ins
for Ultralytics' classes, and its tensors are mapped by position onto our equivalent model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detector.config.models import model_config
from detector.errors import ConfigError
from detector.interop.safe_load import ForeignModule, safe_load
from detector.models.detector import Detector
from detector.models.zoo import instantiate_model

# Layer classes of the detection models we have equivalents for, and the family each one marks.
_LAYERS = {"Conv", "C2f", "C3k2", "SPPF", "C2PSA", "Upsample", "Concat", "Detect"}
_FAMILY_MARKS = {"C3k2": "yolo11", "C2f": "yolov8"}  # YOLO26: C3k2 and a head without DFL (reg_max 1)
SCALES = ("n", "s", "m", "l", "x")
# Scale by the stem's output channels (64 x width), for a yaml that does not name it; YOLO11 and
# YOLO26 give m and l the same stem, so only the yaml can tell those apart.
_SCALE_BY_STEM = {
    "yolov8": {16: "n", 32: "s", 48: "m", 64: "l", 80: "x"},
    "yolo11": {16: "n", 32: "s", 96: "x"},
    "yolo26": {16: "n", 32: "s", 96: "x"},
}


@dataclass
class UltralyticsCheckpoint:
    """What an Ultralytics detection checkpoint holds, read without running its code."""

    path: Path
    state_dict: dict[str, torch.Tensor]  # Ultralytics' names (model.0.conv.weight ...), float32
    names: list[str]
    family: str  # "yolov8" | "yolo11" | "yolo26"
    scale: str  # "n" | "s" | "m" | "l" | "x"
    yaml: dict[str, Any]  # the model's Ultralytics yaml, as the model carried it
    train_args: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def model_name(self) -> str:
        """Our config that builds the equivalent model (``configs/model/<model_name>.yaml``)."""
        return f"{self.family}{self.scale}"

    @property
    def multipliers(self) -> dict[str, float]:
        """``model.scale`` overrides for the yaml's own depth / width / max-channel multipliers (a
        custom ``scales`` entry); empty when the yaml has none (the config's standard scale holds)."""
        values = (self.yaml.get("scales") or {}).get(self.scale)
        if not values or len(values) != 3:
            return {}
        depth, width, max_channels = values
        return {"depth": float(depth), "width": float(width), "max_channels": int(max_channels)}


def _class_name(module: nn.Module) -> str:
    return module.foreign_name.rsplit(".", 1)[-1] if isinstance(module, ForeignModule) else type(module).__name__


def read(path: str | Path) -> UltralyticsCheckpoint:
    """Read an Ultralytics YOLOv8 / YOLO11 / YOLO26 detection checkpoint (any scale, any class count,
    with or without optimizer state, fp16 or fp32) through the restricted unpickler; :class:`ConfigError`
    for anything else (other tasks, other architectures, P2 / P6 variants)."""
    path = Path(path).expanduser()
    ckpt = safe_load(path, foreign=("ultralytics.",))
    model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
    if not isinstance(model, ForeignModule) or not model.foreign_name.startswith("ultralytics."):
        raise ConfigError(f"{path}: holds no Ultralytics model (no 'model' or 'ema' entry)")
    if _class_name(model) != "DetectionModel":
        raise ConfigError(
            f"{path}: an Ultralytics {_class_name(model)}; only detection models (YOLOv8, YOLO11, YOLO26) can be imported"
        )
    layers = getattr(model, "_modules", {}).get("model")
    if layers is None:
        raise ConfigError(f"{path}: the Ultralytics model has no layer list ('model')")
    family = None
    for index, layer in layers.named_children():
        kind = _class_name(layer)
        if kind not in _LAYERS:
            raise ConfigError(
                f"{path}: cannot place module model.{index} ({kind}): there is no equivalent of it in our "
                "YOLOv8 / YOLO11 / YOLO26 detection models"
            )
        family = family or _FAMILY_MARKS.get(kind)
    if family is None:
        raise ConfigError(
            f"{path}: neither C2f (YOLOv8) nor C3k2 (YOLO11) layers: an architecture we have no config for"
        )
    detect = layers[-1]
    levels = int(getattr(detect, "nl", 3))
    if levels != 3:
        raise ConfigError(
            f"{path}: a detection head on {levels} levels (a P2 / P6 variant); our YOLO models detect on P3-P5"
        )
    if family == "yolo11" and int(getattr(detect, "reg_max", 16)) == 1:
        family = "yolo26"  # C3k2 blocks and direct box distances
    state = {k: v.float() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    stem = state.get("model.0.conv.weight")
    yaml = dict(getattr(model, "yaml", None) or {})
    # The scale letter (which also decides C3k blocks) from the yaml, else from the stem width.
    by_stem = _SCALE_BY_STEM[family].get(int(stem.shape[0])) if stem is not None else None
    scale = yaml.get("scale") or by_stem
    if scale not in SCALES:
        raise ConfigError(
            f"{path}: cannot tell the model's scale (yaml scale {yaml.get('scale')!r}, stem width "
            f"{None if stem is None else stem.shape[0]}): not one of {family}n/s/m/l/x"
        )
    num_classes = int(getattr(detect, "nc", yaml.get("nc", 0)))
    names = _names(getattr(model, "names", None), num_classes, path)
    train_args = ckpt.get("train_args") if isinstance(ckpt.get("train_args"), dict) else {}
    return UltralyticsCheckpoint(path, state, names, family, scale, yaml, dict(train_args))


def _names(names: Any, num_classes: int, path: Path) -> list[str]:
    if names is None:
        return [str(i) for i in range(num_classes)]
    ordered = [names[i] for i in range(len(names))] if isinstance(names, dict) else list(names)
    if len(ordered) != num_classes:
        raise ConfigError(f"{path}: {len(ordered)} class names for a {num_classes}-class head")
    return [str(n) for n in ordered]


def equivalent_config(checkpoint: UltralyticsCheckpoint) -> dict[str, Any]:
    """Our model config (plain containers) equivalent to the checkpoint's architecture."""
    return model_config(checkpoint.model_name, checkpoint.num_classes, scale=checkpoint.multipliers)


def to_detector(checkpoint: UltralyticsCheckpoint) -> Detector:
    """Our equivalent model carrying every tensor of ``checkpoint`` (eval mode, ``names`` attached).

    The two state dicts line up one to one, in order (same blocks, same parameter order); each
    tensor is placed by position after checking its shape. The first one that does not fit is
    reported with the Ultralytics module it belongs to."""
    model = instantiate_model(equivalent_config(checkpoint))
    ours = model.state_dict()
    if len(ours) != len(checkpoint.state_dict):
        extra = list(checkpoint.state_dict)[len(ours)] if len(checkpoint.state_dict) > len(ours) else None
        if extra is not None:
            raise ConfigError(
                f"{checkpoint.path}: cannot place module {extra.rsplit('.', 1)[0]}: "
                f"{checkpoint.model_name} has no tensor left for {extra}"
            )
    mapped = {}
    for (name, target), (key, tensor) in zip(ours.items(), checkpoint.state_dict.items(), strict=False):
        if target.shape != tensor.shape:
            layer = ".".join(key.split(".")[:2])
            raise ConfigError(
                f"{checkpoint.path}: cannot place module {key.rsplit('.', 1)[0]} (layer {layer}): its {key} "
                f"{tuple(tensor.shape)} does not fit {checkpoint.model_name}'s {name} {tuple(target.shape)}"
            )
        mapped[name] = tensor
    if len(mapped) != len(ours):
        missing = list(ours)[len(mapped)]
        raise ConfigError(f"{checkpoint.path}: the checkpoint ends before {checkpoint.model_name}'s {missing}")
    model.load_state_dict(mapped)
    model.names = list(checkpoint.names)
    return model.eval()


def copy_by_position(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load ``state`` into ``model`` by position: another library's names for the same tensors in the
    same order (the state dicts of our YOLO models and Ultralytics' line up one to one). Values are
    copied (cast to the model's dtypes); a :class:`ConfigError` says where the two stop lining up."""
    own = model.state_dict()
    if len(own) != len(state):
        raise ConfigError(f"{len(state)} tensors do not line up with a model of {len(own)}")
    for (key, target), (source, value) in zip(own.items(), state.items()):
        if tuple(target.shape) != tuple(value.shape):
            raise ConfigError(f"{source} {tuple(value.shape)} does not line up with {key} {tuple(target.shape)}")
    model.load_state_dict(dict(zip(own, (v.detach() for v in state.values()))))


def load(path: str | Path) -> Detector:
    """Import an Ultralytics YOLOv8 / YOLO11 / YOLO26 detection checkpoint exactly: our equivalent model
    (``configs/model/<family><scale>.yaml`` with its class count) with every tensor mapped onto it,
    in eval mode, class names in ``model.names``. Safe: nothing in the file runs."""
    return to_detector(read(path))
