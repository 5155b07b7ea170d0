"""One training batch: :func:`train_step` and what it works with (:class:`StepParts`)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from detector.train.ema import ModelEMA
from detector.train.state import LoopState
from detector.types import HeadOutput, Targets

# (raw head output in float32, targets, batch size) -> (loss, its parts by name). A criterion may also
# have ``set_epoch(epoch, epochs)``: the loop calls it before each epoch's batches (resumed ones too).
Criterion = Callable[[HeadOutput, Targets, int], tuple[Tensor, dict[str, Tensor]]]


class StopTraining(RuntimeError):
    """The run cannot go on (too many non-finite losses); the message says why."""


@dataclass
class StepParts:
    """The collaborators of one training step."""

    model: nn.Module  # the raw model: clipped, averaged into the EMA, saved
    optimizer: torch.optim.Optimizer
    ema: ModelEMA
    criterion: Criterion
    scaler: torch.amp.GradScaler
    device: torch.device
    amp_dtype: torch.dtype | None = None  # autocast to this dtype; None: full precision
    memory_format: torch.memory_format = torch.contiguous_format  # of the model's weights and its inputs
    ddp: nn.Module | None = None  # DistributedDataParallel(model) under torchrun: batches go through it
    world_size: int = 1  # processes; DDP averages gradients over them, so the loss is scaled by it
    # torch.compile of the DDP wrapper or the model (train.compile): batches go through it, while
    # ``model`` stays the plain module that is clipped, averaged into the EMA and saved
    compiled: nn.Module | None = None

    @property
    def network(self) -> nn.Module:
        """What the batches go through: the compiled module, else the DDP wrapper, else the model."""
        if self.compiled is not None:
            return self.compiled
        return self.ddp if self.ddp is not None else self.model

    def autocast(self) -> AbstractContextManager:
        return torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else nullcontext()


def train_step(
    parts: StepParts,
    state: LoopState,
    images: Tensor,  # [B, 3, H, W] uint8, as the loader gives them
    targets: Targets,  # input pixels
    *,
    pending: int,
    accumulate: int,
    clip: float,
    max_nonfinite: int,
) -> int:
    """One batch: forward (autocast), loss, then backward and the optimizer step once ``accumulate``
    batches' gradients are pending (``pending`` of them before this one; the epoch's last batch passes
    ``accumulate=1``). A non-finite loss is not back-propagated: it drops the pending gradients and is
    counted in ``state``; ``max_nonfinite`` of them in a row raise :class:`StopTraining`. The batch's
    loss parts are added to ``state``'s running sums. Returns the batches now pending (0 after a step)."""
    batch = int(images.shape[0])
    images = images.to(parts.device, non_blocking=True).float().div_(255)
    images = images.contiguous(memory_format=parts.memory_format)
    targets = targets.to(parts.device, non_blocking=True)
    with parts.autocast():
        out = parts.network(images)
    loss, items = parts.criterion(out.float(), targets, batch)
    if parts.world_size > 1:
        loss = loss * parts.world_size  # DDP averages gradients over processes
    if not torch.isfinite(loss):
        skip_nonfinite(parts.optimizer, state, max_nonfinite)
        return 0
    parts.scaler.scale(loss).backward()
    for k, v in items.items():
        state.sums[k] = state.sums.get(k, 0.0) + float(v) * batch
    state.images += batch
    state.nonfinite_in_a_row = 0
    pending += 1
    if pending >= accumulate:
        optimizer_step(parts.optimizer, parts.scaler, parts.ema, parts.model, clip)
        return 0
    return pending


def skip_nonfinite(optimizer: torch.optim.Optimizer, state: LoopState, max_nonfinite: int) -> None:
    """Drop the pending gradients of a batch with a non-finite loss and count it; stop the run after
    ``max_nonfinite`` in a row."""
    state.nonfinite_total += 1
    state.nonfinite_in_a_row += 1
    optimizer.zero_grad(set_to_none=True)
    if state.nonfinite_in_a_row >= max_nonfinite:
        raise StopTraining(
            f"{state.nonfinite_in_a_row} non-finite losses in a row at epoch {state.epoch + 1}, "
            f"batch {state.iteration + 1} ({state.nonfinite_total} in all); stopped. The last good checkpoint is "
            "untouched (try a lower optim.lr, train.amp=false, or check the data with scripts/check_data.py)"
        )


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
