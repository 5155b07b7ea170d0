"""MuSGD (``optim=musgd``): Newton-Schulz, the update against hand-computed values and against
Ultralytics' own ``MuSGD`` over their own parameter groups, the groups a detector gets, and a
training run that resumes exactly."""

from __future__ import annotations

import copy
import csv
import functools
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from detector.models.zoo import build_model
from detector.train.ema import ModelEMA
from detector.train.musgd import MuSGD, newton_schulz, orthogonalised
from detector.train.optim import LinearSchedule, build_optimizer, parameter_groups
from detector.train.step import optimizer_step
from tests.helpers import run_task

LR, MOMENTUM = 0.05, 0.937
WIDTH = 0.0625  # yolo11n's channels x 1/16: a small real detector, the same in both libraries


class ToyHead(nn.Module):
    """A box branch and a class branch (``cls``, which Ultralytics' rule reads as ``cv3``)."""

    def __init__(self) -> None:
        super().__init__()
        self.box = nn.Linear(12, 4)  # a wide matrix, 4 x 12
        self.cls = nn.Sequential(nn.Linear(12, 24), nn.BatchNorm1d(24), nn.Linear(24, 3))  # tall 24 x 12, wide 3 x 24

    @property
    def cv3(self) -> nn.Module:
        return self.cls


class Toy(nn.Module):
    """Parameters of every kind MuSGD tells apart (never run forward: the tests set gradients):
    conv filters (two of one shape; a 3x1 kernel, taller than wide; 1x1 convs of 16 x 8 and 4 x 8,
    which are orthogonalised in one zero-padded batch), linear matrices, norms and biases, and a
    head whose class branch Ultralytics finds as ``model.model[-1].cv3``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.ModuleList(
            [
                nn.Conv2d(3, 8, 3, bias=False),
                nn.BatchNorm2d(8),
                nn.Conv2d(8, 8, 3, bias=False),
                nn.Conv2d(8, 8, 3),
                nn.Conv2d(8, 12, (3, 1)),
                nn.Conv2d(8, 16, 1),
                nn.Conv2d(8, 4, 1, bias=False),
            ]
        )
        self.head = ToyHead()

    @property
    def model(self) -> list[nn.Module]:
        return [self.stem, self.head]


def ultralytics_musgd(model: nn.Module, lr: float, momentum: float, decay: float) -> torch.optim.Optimizer:
    """Ultralytics' optimizer for ``model`` as their trainer builds it for ``optimizer=MuSGD`` (their
    ``build_optimizer``; it reads nothing of the trainer but the arguments), with ``initial_lr`` set
    as their scheduler sets it."""
    from ultralytics.engine.trainer import BaseTrainer

    optimizer = BaseTrainer.build_optimizer(SimpleNamespace(), model, "MuSGD", lr=lr, momentum=momentum, decay=decay)
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    return optimizer


def ultralytics_warmup(optimizer: torch.optim.Optimizer, ni: int, nw: int, bias_lr: float, momentum: float) -> None:
    """Their trainer's warmup at batch ``ni`` of ``nw`` in the first epoch (their ``lf(0)`` is 1)."""
    if ni > nw:
        return
    for group in optimizer.param_groups:
        start = bias_lr if group["param_group"] == "bias" else 0.0
        group["lr"] = float(np.interp(ni, [0, nw], [start, group["initial_lr"]]))
        group["momentum"] = float(np.interp(ni, [0, nw], [0.8, momentum]))


def ultralytics_small_yolo11n(ours: nn.Module) -> nn.Module:
    """Their yolo11n at our model's width, carrying our weights (the state dicts line up by position)."""
    from ultralytics.nn.tasks import DetectionModel, yaml_model_load

    from detector.interop.ultralytics_weights import copy_by_position

    cfg = yaml_model_load("yolo11n.yaml")
    cfg["scales"] = {"n": [0.5, WIDTH, 1024]}
    theirs = DetectionModel(cfg, nc=3, verbose=False)
    copy_by_position(theirs, ours.state_dict())
    return theirs


