"""``run_epoch`` on a 1x1 convolution and a recording criterion: a criterion with ``set_epoch`` hears
of the epoch (and the run's length) before the epoch's first batch, a resumed epoch included. The
state after each optimizer step is marked, and a fault (out of memory, a dead loader worker) stops
``train_epochs`` with the last marked state written; a signal held back by ``deferred`` arrives after
the block."""

from __future__ import annotations

import os
import signal
import types
from dataclasses import replace

import pytest
import torch
from rich.console import Console
from torch import Tensor, nn
from torch.utils.data import DataLoader

from detector.train.ema import ModelEMA
from detector.train.faults import Fault
from detector.train.interrupt import Interrupt, deferred
from detector.train.loop import Loop, run_epoch, train_epochs
from detector.train.optim import LinearSchedule
from detector.train.progress import EpochProgress
from detector.train.state import LoopSettings, LoopState
from detector.train.step import StepParts
from detector.types import Targets

EPOCHS = 5
NO_TARGETS = Targets(torch.zeros(0, dtype=torch.long), torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))


class EpochAwareLoss:
    """loss = mean of the output; records its calls in ``events``."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def set_epoch(self, epoch: int, epochs: int) -> None:
        self.events.append(("set_epoch", epoch, epochs))

    def __call__(self, out: Tensor, targets: Targets, batch: int) -> tuple[Tensor, dict[str, Tensor]]:
        self.events.append(("loss",))
        loss = out.mean()
        return loss, {"box": loss.detach()}


class Marks:
    """A checkpointer that keeps what it is told: the marked states, and what a fault would write."""

    def __init__(self) -> None:
        self.marked: list[LoopState] = []
        self.saved: list[tuple] = []

    def mark(self, state: LoopState) -> None:
        self.marked.append(replace(state, sums=dict(state.sums)))

    def save(self, state: LoopState, which: str) -> None:
        self.saved.append((which, state.epoch, state.iteration))

    def save_marked(self, what: str, overrides: tuple[str, ...] = ()) -> Fault:
        last = self.marked[-1]
        self.saved.append(("marked", last.epoch, last.iteration))
        return Fault(f"{what}. last.pt holds epoch {last.epoch + 1}, batch {last.iteration}", None, overrides)


def make_loop(criterion: EpochAwareLoss, batches: int, nbs: int = 2) -> Loop:
    model = nn.Conv2d(3, 1, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    parts = StepParts(
        model, optimizer, ModelEMA(model), criterion, torch.amp.GradScaler("cpu", enabled=False), torch.device("cpu")
    )
    settings = LoopSettings(
        epochs=EPOCHS, batch=2, nbs=nbs, clip=0.0, max_nonfinite=3, fitness="box", patience=10, workers=0, save_period=0
    )
    images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    batch = types.SimpleNamespace(images=images, targets=NO_TARGETS)
    loader = DataLoader([batch] * batches, batch_size=None)  # each item is a batch
    schedule = LinearSchedule(EPOCHS, 0.01, warmup_epochs=0.0, warmup_momentum=0.8, warmup_bias_lr=0.1)
    process = types.SimpleNamespace(main=True, world_size=1, distributed=False)
    return Loop(parts, schedule, settings, loader, Marks(), None, None, Console(quiet=True), process)


@pytest.mark.parametrize("resumed", [False, True])
def test_run_epoch_tells_the_criterion_the_epoch_before_its_batches(resumed: bool) -> None:
    criterion = EpochAwareLoss()
    # a run resumed after 1 of 3 batches of epoch 2: its loader holds the 2 batches left
    state = LoopState(epoch=2, iteration=1, global_step=7) if resumed else LoopState(epoch=2, global_step=6)
    loop = make_loop(criterion, batches=2 if resumed else 3)
    assert run_epoch(loop, state, EpochProgress(loop.console, enabled=False), Interrupt())
    assert criterion.events == [("set_epoch", 2, EPOCHS)] + [("loss",)] * (2 if resumed else 3)
    assert state.iteration == 3


def test_run_epoch_works_with_a_criterion_without_set_epoch() -> None:
    criterion = EpochAwareLoss()
    loop = make_loop(criterion, batches=2)
    loop.parts.criterion = lambda out, targets, batch: criterion(out, targets, batch)  # no set_epoch
    assert run_epoch(loop, LoopState(epoch=1), EpochProgress(loop.console, enabled=False), Interrupt())
    assert criterion.events == [("loss",), ("loss",)]


class FailingLoss(EpochAwareLoss):
    """Raises ``error`` at its ``at``-th batch (1-based)."""

    def __init__(self, at: int, error: BaseException) -> None:
        super().__init__()
        self.at, self.error = at, error

    def __call__(self, out: Tensor, targets: Targets, batch: int) -> tuple[Tensor, dict[str, Tensor]]:
        if self.events.count(("loss",)) + 1 == self.at:
            raise self.error
        return super().__call__(out, targets, batch)


def test_out_of_memory_writes_the_last_optimizer_step_and_names_train_batch() -> None:
    # nbs 4, batch 2: a step every 2 batches; the 4th batch runs out of memory, the 3rd is pending
    criterion = FailingLoss(at=4, error=torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    loop = make_loop(criterion, batches=6, nbs=4)
    loop.schedule.warmup_epochs = 0.0
    state = LoopState()
    with pytest.raises(Fault) as fault:
        train_epochs(loop, state)
    assert str(fault.value) == (
        "cpu ran out of memory in epoch 1 after batch 3 with train.batch=2: resume with a smaller train.batch "
        "(train.batch=1). last.pt holds epoch 1, batch 2"
    )
    assert fault.value.resume_overrides == ("train.batch=1",)
    assert [(m.iteration, m.samples) for m in loop.checkpointer.marked] == [(0, 0), (2, 4)]
    assert loop.checkpointer.saved == [("marked", 0, 2)]
    assert all(p.grad is None for p in loop.parts.model.parameters())  # the pending batch's gradients dropped


def test_the_cpu_allocator_running_out_is_out_of_memory_too() -> None:
    error = RuntimeError(
        "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory: you tried to allocate 1 GB"
    )
    loop = make_loop(FailingLoss(at=1, error=error), batches=2)
    with pytest.raises(Fault, match=r"^cpu ran out of memory in epoch 1 before its first batch with train.batch=2: "):
        train_epochs(loop, LoopState())


def test_a_dead_loader_worker_stops_the_run_with_its_likely_cause() -> None:
    died = RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed. ")
    loop = make_loop(FailingLoss(at=2, error=died), batches=3)
    with pytest.raises(Fault) as fault:
        train_epochs(loop, LoopState())
    assert str(fault.value).startswith(
        "a data-loader worker (pid 4242) was killed by signal: Killed in epoch 1 after batch 1: most likely the "
        "machine ran out of memory and the kernel's out-of-memory killer ended it; fewer train.workers (now 0) or a "
        "smaller train.batch (now 2) need less. last.pt holds epoch 1, batch 1"
    )


class SignalingLoss(EpochAwareLoss):
    """Sends this process SIGCHLD in the middle of its ``at``-th batch, as a loader worker dying then would."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def __call__(self, out: Tensor, targets: Targets, batch: int) -> tuple[Tensor, dict[str, Tensor]]:
        if self.events.count(("loss",)) + 1 == self.at:
            os.kill(os.getpid(), signal.SIGCHLD)
        return super().__call__(out, targets, batch)


