"""The training-step figure: one optimizer step on one fixed batch, ours as our training loop makes
it and Ultralytics' as their trainer makes it (:func:`detector.interop.ultralytics.train_step`),
with the same weights, batch, optimizer settings and loss gains."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch

from detector.config.schemas import BenchTrainStepConfig
from detector.data.build import val_dataset
from detector.data.index import SplitIndex
from detector.data.loader import collate
from detector.device import autocast_dtype, compile_model, memory_format
from detector.interop import ultralytics as ul
from detector.losses import build_loss
from detector.models import Detector
from detector.tools.benchmark.figure import Figure, device_label
from detector.tools.benchmark.weights import Reference
from detector.tools.timing import Alternate, seconds_per_call
from detector.train.ema import ModelEMA
from detector.train.optim import build_optimizer
from detector.train.state import LoopState
from detector.train.step import StepParts, train_step
from detector.types import LossGains, Targets

GAINS = asdict(LossGains())  # the training loop's loss gains (they do not change the work)


def fixed_batch(index: SplitIndex, imgsz: int, batch: int) -> tuple[torch.Tensor, Targets]:
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
    compile: bool = False,
) -> Callable[[], None]:
    """One optimizer step of our training loop: :func:`detector.train.step.train_step` itself on the
    fixed batch (images to the device and to [0, 1], forward with autocast to ``dtype`` if given, the
    head's loss from :func:`detector.losses.build_loss`, backward, gradient clipping, the optimizer
    step of our parameter groups and the EMA update), with a step after every batch. ``compile``: the
    batches go through the model under ``torch.compile``, as ``train.compile=true`` runs them."""
    fmt = memory_format(device)
    model = model.to(device, memory_format=fmt).train()
    batch = images.shape[0]
    parts = StepParts(
        model=model,
        optimizer=build_optimizer(model, make_optimizer, weight_decay, batch, nbs=batch),  # one batch per step
        ema=ModelEMA(model),
        criterion=build_loss(model.head, **gains),
        scaler=torch.amp.GradScaler(device.type, enabled=dtype == torch.float16),
        device=device,
        amp_dtype=dtype,
        memory_format=fmt,
    )
    if compile:
        parts.compiled = compile_model(model, device, "train_step.compile")
    state = LoopState()

    def step() -> None:
        train_step(parts, state, images, targets, pending=0, accumulate=1, clip=clip, max_nonfinite=1)

    return step


def measure(
    c: BenchTrainStepConfig,
    reference: Reference,
    index: SplitIndex,
    make_optimizer: Callable[..., torch.optim.Optimizer],
    optimizer: dict[str, Any],
    device: torch.device,
    turns: Alternate,
    our_dtype: torch.dtype | None = None,
) -> Figure:
    """Images per second of ``c.steps`` optimizer steps per repeat. ``optimizer``: the settings
    ``make_optimizer`` was built from (for the report). ``our_dtype``: ours autocasts to it (a CPU
    figure of the opt-in ``train.amp=true``), theirs not."""
    batch = c.batch_cuda if device.type == "cuda" else c.batch
    images, targets = fixed_batch(index, c.imgsz, batch)
    decay = float(optimizer["weight_decay"])
    dtype = autocast_dtype(device, None if c.amp else False)  # our loop's default: CUDA only; given to both sides
    ours = our_train_step(
        reference.ours(), images, targets, device, make_optimizer, decay, GAINS, our_dtype or dtype, compile=c.compile
    )
    theirs = ul.train_step(reference.theirs(), images, targets, device, make_optimizer, decay, GAINS, dtype)
    results = turns(lambda: batch / seconds_per_call(ours, c.steps), lambda: batch / seconds_per_call(theirs, c.steps))
    return Figure(
        "train_step",
        device_label(device, our_dtype) + (", ours compiled" if c.compile else ""),
        f"training step: forward, loss, backward, clipping, optimizer step, EMA ({reference.arch}, imgsz {c.imgsz}, batch {batch})",
        "images/s",
        "higher",
        results["ours"],
        results["ultralytics"],
        settings={
            "imgsz": c.imgsz,
            "batch": batch,
            "steps_per_repeat": c.steps,
            "targets": len(targets.classes),
            "optimizer": optimizer,
            "loss_gains": GAINS,
            "compiled": {"ours": c.compile, "ultralytics": False},
            "autocast": {
                "ours": str(our_dtype or dtype or "off (float32)"),
                "ultralytics": str(dtype or "off (float32)"),
            },
        },
    )
