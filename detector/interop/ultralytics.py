"""Ultralytics checkpoints brought in safely and exactly; Ultralytics' own pieces for comparisons.

:func:`read` and :func:`load` need no Ultralytics install: a checkpoint is unpickled by
:mod:`detector.interop.safe_load`, which admits only data, ``torch.nn`` modules and inert stand-ins
for Ultralytics' classes (their code never runs), and its tensors are mapped onto our equivalent
model. The other functions run Ultralytics itself. This is the only module of the package that
imports ``ultralytics``, and it does so inside the functions: importing this module imports nothing
from Ultralytics (whose import sets process-wide
state, e.g. ``cv2.setNumThreads(0)`` and ``OMP_NUM_THREADS``). Install it with
``pip install -e ".[compare]"``; set ``YOLO_OFFLINE=1`` at the entry point to keep it offline.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from detector.config import ConfigError
from detector.data.sources import YoloSource, dataset_names
from detector.interop.safe_load import ForeignModule, safe_load
from detector.models.detector import Detector
from detector.models.zoo import instantiate_model, model_config

# Ultralytics training hyper-parameters equivalent to configs/augment/default.yaml.
TRAIN_AUGMENT: dict[str, Any] = {
    "mosaic": 1.0,
    "scale": 0.5,  # gain in [0.5, 1.5]            (ours: Affine scale [0.5, 1.5])
    "translate": 0.1,  # +-10 % of imgsz            (ours: translate_percent [-0.1, 0.1], of imgsz with mosaic too)
    "degrees": 0.0,
    "shear": 0.0,
    "perspective": 0.0,
    "hsv_h": 0.015,  # hue shift +-0.015 of a circle  (ours: HSVJitter hue [-0.015, 0.015])
    "hsv_s": 0.7,  # gain in [0.3, 1.7]              (ours: saturation [0.3, 1.7])
    "hsv_v": 0.4,  # gain in [0.6, 1.4]              (ours: value [0.6, 1.4])
    "fliplr": 0.5,
    "flipud": 0.0,
    "mixup": 0.0,
    "cutmix": 0.0,
    "copy_paste": 0.0,
    "bgr": 0.0,
    "augmentations": [],  # no extra albumentations (Ultralytics' default adds Blur, CLAHE, ... at p=0.01)
}


def _require_ultralytics() -> ModuleType:
    try:
        import ultralytics
    except ImportError as err:
        raise ImportError(
            'ultralytics is not installed; it is needed for comparisons: pip install -e ".[compare]"'
        ) from err
    return ultralytics


def _train_images(data_yaml: Path) -> tuple[Path, list[str], dict[int, str]]:
    """A data.yaml's root, its 'train' entries (folders or .txt lists) as absolute paths, and its names.

    Paths resolve as :class:`detector.data.sources.YoloSource` resolves them (``path`` relative to
    the yaml's folder), so both libraries read the same images. Ultralytics' ``check_det_dataset``
    is not used: it calls ``check_font``, which reaches for the network even with ``YOLO_OFFLINE=1``.
    """
    names = dataset_names("yolo", str(data_yaml))
    source = YoloSource(names, len(names), file=str(data_yaml))
    return source.root, [str(entry) for entry in source.entries("train")], dict(enumerate(names))


def ultralytics_train_loader(
    data_yaml: str | Path, imgsz: int, batch: int, workers: int, seed: int = 0
) -> Iterable[dict[str, Any]]:
    """Ultralytics' YOLO training dataset and dataloader for the 'train' split of ``data_yaml``.

    Built from Ultralytics' public pieces (``get_cfg``, ``build_yolo_dataset``,
    ``build_dataloader``) with the augmentation of ``configs/augment/default.yaml`` (see
    :data:`TRAIN_AUGMENT`): mosaic 1.0, scale 0.5, translate 0.1, no rotation / shear /
    perspective, HSV gains 0.015 / 0.7 / 0.4, horizontal flip 0.5, no mixup, no image cache,
    square (not rectangular) batches.

    Returns Ultralytics' ``InfiniteDataLoader``: each ``iter()`` yields one epoch of batches
    (dicts; ``batch["img"]`` is ``[B, 3, imgsz, imgsz]`` uint8) from worker processes that persist
    across epochs; its ``reset()`` shuts them down. The shuffling order and the workers' random
    draws are seeded from ``seed`` (the global torch RNG is left as it was); with ``workers=0`` the
    augmentation draws from the caller's global ``random`` / ``numpy.random`` state instead.
    Ultralytics writes its label cache (``labels/<split>.cache``) beside the labels.

    Raises ImportError (naming ``pip install -e ".[compare]"``) when ultralytics is missing and
    FileNotFoundError when ``data_yaml`` does not exist.
    """
    _require_ultralytics()
    from ultralytics.cfg import get_cfg
    from ultralytics.data.build import build_dataloader, build_yolo_dataset

    data_yaml = Path(data_yaml).expanduser()
    if not data_yaml.is_file():
        raise FileNotFoundError(f"data.yaml not found: {data_yaml}")
    root, images, names = _train_images(data_yaml)
    data = {"path": str(root), "train": images, "names": names, "nc": len(names), "channels": 3}
    overrides = {
        "task": "detect",
        "mode": "train",
        "data": str(data_yaml),
        "imgsz": imgsz,
        "batch": batch,
        "workers": workers,
        "seed": seed,
        "cache": False,
        "rect": False,
        "fraction": 1.0,
        "single_cls": False,
        "plots": False,
        **TRAIN_AUGMENT,
    }
    cfg = get_cfg(overrides=overrides)
    dataset = build_yolo_dataset(cfg, images, batch, data, mode="train", rect=False, stride=32)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # build_dataloader seeds its loader generator from torch.initial_seed(): set it for the call only.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_dataloader(dataset, batch, workers, shuffle=True, rank=-1, device=device)


# Layer classes of the detection models we have equivalents for, and the family each one marks.
_LAYERS = {"Conv", "C2f", "C3k2", "SPPF", "C2PSA", "Upsample", "Concat", "Detect"}
_FAMILY_MARKS = {"C3k2": "yolo11", "C2f": "yolov8"}
# Scale by the stem's output channels (64 x width): the same in both families.
_SCALE_BY_STEM = {16: "n", 32: "s", 48: "m", 64: "l", 80: "x"}


@dataclass
class UltralyticsCheckpoint:
    """What an Ultralytics detection checkpoint holds, read without running its code."""

    path: Path
    state_dict: dict[str, torch.Tensor]  # Ultralytics' names (model.0.conv.weight ...), float32
    names: list[str]
    family: str  # "yolov8" | "yolo11"
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
    """Read an Ultralytics YOLOv8 / YOLO11 detection checkpoint (any scale, any class count, with or
    without optimizer state) through the restricted unpickler; :class:`ConfigError` for anything else."""
    path = Path(path).expanduser()
    ckpt = safe_load(path, foreign=("ultralytics.",))
    model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
    if not isinstance(model, ForeignModule) or not model.foreign_name.startswith("ultralytics."):
        raise ConfigError(f"{path}: holds no Ultralytics model (no 'model' or 'ema' entry)")
    if _class_name(model) != "DetectionModel":
        raise ConfigError(f"{path}: an Ultralytics {_class_name(model)}; only detection models (YOLOv8, YOLO11) can be imported")
    layers = getattr(model, "_modules", {}).get("model")
    if layers is None:
        raise ConfigError(f"{path}: the Ultralytics model has no layer list ('model')")
    family = None
    for index, layer in layers.named_children():
        kind = _class_name(layer)
        if kind not in _LAYERS:
            raise ConfigError(
                f"{path}: cannot place module model.{index} ({kind}): there is no equivalent of it in our "
                "YOLOv8 / YOLO11 detection models"
            )
        family = family or _FAMILY_MARKS.get(kind)
    if family is None:
        raise ConfigError(f"{path}: neither C2f (YOLOv8) nor C3k2 (YOLO11) layers: an architecture we have no config for")
    state = {k: v.float() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    stem = state.get("model.0.conv.weight")
    yaml = dict(getattr(model, "yaml", None) or {})
    # The scale letter (which also decides YOLO11's C3k blocks) from the yaml, else from the stem width.
    scale = yaml.get("scale") or (_SCALE_BY_STEM.get(int(stem.shape[0])) if stem is not None else None)
    if scale not in _SCALE_BY_STEM.values():
        raise ConfigError(f"{path}: cannot tell the model's scale (yaml scale {yaml.get('scale')!r}, stem width "
                          f"{None if stem is None else stem.shape[0]}): not one of {family}n/s/m/l/x")
    detect = layers[-1]
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


def equivalent_config(checkpoint: UltralyticsCheckpoint) -> DictConfig:
    """Our model config equivalent to the checkpoint's architecture."""
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
            raise ConfigError(f"{checkpoint.path}: cannot place module {extra.rsplit('.', 1)[0]}: "
                              f"{checkpoint.model_name} has no tensor left for {extra}")
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


def load(path: str | Path) -> Detector:
    """Import an Ultralytics YOLOv8 / YOLO11 detection checkpoint exactly: our equivalent model
    (``configs/model/<family><scale>.yaml`` with its class count) with every tensor mapped onto it,
    in eval mode, class names in ``model.names``. Safe: nothing in the file runs."""
    return to_detector(read(path))


def ultralytics_model(checkpoint: UltralyticsCheckpoint) -> nn.Module:
    """Ultralytics' own ``DetectionModel`` for the checkpoint: built from its yaml by Ultralytics and
    given the safely read tensors (Ultralytics' loader, which unpickles the file, is never used)."""
    _require_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel(copy.deepcopy(checkpoint.yaml), nc=checkpoint.num_classes, verbose=False)
    model.load_state_dict(checkpoint.state_dict)
    model.names = dict(enumerate(checkpoint.names))
    return model.eval()
