"""Ours against Ultralytics on the same machine, inputs and weights: the measuring code of
``scripts/benchmark.py`` (and of the loader figure of ``scripts/benchmark_loader.py``).

Every part pairs two callables that do the same work, one through our code and one through
Ultralytics' public API, each returning one measurement (a throughput or a time).
:func:`alternate` runs them in turn (ours first in even repeats, theirs first in odd ones) after
untimed warm-up, so both see the same machine conditions, and the figure of each side is the
median of its repeats. Before every measurement the torch CPU thread count is set to the same
value for both sides: Ultralytics sets it to its own ``NUM_THREADS`` (``min(8, cores - 1)``)
whenever it selects a CPU device, which would otherwise leak into the measurements after it.

Like :mod:`detector.interop.ultralytics`, this module imports ``ultralytics`` only inside the
functions that build its side.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from detector.boxes import xyxy_to_cxcywh
from detector.checkpoint import load_checkpoint
from detector.data.build import load_split, train_dataset, val_dataset
from detector.data.loader import build_loader, collate
from detector.data.sources import YoloSource
from detector.device import memory_format
from detector.eval.coco import evaluate
from detector.eval.postprocess import PostProcess
from detector.eval.predict import Predictor
from detector.images import decode_image
from detector.losses import DetectionLoss
from detector.models import Detector, build_model
from detector.train.ema import ModelEMA
from detector.train.optim import build_optimizer, parameter_groups
from detector.train.state import LoopState
from detector.train.step import StepParts, train_step
from detector.types import Targets

SIDES = ("ours", "ultralytics")

# The goals, as bounds on the ratio ours / ultralytics of each part's figure.
GOALS: dict[str, tuple[str, float]] = {
    "train_step": (">=", 1.3),
    "loader": (">=", 1.5),
    "predict": ("<=", 0.8),
    "val": ("<=", 1.0),
}

Measure = Callable[[], float]


# --------------------------------------------------------------------------- figures and timing


@dataclass
class Figure:
    """One measured quantity of both sides: every repeat, the medians and their ratio."""

    part: str  # train_step | loader | predict | val
    device: str
    what: str  # one line: what was timed
    unit: str  # images/s | ms | s
    better: str  # "higher" or "lower": which direction of the figure is better
    ours: list[float]
    ultralytics: list[float]
    settings: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)  # sanity figures, e.g. each side's mAP or detections

    @property
    def medians(self) -> dict[str, float]:
        return {"ours": statistics.median(self.ours), "ultralytics": statistics.median(self.ultralytics)}

    @property
    def ratio(self) -> float:
        """Median of ours / median of Ultralytics' (> 1 better for throughputs, < 1 better for times)."""
        m = self.medians
        return m["ours"] / m["ultralytics"]

    @property
    def goal(self) -> tuple[str, float]:
        return GOALS[self.part]

    @property
    def met(self) -> bool:
        op, bound = self.goal
        return self.ratio >= bound if op == ">=" else self.ratio <= bound

    def to_json(self) -> dict[str, Any]:
        op, bound = self.goal
        return {
            "part": self.part,
            "device": self.device,
            "what": self.what,
            "unit": self.unit,
            "better": self.better,
            "ours": self.medians["ours"],
            "ultralytics": self.medians["ultralytics"],
            "ratio": self.ratio,
            "ratio_is": "ours / ultralytics",
            "goal": {"ratio": op, "value": bound},
            "met": self.met,
            "repeats": {"ours": self.ours, "ultralytics": self.ultralytics},
            "statistic": "median over repeats",
            "settings": self.settings,
            "notes": self.notes,
        }


