"""The training loop: a function with small collaborators (optimizer, schedule, EMA, loss,
evaluator, checkpoints, loggers). Everything a restart needs lives in :class:`LoopState` and the
checkpoint, so a resumed run continues exactly where it stopped."""

from __future__ import annotations

import math
import random
import signal
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from detector.data.loader import set_epoch
from detector.eval.coco import evaluate, precision_recall
from detector.eval.postprocess import PostProcess
from detector.train.distributed import Process, barrier
from detector.train.ema import ModelEMA
from detector.train.optim import Schedule, warmup_accumulation


class StopTraining(RuntimeError):
    """The run cannot go on (too many non-finite losses); the message says why."""


@dataclass
class LoopState:
    """Progress that a restart must restore."""

    epoch: int = 0  # the epoch in progress (or the next one)
    iteration: int = 0  # batches of ``epoch`` already done
    global_step: int = 0  # batches done since the start (drives the warmup)
    best_fitness: float = -math.inf
    best_epoch: int = -1
    stale_epochs: int = 0  # epochs since fitness last improved
    nonfinite_total: int = 0
    nonfinite_in_a_row: int = 0
    sums: dict[str, float] = field(default_factory=dict)  # running loss sums of the epoch in progress
    images: int = 0  # images of the epoch in progress
    seconds: float = 0.0  # training time of the epoch in progress


@dataclass
class Collaborators:
    model: nn.Module  # the raw model (what DDP wraps)
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    ema: ModelEMA
    criterion: Callable
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None  # None: full precision
    memory_format: torch.memory_format = torch.contiguous_format  # of the model's weights and its inputs


def rng_state(loader_generator: torch.Generator) -> dict[str, Any]:
    """Every random state, as plain data and tensors (loads with ``weights_only=True``)."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "loader": loader_generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], loader_generator: torch.Generator) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    loader_generator.set_state(state["loader"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Interrupt:
    """Ctrl-C / SIGTERM set a flag; the loop checks it at the next optimizer-step boundary."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interrupt:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def train_epochs(
    parts: Collaborators,
    state: LoopState,
    train_loader: torch.utils.data.DataLoader,
    validate: Callable[[nn.Module, int], dict[str, float]] | None,
    save: Callable[[LoopState, str], None],
    log_epoch: Callable[[int, dict[str, float]], None],
    epochs: int,
    cfg: Any,
    process: Process,
    device: torch.device,
    console: Console,
) -> str:
    """Run epochs ``state.epoch .. epochs - 1``. ``save(state, which)`` writes ``last`` (and ``best``)
    checkpoints; returns why it stopped: ``done``, ``patience``, or ``interrupted``."""
    model = parts.model
    wrapped = (
        DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if process.distributed
        else model
    )
    batches = len(train_loader) + state.iteration  # a resumed epoch's loader holds only what is left
    warmup = parts.schedule.warmup_iterations(batches)
    momentum = float(parts.optimizer.defaults.get("momentum", parts.optimizer.defaults.get("betas", (0.9,))[0]))
    with Interrupt() as interrupt:
        while state.epoch < epochs:
            epoch = state.epoch
            if state.iteration == 0:  # a run resumed mid-epoch is already positioned
                set_epoch(train_loader, epoch)
            model.train()
            batches = len(train_loader) + state.iteration
            progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"),
                console=console,
                disable=not process.main,
                transient=False,
            )
            with progress:
                task = progress.add_task(
                    f"epoch {epoch + 1}/{epochs}", total=batches, completed=state.iteration, info=""
                )
                start = time.perf_counter() - state.seconds
                parts.optimizer.zero_grad(set_to_none=True)
                pending = 0  # batches whose gradients wait for the next optimizer step
                for batch in train_loader:
                    i = state.iteration
                    parts.schedule.apply(parts.optimizer, epoch, state.global_step, warmup, momentum)
                    accumulate = warmup_accumulation(state.global_step, warmup, cfg.batch, cfg.nbs)
                    images = batch.images.to(device, non_blocking=True).float().div_(255)
                    images = images.contiguous(memory_format=parts.memory_format)
                    targets = batch.targets.to(device, non_blocking=True)
                    autocast = torch.autocast(device.type, dtype=parts.amp_dtype) if parts.amp_dtype else nullcontext()
                    with autocast:
                        out = wrapped(images)
                    loss, items = parts.criterion(out.float(), targets, len(batch))
                    if process.distributed:
                        loss = loss * process.world_size  # DDP averages gradients over processes
                    if torch.isfinite(loss):
                        parts.scaler.scale(loss).backward()
                        pending += 1
                        for k, v in items.items():
                            state.sums[k] = state.sums.get(k, 0.0) + float(v) * len(batch)
                        state.images += len(batch)
                        state.nonfinite_in_a_row = 0
                    else:
                        state.nonfinite_total += 1
                        state.nonfinite_in_a_row += 1
                        parts.optimizer.zero_grad(set_to_none=True)
                        pending = 0
                        if state.nonfinite_in_a_row >= cfg.max_nonfinite:
                            raise StopTraining(
                                f"{state.nonfinite_in_a_row} non-finite losses in a row at epoch {epoch + 1}, batch {i + 1}"
                                f" ({state.nonfinite_total} in all); stopped. The last good checkpoint is untouched"
                                " (try a lower optim.lr, train.amp=false, or check the data with scripts/check_data.py)"
                            )
                    state.iteration += 1
                    state.global_step += 1
                    last = state.iteration == batches
                    if pending and (pending >= accumulate or last):
                        optimizer_step(parts.optimizer, parts.scaler, parts.ema, model, cfg.clip)
                        pending = 0
                    state.seconds = time.perf_counter() - start
                    if process.main:
                        means = " ".join(
                            f"{k} {state.sums.get(k, 0.0) / max(state.images, 1):.3f}" for k in ("box", "cls", "dfl")
                        )
                        rate = state.images / max(state.seconds, 1e-9)
                        lr = parts.optimizer.param_groups[0]["lr"]
                        info = f"{means} lr {lr:.2e} inst {len(batch.targets.classes)} {rate * process.world_size:.1f} img/s"
                        progress.update(task, completed=state.iteration, info=info)
                    if interrupt.signal is not None and pending == 0 and not last:
                        save(state, "interrupt")
                        return "interrupted"
            row = epoch_row(parts, state, batches)
            metrics = validate(parts.ema.module, epoch) if validate is not None else {}
            row.update(metrics)
            fitness = metrics.get(cfg.fitness, -state.sums.get("box", 0.0))
            improved = fitness > state.best_fitness
            if improved:
                state.best_fitness, state.best_epoch, state.stale_epochs = fitness, epoch, 0
            else:
                state.stale_epochs += 1
            state.epoch, state.iteration, state.sums, state.images, state.seconds = epoch + 1, 0, {}, 0, 0.0
            save(state, "best" if improved else "last")
            log_epoch(epoch, row)
            barrier(process)
            if interrupt.signal is not None:
                return "interrupted"
            if state.stale_epochs >= cfg.patience:
                console.print(
                    f"stopping early: {cfg.fitness} has not improved for {cfg.patience} epochs "
                    f"(best {state.best_fitness:.4f} at epoch {state.best_epoch + 1})"
                )
                return "patience"
    return "done"


