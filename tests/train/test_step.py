"""One training step on a 1x1 convolution with a hand-computable loss: accumulation, non-finite
losses, DDP loss scaling, clipping and the per-batch text."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from detector.train.ema import ModelEMA
from detector.train.progress import batch_info
from detector.train.state import LoopState
from detector.train.step import StepParts, StopTraining, train_step
from detector.types import Targets

LR = 0.1
NO_TARGETS = Targets(torch.zeros(0, dtype=torch.long), torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))


class MeanLoss:
    """loss = mean of the output; the ``nan_calls``-th calls (1-based) return NaN instead."""

    def __init__(self, nan_calls: tuple[int, ...] = ()) -> None:
        self.nan_calls = nan_calls
        self.calls = 0

    def __call__(self, out: Tensor, targets: Targets, batch: int) -> tuple[Tensor, dict[str, Tensor]]:
        self.calls += 1
        loss = out.mean() * (float("nan") if self.calls in self.nan_calls else 1.0)
        return loss, {"box": loss.detach()}


def make_parts(criterion: MeanLoss, world_size: int = 1) -> StepParts:
    model = nn.Conv2d(3, 1, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return StepParts(model, optimizer, ModelEMA(model), criterion, scaler, torch.device("cpu"), world_size=world_size)


def images(r: int, g: int, b: int, batch: int = 2) -> Tensor:
    """``batch`` 4x4 uint8 images of one colour: d(mean output)/d(weight) is (r, g, b) / 255."""
    return torch.tensor([r, g, b], dtype=torch.uint8).view(1, 3, 1, 1).expand(batch, 3, 4, 4).contiguous()


def weights(parts: StepParts) -> list[float]:
    return parts.model.weight.detach().flatten().tolist()


def step(parts: StepParts, state: LoopState, x: Tensor, pending: int, accumulate: int, **kw: float) -> int:
    options = {"clip": 0.0, "max_nonfinite": 3, **kw}
    return train_step(parts, state, x, NO_TARGETS, pending=pending, accumulate=accumulate, **options)


def test_the_optimizer_steps_only_when_due() -> None:
    parts, state = make_parts(MeanLoss()), LoopState()
    assert step(parts, state, images(51, 102, 0), pending=0, accumulate=2) == 1
    assert weights(parts) == [1.0, 2.0, 3.0] and parts.ema.updates == 0  # gradients wait
    assert step(parts, state, images(0, 51, 255), pending=1, accumulate=2) == 0
    # the sum of both batches' gradients, (0.2, 0.4, 0) + (0, 0.2, 1), in one SGD step of lr 0.1
    assert weights(parts) == pytest.approx([1.0 - 0.02, 2.0 - 0.06, 3.0 - 0.1])
    assert parts.ema.updates == 1 and parts.model.weight.grad is None
    # loss sums weighted by the batch size: mean outputs 0.2 + 0.8 = 1.0 and 0.4 + 3.0 = 3.4
    assert state.sums["box"] == pytest.approx(2 * 1.0 + 2 * 3.4) and state.images == 4


def test_a_non_finite_loss_skips_the_step_and_counts() -> None:
    parts, state = make_parts(MeanLoss(nan_calls=(2, 4, 5))), LoopState(epoch=1, iteration=6)
    assert step(parts, state, images(51, 0, 0), pending=0, accumulate=2) == 1
    assert step(parts, state, images(51, 0, 0), pending=1, accumulate=2) == 0  # NaN: pending gradients dropped
    assert parts.model.weight.grad is None and weights(parts) == [1.0, 2.0, 3.0] and parts.ema.updates == 0
    assert (state.nonfinite_total, state.nonfinite_in_a_row, state.images) == (1, 1, 2)
    assert step(parts, state, images(0, 0, 255), pending=0, accumulate=1) == 0  # finite: a step, the streak ends
    assert weights(parts) == pytest.approx([1.0, 2.0, 3.0 - 0.1]) and state.nonfinite_in_a_row == 0
    assert step(parts, state, images(0, 0, 255), pending=0, accumulate=1) == 0
    with pytest.raises(StopTraining, match=r"2 non-finite losses in a row at epoch 2, batch 7 \(3 in all\)"):
        step(parts, state, images(0, 0, 255), pending=0, accumulate=1, max_nonfinite=2)
    assert weights(parts) == pytest.approx([1.0, 2.0, 3.0 - 0.1])


def test_the_loss_is_scaled_by_the_world_size() -> None:
    parts = make_parts(MeanLoss(), world_size=2)  # DDP averages gradients over two processes
    step(parts, LoopState(), images(0, 0, 255), pending=0, accumulate=1)
    assert weights(parts) == pytest.approx([1.0, 2.0, 3.0 - 2 * 0.1])


def test_gradients_are_clipped_to_the_norm() -> None:
    parts = make_parts(MeanLoss())
    step(parts, LoopState(), images(153, 204, 0), pending=0, accumulate=1, clip=0.5)  # gradient (0.6, 0.8, 0)
    assert weights(parts) == pytest.approx([1.0 - 0.1 * 0.3, 2.0 - 0.1 * 0.4, 3.0], abs=1e-6)  # norm 1 -> 0.5


def test_batch_info() -> None:
    state = LoopState(sums={"box": 3.0, "cls": 1.5, "dfl": 0.75}, images=3, seconds=2.0)
    info = batch_info(state, lr=0.00125, instances=7, world_size=2)
    assert info == "box 1.000 cls 0.500 dfl 0.250 lr 1.25e-03 inst 7 3.0 img/s"
    assert math.isfinite(float(batch_info(LoopState(), 0.01, 0).split()[-2]))  # no images yet
    reg_max_1 = LoopState(sums={"box": 3.0, "cls": 1.5, "l1": 0.75}, images=3, seconds=2.0)  # the criterion's names
    assert batch_info(reg_max_1, 0.00125, 7).startswith("box 1.000 cls 0.500 l1 0.250 lr")