class Clock:
    """``time.perf_counter`` that first waits for the device's queued work (CUDA is asynchronous)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()


def alternate(
    ours: Measure,
    theirs: Measure,
    repeats: int,
    warmup: int,
    threads: int | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> dict[str, list[float]]:
    """``warmup`` untimed calls of each, then ``repeats`` measurements of each, in turn: ours first in
    even repeats, theirs first in odd ones. ``threads`` (if given) is the torch CPU thread count
    set before every call. Returns the measurements by side."""
    measures = {"ours": ours, "ultralytics": theirs}

    def call(side: str) -> float:
        if threads is not None:
            torch.set_num_threads(threads)
        return measures[side]()

    for _ in range(warmup):
        for side in SIDES:
            call(side)
    results: dict[str, list[float]] = {side: [] for side in SIDES}
    for r in range(repeats):
        for side in SIDES if r % 2 == 0 else SIDES[::-1]:
            value = call(side)
            results[side].append(value)
            log(f"  repeat {r + 1}/{repeats} {side:>11}: {value:.4g}")
    return results


def throughput(step: Callable[[], object], steps: int, images_per_step: int, clock: Clock) -> float:
    """Images per second of ``steps`` calls of ``step``."""
    start = clock.now()
    for _ in range(steps):
        step()
    return steps * images_per_step / (clock.now() - start)


def latency_ms(call: Callable[[], object], calls: int, clock: Clock) -> float:
    """Mean milliseconds per call over ``calls`` calls."""
    start = clock.now()
    for _ in range(calls):
        call()
    return 1000.0 * (clock.now() - start) / calls


# --------------------------------------------------------------------------- models with the same weights


def ultralytics_twin(name: str, num_classes: int, weights: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """Ultralytics' ``DetectionModel`` built offline from its ``<name>.yaml``; ``weights`` (a state
    dict of ours, or any state dict that lines up one to one) are copied onto it by position."""
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel(f"{name}.yaml", nc=num_classes, verbose=False)
    if weights is not None:
        copy_by_position(model, weights)
    return model


def copy_by_position(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Load ``weights`` into ``model`` by position (the state dicts of our YOLO models and
    Ultralytics' line up one to one); a ValueError says where they stop lining up."""
    keys = list(model.state_dict().keys())
    values = list(weights.values())
    if len(keys) != len(values):
        raise ValueError(f"{len(values)} tensors do not line up with a model of {len(keys)}")
    for key, (source, value) in zip(keys, weights.items()):
        if tuple(model.state_dict()[key].shape) != tuple(value.shape):
            raise ValueError(
                f"{source} {tuple(value.shape)} does not line up with {key} {tuple(model.state_dict()[key].shape)}"
            )
    model.load_state_dict(dict(zip(keys, values)))


def our_model(name: str, num_classes: int, weights: dict[str, torch.Tensor]) -> Detector:
    model = build_model(name, num_classes=num_classes)
    model.load_state_dict(weights)
    return model


def ultralytics_device(device: torch.device) -> str:
    """A torch device in Ultralytics' spelling (``cpu``, ``0``, ``1``, ...)."""
    return "cpu" if device.type == "cpu" else str(device.index or 0)


def ultralytics_threads() -> int:
    """The torch CPU thread count Ultralytics sets whenever it selects a CPU device."""
    from ultralytics.utils import NUM_THREADS

    return int(NUM_THREADS)


def yolo_with(name: str, num_classes: int, names: list[str], weights: dict[str, torch.Tensor]) -> Any:
    """An ``ultralytics.YOLO`` object (built from ``<name>.yaml``, offline) carrying ``weights``."""
    from ultralytics import YOLO

    yolo = YOLO(f"{name}.yaml", task="detect")
    model = ultralytics_twin(name, num_classes, weights)
    model.names = dict(enumerate(names))
    yolo.model = model
    return yolo


# --------------------------------------------------------------------------- training step


def fixed_batch(index: Any, imgsz: int, batch: int) -> tuple[torch.Tensor, Targets]:
    """The first ``batch`` images of a split (repeated if it is shorter), letterboxed to ``imgsz``,
    with their boxes: ``[B, 3, imgsz, imgsz]`` uint8 and :class:`Targets` in input pixels."""
    dataset = val_dataset(index, imgsz)
    data = collate([dataset[i % len(dataset)] for i in range(batch)])
    return data.images, data.targets


def our_train_step(
    model: Detector,
    images: torch.Tensor,  # [B, 3, H, W] uint8, on the CPU as a loader gives it
    targets: Targets,
    device: torch.device,
    make_optimizer: Callable[..., torch.optim.Optimizer],
    weight_decay: float,
    gains: dict[str, float],
    dtype: torch.dtype | None = None,
    clip: float = 10.0,
) -> Callable[[], None]:
    """One optimizer step of our training loop: :func:`detector.train.step.train_step` itself on the
    fixed batch (images to the device and to [0, 1], forward with autocast to ``dtype`` if given,
    :class:`DetectionLoss`, backward, gradient clipping, the optimizer step of our parameter groups
    and the EMA update), with a step after every batch."""
    fmt = memory_format(device)
    model = model.to(device, memory_format=fmt).train()
    batch = images.shape[0]
    parts = StepParts(
        model=model,
        optimizer=build_optimizer(model, make_optimizer, weight_decay, batch, nbs=batch),  # one batch per step
        ema=ModelEMA(model),
        criterion=DetectionLoss(model.head.num_classes, model.head.reg_max, **gains),
        scaler=torch.amp.GradScaler(device.type, enabled=dtype == torch.float16),
        device=device,
        amp_dtype=dtype,
        memory_format=fmt,
    )
    state = LoopState()

    def step() -> None:
        train_step(parts, state, images, targets, pending=0, accumulate=1, clip=clip, max_nonfinite=1)

    return step