def steps_against_ultralytics(ours: nn.Module, theirs: nn.Module, decay: float, steps: int = 5) -> float:
    """``steps`` steps of our MuSGD (our groups, our warmup) and of theirs (their groups, their
    warmup) on the same parameters with the same random gradients, through a warmup of 4 batches
    (lrs and momentum change at every step; bias lrs fall from 0.1). Returns the largest difference
    between the two models' parameters, relative to how far their step moved that tensor."""
    theirs.requires_grad_(True)
    for p, q in zip(ours.parameters(), theirs.parameters()):
        q.requires_grad_(p.requires_grad)  # their trainer leaves frozen tensors in the groups: no gradient, no step
    mine = build_optimizer(ours, functools.partial(MuSGD, lr=LR, momentum=MOMENTUM), decay, batch=64, nbs=64)
    reference = ultralytics_musgd(theirs, LR, MOMENTUM, decay)
    schedule = LinearSchedule(epochs=10, final_lr_ratio=0.01, warmup_epochs=1, warmup_momentum=0.8, warmup_bias_lr=0.1)
    start = [p.detach().clone() for p in theirs.parameters()]
    for ni in range(1, steps + 1):
        for p, q in zip(ours.parameters(), theirs.parameters()):
            if p.requires_grad:
                p.grad = torch.randn_like(p)
                q.grad = p.grad.clone()
        schedule.apply(mine, epoch=0, iteration=ni, warmup=4, momentum=MOMENTUM)
        ultralytics_warmup(reference, ni, nw=4, bias_lr=0.1, momentum=MOMENTUM)
        mine.step()
        reference.step()
    worst = 0.0
    for p, q, q0 in zip(ours.parameters(), theirs.parameters(), start):
        moved = (q - q0).abs().max().item()
        if moved:
            worst = max(worst, (p - q).abs().max().item() / moved)
        else:
            assert torch.equal(p, q)
    return worst


# --------------------------------------------------------------------------- Newton-Schulz


def test_newton_schulz_brings_singular_values_near_one() -> None:
    g = torch.randn(32, 64) * torch.linspace(0.1, 10.0, 64)  # columns of very different norms
    u, s, vh = torch.linalg.svd(g, full_matrices=False)
    assert s.max() / s.min() > 8
    x = newton_schulz(g).float()
    assert x.dtype == torch.float32 and x.shape == g.shape
    sigma = torch.linalg.svdvals(x)
    assert sigma.min() > 0.6 and sigma.max() < 1.25  # near 1: Muon's quintic trades exactness for speed
    polar = u @ vh  # what it approximates: the orthogonal factor of g
    cosine = (x * polar).sum() / (x.norm() * polar.norm())
    assert cosine > 0.97
    tall = newton_schulz(g.T).float()  # iterated transposed: the transpose of the wide result
    torch.testing.assert_close(tall, x.T, rtol=0, atol=0)


def test_batches_equal_one_matrix_at_a_time() -> None:
    shapes = [(8, 8, 3, 3), (8, 8, 3, 3), (12, 8, 3, 1), (4, 8, 3, 3), (6, 72), (10, 4)]
    updates = [torch.randn(shape) for shape in shapes]
    alone = [orthogonalised([u])[0] for u in updates]
    together = orthogonalised(updates)
    for u, a, b in zip(updates, alone, together):
        assert b.shape == u.shape and b.dtype == u.dtype
        torch.testing.assert_close(b, a, rtol=0, atol=0)  # same padded heights, same orientation: bit for bit
    # a wide 4 x 8 padded to a tall 16 x 8 batch is iterated transposed: the same up to bf16 rounding
    wide, tall = torch.randn(4, 8, 1, 1), torch.randn(16, 8, 1, 1)
    padded = orthogonalised([tall, wide])[1]
    torch.testing.assert_close(padded, orthogonalised([wide])[0], rtol=0, atol=0.03)


