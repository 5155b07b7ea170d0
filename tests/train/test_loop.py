"""``run_epoch`` on a 1x1 convolution and a recording criterion: a criterion with ``set_epoch`` hears
of the epoch (and the run's length) before the epoch's first batch, a resumed epoch included."""

from __future__ import annotations

import types

import pytest
import torch
from rich.console import Console
from torch import Tensor, nn
from torch.utils.data import DataLoader

from detector.train.ema import ModelEMA
from detector.train.interrupt import Interrupt
from detector.train.loop import Loop, run_epoch
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


def make_loop(criterion: EpochAwareLoss, batches: int) -> Loop:
    model = nn.Conv2d(3, 1, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    parts = StepParts(
        model, optimizer, ModelEMA(model), criterion, torch.amp.GradScaler("cpu", enabled=False), torch.device("cpu")
    )
    settings = LoopSettings(
        epochs=EPOCHS, batch=2, nbs=2, clip=0.0, max_nonfinite=3, fitness="box", patience=10, workers=0, save_period=0
    )
    images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    batch = types.SimpleNamespace(images=images, targets=NO_TARGETS)
    loader = DataLoader([batch] * batches, batch_size=None)  # each item is a batch
    schedule = LinearSchedule(EPOCHS, 0.01, warmup_epochs=0.0, warmup_momentum=0.8, warmup_bias_lr=0.1)
    return Loop(parts, schedule, settings, loader, None, None, None, Console(quiet=True), None)


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