def ultralytics_batch(images: torch.Tensor, targets: Targets) -> dict[str, torch.Tensor]:
    """The same batch in the keys and formats of Ultralytics' loader (normalised cx, cy, w, h)."""
    h, w = images.shape[-2:]
    scale = torch.tensor([w, h, w, h], dtype=torch.float32)
    return {
        "img": images,
        "batch_idx": targets.batch_index.float(),
        "cls": targets.classes.float().view(-1, 1),
        "bboxes": xyxy_to_cxcywh(targets.boxes) / scale,
    }


def ultralytics_train_step(
    model: nn.Module,
    images: torch.Tensor,
    targets: Targets,
    device: torch.device,
    make_optimizer: Callable[..., torch.optim.Optimizer],
    weight_decay: float,
    gains: dict[str, float],
    dtype: torch.dtype | None = None,
    clip: float = 10.0,
) -> Callable[[], None]:
    """One optimizer step as Ultralytics' trainer makes it: the batch to the device and images to
    [0, 1] (its ``preprocess_batch``), the model's own loss (``v8DetectionLoss`` with its
    hyper-parameters from ``get_cfg``) under autocast to ``dtype`` if given (its trainer's
    ``amp``: fp16, or bf16 with ``amp="bf16"``), ``loss.sum()``, backward through a GradScaler
    (enabled for fp16), clipping at 10, the optimizer step and its ``ModelEMA`` update. The
    optimizer is the same factory as ours over the same parameter groups (weights with decay,
    norms and biases without; Ultralytics' trainer splits them the same way)."""
    from ultralytics.cfg import get_cfg
    from ultralytics.utils.torch_utils import ModelEMA as UltralyticsEMA

    model = model.to(device).train()
    model.args = get_cfg(overrides=dict(gains))  # the trainer attaches its hyper-parameters like this
    optimizer = make_optimizer(params=parameter_groups(model, weight_decay))
    ema = UltralyticsEMA(model)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    cpu_batch = ultralytics_batch(images, targets)

    def step() -> None:
        batch = {k: v.to(device, non_blocking=device.type != "cpu") for k, v in cpu_batch.items()}
        batch["img"] = batch["img"].float() / 255
        with torch.autocast(device.type, dtype=dtype) if dtype else nullcontext():
            loss, _ = model(batch)
        scaler.scale(loss.sum()).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
        ema.update(model)

    return step


# --------------------------------------------------------------------------- loader


@dataclass
class TimedLoader:
    """A loader, how to count the images of one of its batches, and how to end its workers."""

    loader: Iterable[Any]
    count: Callable[[Any], int]
    stop: Callable[[], None]


def images_per_second(
    loader: Iterable[Any], count: Callable[[Any], int], warmup: int, batches: int, stop: Callable[[], None]
) -> float:
    """Throughput of one pass: ``warmup`` untimed batches, then ``batches`` timed ones; ``stop`` ends the workers."""
    iterator = iter(loader)
    try:
        for _ in range(warmup):
            next(iterator)
        images, start = 0, time.perf_counter()
        for _ in range(batches):
            images += count(next(iterator))
        return images / (time.perf_counter() - start)
    finally:
        del iterator  # a torch loader iterator shuts its workers down when released
        stop()


def training_loaders(
    source: YoloSource,
    index: Any,
    augment_cfg: DictConfig,
    imgsz: int,
    batch: int,
    workers: int,
    seed: int = 0,
    epochs: int | None = None,
) -> dict[str, TimedLoader]:
    """Our training loader and Ultralytics' on the same 'train' split (``index``, read from
    ``source``'s data.yaml by theirs), both with the full training augmentation (see
    :data:`detector.interop.ultralytics.TRAIN_AUGMENT`), keyed ``ours`` and ``ultralytics``.
    Building Ultralytics' loader imports ultralytics (and its process-wide settings)."""
    from detector.interop.ultralytics import ultralytics_train_loader

    ours_ds = train_dataset(index, augment_cfg, imgsz, seed=seed, epochs=epochs)
    ours = build_loader(ours_ds, batch, shuffle=True, workers=workers, seed=seed)
    theirs = ultralytics_train_loader(source.where, imgsz, batch, workers, seed=seed)
    return {
        "ours": TimedLoader(ours, lambda b: b.images.shape[0], lambda: None),
        "ultralytics": TimedLoader(theirs, lambda b: b["img"].shape[0], theirs.reset),
    }