def test_scale_and_layout_follow_the_parameter() -> None:
    kernel = torch.randn(4, 2, 3, 1)  # kernel taller than wide: sqrt(3), whatever the flattened matrix
    expected = newton_schulz(kernel.reshape(4, 6)).float().reshape(kernel.shape) * math.sqrt(3)
    torch.testing.assert_close(orthogonalised([kernel])[0], expected, rtol=0, atol=0)
    tall = torch.randn(16, 8)
    expected = newton_schulz(tall).float() * math.sqrt(2)
    torch.testing.assert_close(orthogonalised([tall])[0], expected, rtol=0, atol=0)
    square_1x1 = torch.randn(16, 8, 1, 1)  # 16 x 8 as a matrix, but its kernel is square: scale 1
    expected = newton_schulz(square_1x1.reshape(16, 8)).float().reshape(square_1x1.shape)
    torch.testing.assert_close(orthogonalised([square_1x1])[0], expected, rtol=0, atol=0)
    nhwc = torch.randn(8, 8, 3, 3).contiguous(memory_format=torch.channels_last)
    out = orthogonalised([nhwc])[0]
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, orthogonalised([nhwc.contiguous()])[0], rtol=0, atol=0.03)


# --------------------------------------------------------------------------- the step, by hand


def test_one_step_by_hand() -> None:
    conv, norm = nn.Parameter(torch.randn(4, 6)), nn.Parameter(torch.randn(4))
    lr, mu, wd, muon, sgd = 0.1, 0.9, 0.01, 0.2, 1.5
    optimizer = MuSGD(
        [
            {"params": [conv], "use_muon": True, "weight_decay": wd},
            {"params": [norm], "weight_decay": wd},
        ],
        lr=lr,
        momentum=mu,
        muon=muon,
        sgd=sgd,
    )
    p0, n0 = conv.detach().clone(), norm.detach().clone()
    conv.grad, norm.grad = torch.randn(4, 6), torch.randn(4)
    optimizer.step()
    # first step: M = (1-mu) g, the Nesterov mix mu M + (1-mu) g (written as the optimizer rounds it: bf16
    # Newton-Schulz turns a float32 ulp into a percent); then SGD on g + wd * p, p after the Muon step,
    # with its buffer starting at that
    mix = (conv.grad * (1 - mu)) * mu + conv.grad * (1 - mu)
    after_muon = p0 - lr * muon * orthogonalised([mix])[0]
    decayed = conv.grad + wd * after_muon
    torch.testing.assert_close(conv.detach(), after_muon - lr * sgd * (1 + mu) * decayed)
    torch.testing.assert_close(norm.detach(), n0 - lr * (1 + mu) * (norm.grad + wd * n0))  # plain Nesterov SGD


def test_weight_decay_acts_only_in_the_sgd_part() -> None:
    weight = nn.Parameter(torch.randn(8, 8, 3, 3))
    optimizer = MuSGD([{"params": [weight], "use_muon": True}], lr=0.1, momentum=0.9, weight_decay=0.05)
    p0 = weight.detach().clone()
    weight.grad = torch.zeros_like(weight)  # no gradient: Muon has nothing to orthogonalise
    optimizer.step()
    torch.testing.assert_close(weight.detach(), p0 * (1 - 0.1 * 0.05 * (1 + 0.9)))  # decay alone, through SGD


def scaled_steps(model: nn.Module, scaler: torch.amp.GradScaler, targets: list[torch.Tensor], steps: int) -> None:
    """``steps`` optimizer steps of the training loop (unscale, clip at 1, step) on the loss ``Σ p·t``."""
    optimizer = build_optimizer(model, functools.partial(MuSGD, lr=LR, momentum=MOMENTUM), 5e-4, 64, 64)
    ema = ModelEMA(model)
    for _ in range(steps):
        scaler.scale(sum((p * t).sum() for p, t in zip(model.parameters(), targets))).backward()
        optimizer_step(optimizer, scaler, ema, model, clip=1.0)


