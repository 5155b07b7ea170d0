"""Optimiser groups, weight-decay scaling, warmup and decay: hand-computed values."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import nn

from detector.train.optim import (
    CosineSchedule,
    LinearSchedule,
    accumulation_steps,
    build_optimizer,
    parameter_groups,
    warmup_accumulation,
)


def small_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1), nn.Linear(2, 2))


def test_groups_split_by_rank_and_biases() -> None:
    model = small_model()
    model[0].weight.requires_grad_(False)  # frozen parameters stay out of every group
    groups = {g["name"]: g for g in parameter_groups(model, 0.001)}
    assert [p.shape for p in groups["weights"]["params"]] == [(2, 4, 1, 1), (2, 2)]
    assert [p.shape for p in groups["norms"]["params"]] == [(4,)]  # BatchNorm scale
    assert len(groups["biases"]["params"]) == 3  # BatchNorm shift, conv bias, linear bias
    assert groups["weights"]["weight_decay"] == 0.001
    assert groups["norms"]["weight_decay"] == groups["biases"]["weight_decay"] == 0.0


@pytest.mark.parametrize(
    ("batch", "nbs", "steps", "decay"),
    [(16, 64, 4, 0.0005), (8, 64, 8, 0.0005), (48, 64, 1, 0.000375), (128, 64, 1, 0.001)],
)
def test_accumulation_and_weight_decay_scaling(batch, nbs, steps, decay) -> None:
    assert accumulation_steps(batch, nbs) == steps
    make = functools.partial(torch.optim.SGD, lr=0.01, momentum=0.9)
    optimizer = build_optimizer(small_model(), make, 0.0005, batch, nbs)
    assert optimizer.param_groups[0]["weight_decay"] == pytest.approx(decay)  # 0.0005 * batch * steps / nbs


def test_accumulation_ramps_during_warmup() -> None:
    # batch 8, nbs 64: 1 batch per step at the start, 8 from the end of the warmup (200 iterations)
    assert [warmup_accumulation(s, 200, 8, 64) for s in (0, 14, 15, 100, 199, 200, 5000)] == [
        1,
        1,
        2,
        4,
        8,
        8,
        8,
    ]  # 4.5 rounds to even
    assert warmup_accumulation(0, 0, 8, 64) == 8  # no warmup


def test_warmup_then_cosine() -> None:
    model = small_model()
    optimizer = build_optimizer(model, functools.partial(torch.optim.SGD, lr=0.01, momentum=0.937), 0.0005, 16, 64)
    schedule = CosineSchedule(epochs=10, final_lr_ratio=0.01, warmup_epochs=1, warmup_momentum=0.8, warmup_bias_lr=0.1)
    warmup = schedule.warmup_iterations(150)
    assert warmup == 150 and schedule.warmup_iterations(20) == 20  # warmup_epochs x batches per epoch
    short = CosineSchedule(epochs=2, final_lr_ratio=0.01, warmup_epochs=3, warmup_momentum=0.8, warmup_bias_lr=0.1)
    assert short.warmup_iterations(40) == 40  # never into the last epoch: min(3, 2 - 1) epochs
    assert CosineSchedule(1, 0.01, 3, 0.8, 0.1).warmup_iterations(40) == 0  # a one-epoch run has no warmup
    schedule.apply(optimizer, epoch=0, iteration=75, warmup=warmup, momentum=0.937)
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs["weights"] == pytest.approx(0.005) and lrs["biases"] == pytest.approx(0.055)  # halfway
    assert optimizer.param_groups[0]["momentum"] == pytest.approx((0.8 + 0.937) / 2)
    schedule.apply(optimizer, epoch=5, iteration=800, warmup=warmup, momentum=0.937)
    expected = ((1 - math.cos(0.5 * math.pi)) / 2) * (0.01 - 1) + 1  # 0.505 at mid-training
    assert all(g["lr"] == pytest.approx(0.01 * expected) for g in optimizer.param_groups)
    linear = LinearSchedule(epochs=10, final_lr_ratio=0.01, warmup_epochs=3.0, warmup_momentum=0.8, warmup_bias_lr=0.1)
    assert linear.factor(10) == pytest.approx(0.01)