# --------------------------------------------------------------------------- prediction


def our_predictor(
    checkpoint: Path, device: torch.device, imgsz: int, post: PostProcess, dtype: torch.dtype | None = None
) -> Predictor:
    """What ``scripts/predict.py`` runs per image: letterbox, fused model (autocast to ``dtype`` if
    given: its ``amp=true``), decoding, NMS, boxes mapped back to the image (returned on the CPU)."""
    model, _ = load_checkpoint(checkpoint)
    return Predictor(model, device, imgsz, post, dtype)


def ultralytics_predict(yolo: Any, device: torch.device, imgsz: int, post: PostProcess, save_dir: Path) -> Callable:
    """``image (BGR) -> Results`` through ``YOLO.predict`` with the same settings (its predictor
    fuses the model on first use)."""
    kwargs = {
        "imgsz": imgsz,
        "conf": post.conf,
        "iou": post.iou,
        "max_det": post.max_det,
        "agnostic_nms": post.agnostic,
        "device": ultralytics_device(device),
        "verbose": False,
        "save": False,
        "project": str(save_dir.parent),
        "name": save_dir.name,
        "exist_ok": True,
    }
    return lambda image: yolo.predict(image, **kwargs)[0]


# --------------------------------------------------------------------------- validation


def our_validation(
    model: Detector,
    source: YoloSource,
    split: str,
    imgsz: int,
    batch: int,
    workers: int,
    post: PostProcess,
    device: torch.device,
    dtype: torch.dtype | None = None,
) -> Callable[[], dict[str, float]]:
    """What ``scripts/evaluate.py`` computes, without writing files: the checked split (cached),
    the letterboxed dataset, the evaluator on the fused model (autocast to ``dtype`` if given: its
    ``amp=true``; inference, NMS, COCO metrics). Returns its mAPs."""
    model = model.fuse().to(device)

    def run() -> dict[str, float]:
        index = load_split(source, split, log=lambda line: None)
        result = evaluate(model, index, val_dataset(index, imgsz), post, device, batch, workers, dtype)
        return {"mAP50-95": result.scores.metrics["mAP50-95"], "mAP50": result.scores.metrics["mAP50"]}

    return run


def ultralytics_validation(
    yolo: Any,
    data_yaml: str,
    split: str,
    imgsz: int,
    batch: int,
    workers: int,
    post: PostProcess,
    device: torch.device,
    save_dir: Path,
) -> Callable[[], dict[str, float]]:
    """``YOLO.val`` on the same data.yaml split with the same settings, no plots or files (its
    validator fuses the model, and on a CPU uses no loader workers whatever ``workers`` says)."""
    kwargs = {
        "data": data_yaml,
        "split": split,
        "imgsz": imgsz,
        "batch": batch,
        "workers": workers,
        "conf": post.conf,
        "iou": post.iou,
        "max_det": post.max_det,
        "device": ultralytics_device(device),
        "plots": False,
        "save_json": False,
        "verbose": False,
        "project": str(save_dir.parent),
        "name": save_dir.name,
        "exist_ok": True,
    }

    def run() -> dict[str, float]:
        metrics = yolo.val(**kwargs)
        return {"mAP50-95": float(metrics.box.map), "mAP50": float(metrics.box.map50)}

    return run


def detections_count(result: Any) -> int:
    """Number of detections in our :class:`Detections` or an Ultralytics ``Results``."""
    boxes = getattr(result, "boxes", None)
    if boxes is not None and not isinstance(boxes, torch.Tensor):
        return len(boxes)
    return len(result)


def image_pair(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An image as RGB (what our predictor takes) and BGR (what Ultralytics takes from arrays)."""
    rgb = decode_image(path)
    if rgb is None:
        raise ValueError(f"{path}: not an image OpenCV can read")
    return rgb, np.ascontiguousarray(rgb[..., ::-1])
