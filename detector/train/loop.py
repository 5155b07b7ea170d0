"""The training loop: named steps with small collaborators.

:func:`train_epochs` runs :func:`run_epoch` (every batch through :func:`detector.train.step.train_step`,
under the schedule and the gradient accumulation) and :func:`end_epoch` (validation, fitness, checkpoints,
loggers) until the last epoch, patience or an interrupt. Everything a restart needs lives in
:class:`LoopState` and the checkpoint, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from rich.console import Console
from torch import nn
from torch.utils.data import DataLoader

from detector.data.loader import set_epoch
from detector.train.checkpointer import Checkpointer
from detector.train.distributed import Process, barrier
from detector.train.faults import FAULT_ERRORS, describe_fault
from detector.train.interrupt import Interrupt, deferred
from detector.train.loggers import Logger
from detector.train.optim import Schedule, base_momentum, warmup_accumulation
from detector.train.progress import EpochProgress
from detector.train.state import LoopSettings, LoopState
from detector.train.step import StepParts, train_step

Validate = Callable[[nn.Module, int], dict[str, float]]  # (EMA model, epoch) -> metrics


@dataclass
class Loop:
    """Everything the epochs work with besides their progress (:class:`LoopState`)."""

    parts: StepParts
    schedule: Schedule
    settings: LoopSettings
    loader: DataLoader
    checkpointer: Checkpointer
    loggers: Logger
    validate: Validate | None  # None: no validation (``train.val=false``, or not rank 0)
    console: Console
    process: Process


def train_epochs(loop: Loop, state: LoopState) -> str:
    """Run epochs ``state.epoch .. settings.epochs - 1``; returns why it stopped: ``done``,
    ``patience``, or ``interrupted`` (Ctrl-C / SIGTERM, after writing ``last.pt``). A data-loader
    worker that dies or the device running out of memory stops the run with a
    :class:`detector.train.faults.Fault`, after the last completed optimizer step is written to
    ``last.pt``; so does a checkpoint that cannot be written."""
    progress = EpochProgress(loop.console, enabled=loop.process.main, world_size=loop.process.world_size)
    loop.checkpointer.mark(state)
    with Interrupt() as interrupt:
        try:
            return _epochs(loop, state, progress, interrupt)
        except FAULT_ERRORS as err:  # torch.OutOfMemoryError is a RuntimeError
            fault = describe_fault(err, loop.settings, loop.parts.device, state)
            if fault is None:
                raise
        # here, outside the handler, nothing refers to the error's frames: the loader's iterator and
        # its workers are gone, and so are the tensors of the failed step
        loop.parts.optimizer.zero_grad(set_to_none=True)  # the batches after the marked step
        if loop.parts.device.type == "cuda":
            torch.cuda.empty_cache()
        raise loop.checkpointer.save_marked(*fault)


def _epochs(loop: Loop, state: LoopState, progress: EpochProgress, interrupt: Interrupt) -> str:
    while state.epoch < loop.settings.epochs:
        if not run_epoch(loop, state, progress, interrupt):
            loop.checkpointer.save(state, "interrupt")
            return "interrupted"
        end_epoch(loop, state)
        barrier(loop.process)
        if interrupt.signal is not None:
            return "interrupted"
        if state.stale_epochs >= loop.settings.patience:
            loop.console.print(
                f"stopping early: {loop.settings.fitness} has not improved for {loop.settings.patience} epochs "
                f"(best {state.best_fitness:.4f} at epoch {state.best_epoch + 1})"
            )
            return "patience"
    return "done"


def run_epoch(loop: Loop, state: LoopState, progress: EpochProgress, interrupt: Interrupt) -> bool:
    """Train on the rest of ``state.epoch``'s batches; a criterion with ``set_epoch(epoch, epochs)``
    hears of the epoch first. False when an interrupt stopped it at an optimizer-step boundary
    (``state`` then holds the position to resume from). Each batch is trained on with SIGCHLD held
    back (a dead loader worker's error comes between batches, never inside an optimizer step), and
    the state after each optimizer step is marked on the checkpointer."""
    parts, settings, loader = loop.parts, loop.settings, loop.loader
    if state.iteration == 0:  # a run resumed mid-epoch is already positioned
        set_epoch(loader, state.epoch)
    if hasattr(parts.criterion, "set_epoch"):  # e.g. EndToEndLoss, which weights its branches by the epoch
        parts.criterion.set_epoch(state.epoch, settings.epochs)  # every time: a resumed run's criterion is new
    parts.model.train()
    batches = len(loader) + state.iteration  # a resumed epoch's loader holds only what is left
    warmup = loop.schedule.warmup_iterations(batches)
    momentum = base_momentum(parts.optimizer)
    start = time.perf_counter() - state.seconds
    parts.optimizer.zero_grad(set_to_none=True)
    pending = 0  # batches whose gradients wait for the next optimizer step
    with progress.epoch(state.epoch, settings.epochs, batches, state.iteration):
        for batch in loader:
            with deferred(signal.SIGCHLD):
                loop.schedule.apply(parts.optimizer, state.epoch, state.global_step, warmup, momentum)
                last = state.iteration + 1 == batches
                accumulate = 1 if last else warmup_accumulation(state.global_step, warmup, settings.batch, settings.nbs)
                pending = train_step(
                    parts,
                    state,
                    batch.images,
                    batch.targets,
                    pending=pending,
                    accumulate=accumulate,
                    clip=settings.clip,
                    max_nonfinite=settings.max_nonfinite,
                )
                state.iteration += 1
                state.global_step += 1
                state.samples += int(batch.images.shape[0])
                state.seconds = time.perf_counter() - start
                if pending == 0:
                    loop.checkpointer.mark(state)
                progress.update(state, parts.optimizer.param_groups[0]["lr"], len(batch.targets.classes))
                if interrupt.signal is not None and pending == 0 and not last:
                    return False
    return True


def end_epoch(loop: Loop, state: LoopState) -> None:
    """Validate the EMA weights, record the fitness (best epoch, patience), move ``state`` to the next
    epoch, save the checkpoints and log the epoch's row. Without validation, fitness is the negated
    box-loss sum of the epoch."""
    epoch = state.epoch
    row = epoch_row(loop.parts.optimizer, state)
    metrics = loop.validate(loop.parts.ema.module, epoch) if loop.validate is not None else {}
    row.update(metrics)
    improved = state.record_fitness(metrics.get(loop.settings.fitness, -state.sums.get("box", 0.0)))
    state.next_epoch()
    loop.checkpointer.mark(state)
    loop.checkpointer.save(state, "best" if improved else "last")
    loop.loggers.log_epoch(epoch, row)


def epoch_row(optimizer: torch.optim.Optimizer, state: LoopState) -> dict[str, float]:
    """The epoch's mean losses, each group's learning rate, its training time and throughput."""
    row = {f"train/{k}": v / max(state.images, 1) for k, v in sorted(state.sums.items())}
    for group in optimizer.param_groups:
        row[f"lr/{group.get('name', 'group')}"] = float(group["lr"])
    row["epoch_time_s"] = state.seconds
    row["images_per_s"] = state.images / max(state.seconds, 1e-9)
    return row