def test_a_worker_dying_during_a_step_stops_the_run_after_that_step() -> None:
    """PyTorch's loader raises a dead worker's error from its SIGCHLD handler; held back, it comes
    after the batch in progress is done, so the step it belongs to completes and is marked."""

    def loader_handler(signum, frame):
        raise RuntimeError("DataLoader worker (pid 77) is killed by signal: Killed. ")

    previous = signal.signal(signal.SIGCHLD, loader_handler)
    try:
        loop = make_loop(SignalingLoss(at=2), batches=3)
        with pytest.raises(
            Fault, match=r"^a data-loader worker \(pid 77\) was killed by signal: Killed in epoch 1 after batch 2"
        ):
            train_epochs(loop, LoopState())
    finally:
        signal.signal(signal.SIGCHLD, previous)
    assert [m.iteration for m in loop.checkpointer.marked] == [0, 1, 2]
    assert loop.checkpointer.saved == [("marked", 0, 2)]


def test_other_errors_pass_through_untouched() -> None:
    loop = make_loop(FailingLoss(at=2, error=RuntimeError("shapes do not match")), batches=3)
    with pytest.raises(RuntimeError, match="^shapes do not match$"):
        train_epochs(loop, LoopState())
    assert loop.checkpointer.saved == []


def test_deferred_holds_a_signal_until_the_block_ends() -> None:
    events = []

    def handler(signum, frame):
        events.append("handler")
        raise RuntimeError("worker died")

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        with pytest.raises(RuntimeError, match="worker died"):
            with deferred(signal.SIGUSR1):
                os.kill(os.getpid(), signal.SIGUSR1)
                for _ in range(1000):  # the handler would run here, between bytecodes
                    pass
                events.append("block finished")
        assert events == ["block finished", "handler"]
        assert signal.getsignal(signal.SIGUSR1) is handler
        with deferred(signal.SIGUSR1):
            pass
        assert events == ["block finished", "handler"]  # nothing arrived: no call
    finally:
        signal.signal(signal.SIGUSR1, previous)