def test_grad_scaler_and_clipping() -> None:
    model = Toy()
    twin = copy.deepcopy(model)
    targets = [torch.randn_like(p) for p in model.parameters()]
    scaled_steps(model, torch.amp.GradScaler("cpu", init_scale=1024.0), targets, steps=2)
    scaled_steps(twin, torch.amp.GradScaler("cpu", enabled=False), targets, steps=2)
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # a power-of-two scale unscales exactly
    assert not torch.equal(model.head.cls[0].weight, Toy().head.cls[0].weight)
    before = [p.detach().clone() for p in model.parameters()]
    targets[0][0, 0, 0, 0] = math.inf  # an inf gradient: the scaler skips the step
    scaled_steps(model, torch.amp.GradScaler("cpu", init_scale=1024.0), targets, steps=1)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before))


# --------------------------------------------------------------------------- parity with Ultralytics


def test_five_steps_equal_ultralytics_on_a_toy_model() -> None:
    torch.manual_seed(0)
    ours = Toy()
    worst = steps_against_ultralytics(ours, copy.deepcopy(ours), decay=0.05)
    assert worst <= 1e-4


@pytest.mark.parametrize("steps", [2, pytest.param(5, marks=pytest.mark.slow)])
def test_steps_equal_ultralytics_on_yolo11n(steps: int) -> None:
    # bf16 matmuls are slow on a CPU without native bf16 (about 2 s a step here): two steps by default
    ours = build_model("yolo11n", num_classes=3, **{"scale.width": WIDTH})
    worst = steps_against_ultralytics(ours, ultralytics_small_yolo11n(ours), decay=5e-4, steps=steps)
    assert worst <= 1e-4


def test_detector_groups_match_ultralytics() -> None:
    ours = build_model("yolo11n", num_classes=3, **{"scale.width": WIDTH})
    theirs = ultralytics_small_yolo11n(ours)
    mine = build_optimizer(ours, functools.partial(MuSGD, lr=0.01), 5e-4, batch=64, nbs=64)
    reference = ultralytics_musgd(theirs, 0.01, 0.937, 5e-4)

    def settings(optimizer: torch.optim.Optimizer) -> dict[int, tuple]:
        return {
            id(p): (g["initial_lr"], g["use_muon"], g["weight_decay"])
            for g in optimizer.param_groups
            for p in g["params"]
        }

    ours_by_param, theirs_by_param = settings(mine), settings(reference)
    names = [n for n, _ in ours.named_parameters()]
    trained = [(n, p, q) for n, p, q in zip(names, ours.parameters(), theirs.parameters()) if p.requires_grad]
    assert len(ours_by_param) == len(trained)  # every trained tensor in one group; the frozen DFL conv in none
    for name, p, q in trained:
        assert ours_by_param[id(p)] == pytest.approx(theirs_by_param[id(q)]), name
    tripled = {n for n, p, _ in trained if ours_by_param[id(p)][0] == pytest.approx(0.03)}
    assert tripled == {n for n in names if n.startswith("head.cls.")}  # exactly their head.cv3
    muon = {n for n, p, _ in trained if ours_by_param[id(p)][1]}
    assert muon == {n for n, p, _ in trained if p.ndim == 4}
    assert all(ours_by_param[id(p)][2] == 0.0 for n, p, _ in trained if n not in muon)


def test_every_class_branch_of_the_head_gets_the_gain() -> None:
    model = Toy()
    model.head.one2one_cls = copy.deepcopy(model.head.cls)  # an end-to-end head's second class branch
    optimizer = build_optimizer(model, functools.partial(MuSGD, lr=0.01, cls_lr_gain=2.5), 5e-4, 64, 64)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert list(groups) == ["weights", "norms", "biases", "cls_weights", "cls_norms", "cls_biases"]
    branches = {id(p) for m in (model.head.cls, model.head.one2one_cls) for p in m.parameters()}
    for name, group in groups.items():
        in_branch = name.startswith("cls_")
        assert all((id(p) in branches) == in_branch for p in group["params"]), name
        assert group["initial_lr"] == pytest.approx(0.025 if in_branch else 0.01)
        assert group["use_muon"] == name.endswith("weights")
        assert group["weight_decay"] == (5e-4 if name.endswith("weights") else 0.0)
    assert sum(len(g["params"]) for g in groups.values()) == len(list(model.parameters()))


