"""The adapter to Ultralytics' runtime: every call into Ultralytics (their model from a YAML or from
safely read weights, their loader, validator, predictor and trainer) goes through this module.
Reading their checkpoints needs no Ultralytics install (:mod:`detector.interop.ultralytics_weights`).
This is the only module of the package that imports ``ultralytics``, and it does so inside the functions: importing this module imports nothing
from Ultralytics (whose import sets process-wide
state, e.g. ``cv2.setNumThreads(0)`` and ``OMP_NUM_THREADS``). Install it with
``pip install -e ".[compare]"``; set ``YOLO_OFFLINE=1`` at the entry point to keep it offline.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from detector.data.sources import YoloSource
from detector.datafiles import dataset_names
from detector.interop.ultralytics_weights import UltralyticsCheckpoint

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


def ultralytics_model(checkpoint: UltralyticsCheckpoint) -> nn.Module:
    """Ultralytics' own ``DetectionModel`` for the checkpoint: built from its yaml by Ultralytics and
    given the safely read tensors (Ultralytics' loader, which unpickles the file, is never used)."""
    _require_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel(copy.deepcopy(checkpoint.yaml), nc=checkpoint.num_classes, verbose=False)
    model.load_state_dict(checkpoint.state_dict)
    model.names = dict(enumerate(checkpoint.names))
    return model.eval()