def optimizer_step(
    optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, ema: ModelEMA, model: nn.Module, clip: float
) -> None:
    """Apply the accumulated gradients: unscale, clip their norm to ``clip`` (0: no clipping), step,
    clear them, and update the EMA of ``model``'s weights."""
    scaler.unscale_(optimizer)
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    ema.update(model)


def epoch_row(parts: Collaborators, state: LoopState, batches: int) -> dict[str, float]:
    row = {f"train/{k}": v / max(state.images, 1) for k, v in sorted(state.sums.items())}
    for group in parts.optimizer.param_groups:
        row[f"lr/{group.get('name', 'group')}"] = float(group["lr"])
    row["epoch_time_s"] = state.seconds
    row["images_per_s"] = state.images / max(state.seconds, 1e-9)
    return row


def make_validate(val_index, val_dataset, cfg: Any, device: torch.device, console: Console) -> Callable:
    """Validation through the evaluator of :mod:`detector.eval.coco` (Ultralytics' defaults)."""
    post = PostProcess()
    truth = val_index.truth()

    def validate(model: nn.Module, epoch: int) -> dict[str, float]:
        result = evaluate(model, val_index, val_dataset, post, device, batch=cfg.batch, workers=cfg.workers)
        precision, recall, _ = precision_recall(result.detections, truth, len(val_index.names))
        m = result.scores.metrics
        console.print(
            f"val epoch {epoch + 1}: mAP50-95 {m['mAP50-95']:.4f} mAP50 {m['mAP50']:.4f} "
            f"P {precision:.3f} R {recall:.3f}"
        )
        return {"mAP50-95": m["mAP50-95"], "mAP50": m["mAP50"], "precision": precision, "recall": recall}

    return validate