def test_other_optimizers_keep_their_groups() -> None:
    model = build_model("yolo11n", num_classes=3, **{"scale.width": WIDTH})
    expected = parameter_groups(model, 5e-4)
    for make in (
        functools.partial(torch.optim.SGD, lr=0.01, momentum=0.937, nesterov=True),
        functools.partial(torch.optim.AdamW, lr=0.002),
    ):
        groups = build_optimizer(model, make, 5e-4, batch=64, nbs=64).param_groups
        assert [g["name"] for g in groups] == ["weights", "norms", "biases"]
        for group, want in zip(groups, expected):
            assert [id(p) for p in group["params"]] == [id(p) for p in want["params"]]
            assert group["weight_decay"] == want["weight_decay"] and "use_muon" not in group


def test_warmup_of_the_class_branch_groups() -> None:
    optimizer = build_optimizer(Toy(), functools.partial(MuSGD, lr=0.01), 5e-4, 64, 64)
    schedule = LinearSchedule(epochs=10, final_lr_ratio=0.01, warmup_epochs=1, warmup_momentum=0.8, warmup_bias_lr=0.1)
    schedule.apply(optimizer, epoch=0, iteration=50, warmup=100, momentum=0.937)
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs["biases"] == pytest.approx(0.055) and lrs["cls_biases"] == pytest.approx(0.065)  # from 0.1
    assert lrs["weights"] == pytest.approx(0.005) and lrs["cls_weights"] == pytest.approx(0.015)  # from 0
    assert all(g["momentum"] == pytest.approx(0.8685) for g in optimizer.param_groups)
    schedule.apply(optimizer, epoch=5, iteration=600, warmup=100, momentum=0.937)
    assert {g["name"]: g["lr"] for g in optimizer.param_groups}["cls_norms"] == pytest.approx(0.03 * schedule.factor(5))


def test_a_muon_group_refuses_vectors() -> None:
    with pytest.raises(ValueError, match="use_muon"):
        MuSGD([{"params": [nn.Parameter(torch.zeros(3))], "use_muon": True}])


# --------------------------------------------------------------------------- training


@pytest.mark.slow  # two runs; exact resume of SGD stays in the default suite
def test_training_with_musgd_resumes_exactly(tmp_path, tiny_run) -> None:
    overrides = [o for o in tiny_run if not o.startswith("schedule.warmup_epochs")]
    run_task("train.py", *overrides, "optim=musgd", "schedule.warmup_epochs=1", "train.epochs=2", "train.save_period=1")
    run = tmp_path / "runs" / "train" / "exp"
    with open(run / "metrics.csv") as f:
        uninterrupted = list(csv.DictReader(f))
    assert {"lr/weights", "lr/cls_weights", "lr/cls_biases"} <= set(uninterrupted[0])
    assert float(uninterrupted[1]["lr/cls_weights"]) == pytest.approx(3 * float(uninterrupted[1]["lr/weights"]))
    final = torch.load(run / "weights" / "last.pt", weights_only=True)
    state = final["train"]["optimizer"]["state"]
    assert all({"muon_buffer", "momentum_buffer"} <= set(s) for s in state.values() if s["momentum_buffer"].ndim == 4)
    run_task("train.py", f"resume={run / 'weights' / 'epoch1.pt'}")
    with open(run / "metrics.csv") as f:
        resumed = list(csv.DictReader(f))
    assert [r["epoch"] for r in resumed] == ["0", "1"]
    for a, b in zip(uninterrupted, resumed):
        for key in a:
            if key not in ("epoch_time_s", "images_per_s"):
                assert a[key] == b[key], (a["epoch"], key)
    again = torch.load(run / "weights" / "last.pt", weights_only=True)
    for key, value in final["train"]["raw_model"].items():
        torch.testing.assert_close(again["train"]["raw_model"][key], value, atol=0, rtol=0)
    for index, buffers in state.items():
        for name, value in buffers.items():
            torch.testing.assert_close(again["train"]["optimizer"]["state"][index][name], value, atol=0, rtol=0)
