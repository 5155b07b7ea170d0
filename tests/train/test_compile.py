"""``torch.compile`` (``train.compile=true``, ``compile=true``): the same losses as eager over the first
steps, checkpoints of the plain model that resume exactly, one compile per input shape, and evaluation
and prediction with the same detections as eager.

Inductor compiles C++ for every model and input shape: minutes for even the tiny detector on a small
CPU. The default run checks the wiring on a 1x1 convolution with torch.compile's ``aot_eager``
backend (the same graph capture and autograd, without code generation: seconds); the tests on the
tiny detector run inductor, the real thing, and are marked slow."""

from __future__ import annotations

import copy
import csv
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import detector.device
from detector.config import compose
from detector.device import compile_model
from detector.errors import ConfigError
from detector.losses import build_loss
from detector.models.zoo import instantiate_model
from detector.predict import load
from detector.train.checkpointer import Checkpointer, RunRecord
from detector.train.ema import ModelEMA
from detector.train.state import LoopState
from detector.train.step import StepParts, train_step
from detector.types import Targets
from tests.eval.test_coco_metrics import tiny_checkpoint
from tests.helpers import run_task
from tests.train.test_step import NO_TARGETS, MeanLoss
from tests.train.test_training import write_easy_dataset


@pytest.fixture
def aot_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """compile=true with the aot_eager backend in this test (the library's default is inductor)."""
    monkeypatch.setattr(detector.device, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()


@pytest.fixture
def inductor() -> None:
    assert detector.device.COMPILE_BACKEND == "inductor"
    torch._dynamo.reset()


def conv_parts(compiled: bool) -> StepParts:
    """test_step.py's 1x1 convolution (weights 1, 2, 3) with the mean of its output as the loss."""
    model = nn.Conv2d(3, 1, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    parts = StepParts(model, optimizer, ModelEMA(model), MeanLoss(), scaler, torch.device("cpu"))
    if compiled:
        parts.compiled = compile_model(model, parts.device, "train.compile")
    return parts


def conv_batches(*sizes: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (n, 3, 4, 4), dtype=torch.uint8, generator=g) for n in sizes]


def test_the_compiled_network_trains_the_plain_model(aot_eager, tmp_path) -> None:
    """Batches go through the compiled module, and the steps equal eager ones; the optimizer, the clip,
    the EMA and the checkpoint work on the plain module: its keys, no ``_orig_mod.``."""
    runs = {}
    for compiled in (False, True):
        parts, state = conv_parts(compiled), LoopState()
        for images in conv_batches(2, 2, 2):
            train_step(parts, state, images, NO_TARGETS, pending=0, accumulate=1, clip=0.5, max_nonfinite=3)
        runs[compiled] = parts, state
    (eager, eager_state), (compiled, compiled_state) = runs[False], runs[True]
    assert compiled.network is compiled.compiled and compiled.network is not compiled.model
    assert compiled_state.sums["box"] == pytest.approx(eager_state.sums["box"], rel=1e-6)
    torch.testing.assert_close(compiled.model.weight, eager.model.weight)
    torch.testing.assert_close(compiled.ema.module.weight, eager.ema.module.weight)
    assert list(compiled.compiled.state_dict()) == ["_orig_mod.weight"]  # what a checkpoint must not hold
    record = RunRecord({"model": {}}, ["a"], 4, tmp_path)
    loader = SimpleNamespace(generator=torch.Generator())
    payload = Checkpointer(tmp_path, compiled, loader, record).payload(LoopState())
    assert list(payload["model"]) == list(payload["train"]["raw_model"]) == ["weight"]
    torch.testing.assert_close(payload["train"]["raw_model"]["weight"], eager.model.weight.detach())


def test_each_input_shape_compiles_once(monkeypatch) -> None:
    """dynamic=False: batches of 3, 3, 2 over three epochs compile two graphs (a smaller last batch
    compiles once more and keeps its graph), and a batch of 4 a third: each shape gets its own fixed
    graph, where torch's automatic dynamic shapes would have made the second one for any batch size."""
    shapes: list[tuple[int, ...]] = []
    monkeypatch.setattr(detector.device, "COMPILE_BACKEND", counting(shapes))
    torch._dynamo.reset()
    parts, state = conv_parts(compiled=True), LoopState()
    for images in [*conv_batches(3, 3, 2) * 3, *conv_batches(4)]:
        train_step(parts, state, images, NO_TARGETS, pending=0, accumulate=1, clip=0.0, max_nonfinite=3)
    assert shapes == [(3, 3, 4, 4), (2, 3, 4, 4), (4, 3, 4, 4)]


def counting(shapes: list[tuple[int, ...]]) -> Callable:
    """A torch.compile backend that records the input shape of each graph it is given and runs it as
    it is (no code generation)."""

    def backend(graph: torch.fx.GraphModule, inputs: list) -> Callable:
        images = [x for x in inputs if isinstance(x, torch.Tensor) and x.dim() == 4 and x.shape[1:2] == (3,)]
        shapes.append(tuple(images[-1].shape))
        return graph.forward

    return backend


def tiny_model(tiny_run: list[str]) -> torch.nn.Module:
    """The tiny run's model (the shapes data's six classes), as train.py builds it."""
    from omegaconf import OmegaConf

    cfg = compose("train", tiny_run)
    torch.manual_seed(0)
    return instantiate_model(OmegaConf.to_container(cfg.model, resolve=True))


def batches(count: int, batch: int = 4, imgsz: int = 64) -> list[tuple[torch.Tensor, Targets]]:
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(count):
        images = torch.randint(0, 256, (batch, 3, imgsz, imgsz), dtype=torch.uint8, generator=g)
        n = 2 * batch
        xy = torch.rand(n, 2, generator=g) * (imgsz - 24)
        boxes = torch.cat((xy, xy + 6 + torch.rand(n, 2, generator=g) * 18), 1)
        out.append((images, Targets(torch.arange(n) % batch, boxes, torch.randint(0, 6, (n,), generator=g))))
    return out


def step_parts(model: torch.nn.Module, compiled: bool) -> StepParts:
    model = copy.deepcopy(model).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    parts = StepParts(model, optimizer, ModelEMA(model), build_loss(model.head), scaler, torch.device("cpu"))
    if compiled:
        parts.compiled = compile_model(model, parts.device, "train.compile")
    return parts


@pytest.mark.slow  # inductor: minutes of C++ compilation (the default run: the 1x1 convolution above)
def test_compiled_steps_give_the_losses_of_eager_steps(tiny_run, inductor) -> None:
    """Three optimizer steps, each from the weights and optimizer state eager training has reached:
    every loss part within 1e-4 relative of eager's, and the weights after the step within 1e-4. The
    compiled model trains the plain module (no ``_orig_mod.`` keys), which the EMA follows. (Left to
    itself, a run drifts from another by rounding, see the run test below.)"""
    model = tiny_model(tiny_run)
    eager, compiled = step_parts(model, compiled=False), step_parts(model, compiled=True)
    states = {"eager": LoopState(), "compiled": LoopState()}
    for step, (images, targets) in enumerate(batches(3)):
        compiled.model.load_state_dict(eager.model.state_dict())  # in place: the compiled graph reads them
        compiled.optimizer.load_state_dict(copy.deepcopy(eager.optimizer.state_dict()))  # not its buffers
        losses = {}
        for name, parts in (("eager", eager), ("compiled", compiled)):
            state = states[name]
            before = dict(state.sums)
            train_step(parts, state, images, targets, pending=0, accumulate=1, clip=10.0, max_nonfinite=3)
            losses[name] = {k: state.sums[k] - before.get(k, 0.0) for k in state.sums}
        for part, value in losses["eager"].items():
            assert losses["compiled"][part] == pytest.approx(value, rel=1e-4), (step, part)
        for (name, a), b in zip(eager.model.state_dict().items(), compiled.model.state_dict().values()):
            torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-4, msg=f"step {step}: {name}")
    assert compiled.network is compiled.compiled and compiled.network is not compiled.model
    assert not any("_orig_mod" in k for k in compiled.model.state_dict())
    assert any("_orig_mod" in k for k in compiled.compiled.state_dict())  # what a checkpoint must not hold
    for (name, a), b in zip(eager.ema.module.state_dict().items(), compiled.ema.module.state_dict().values()):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4, msg=name)
    assert compiled.ema.updates == 3


@pytest.mark.slow  # the tiny detector traced by dynamo, per shape (the default run: the 1x1 convolution above)
def test_each_batch_shape_of_a_run_compiles_once(tiny_run, monkeypatch) -> None:
    """train.py on 8 images in batches of 3: every epoch ends with a batch of 2, and the model compiles
    twice in all (3 and 2 images), not once per epoch."""
    shapes: list[tuple[int, ...]] = []
    monkeypatch.setattr(detector.device, "COMPILE_BACKEND", counting(shapes))
    torch._dynamo.reset()
    overrides = [o for o in tiny_run if not o.startswith(("train.batch", "train.nbs"))]
    run_task(
        "train.py",
        *overrides,
        "train.batch=3",
        "train.nbs=3",
        "train.epochs=2",
        "train.val=false",
        "train.compile=true",
    )
    assert sorted(shapes) == [(2, 3, 64, 64), (3, 3, 64, 64)]


def rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow  # inductor: minutes of C++ compilation per input shape
def test_a_compiled_run_saves_the_plain_model_and_resumes_exactly(tmp_path, tiny_run, inductor) -> None:
    """Three epochs with train.compile=true, then the run resumed from its epoch-1 checkpoint (compiled
    again): the same losses, metrics and weights. Checkpoints hold the plain model's state_dict and
    load into an uncompiled model; the first epoch's losses are eager's."""
    run_task("train.py", *tiny_run, "train.epochs=3", "train.save_period=1", "train.compile=true")
    run = tmp_path / "runs" / "train" / "exp"
    uninterrupted = rows(run / "metrics.csv")
    final = torch.load(run / "weights" / "last.pt", weights_only=True)
    for state_dict in (final["model"], final["train"]["raw_model"]):
        assert not any("_orig_mod" in k for k in state_dict)
    tiny_model(tiny_run).load_state_dict(final["model"])  # strict: every key of the plain model
    run_task("train.py", f"resume={run / 'weights' / 'epoch1.pt'}")
    resumed = rows(run / "metrics.csv")
    assert [r["epoch"] for r in resumed] == ["0", "1", "2"]
    for a, b in zip(uninterrupted, resumed):
        for key in a:
            if key not in ("epoch_time_s", "images_per_s"):
                assert a[key] == b[key], (a["epoch"], key)
    again = torch.load(run / "weights" / "last.pt", weights_only=True)
    for key in final["model"]:
        torch.testing.assert_close(again["model"][key], final["model"][key], atol=1e-6, rtol=0)

    # against eager: the first epoch (two steps) gives the same losses; after that the runs drift apart
    # by rounding, as much as two eager runs do on one and on two threads (box loss 24 % apart after
    # three epochs, eager against eager 28 %): the tiny model at 64 px is chaotic. The learning test
    # below compares what a compiled and an eager run reach.
    run_task("train.py", *tiny_run, "train.epochs=1", "name=eager")
    (eager,) = rows(tmp_path / "runs" / "train" / "eager" / "metrics.csv")
    for key in ("train/box", "train/cls", "train/dfl"):
        assert float(uninterrupted[0][key]) == pytest.approx(float(eager[key]), rel=1e-4), key


@pytest.mark.slow  # inductor on yolov8n, then 90 epochs compiled and 90 eager
def test_a_compiled_run_learns_as_an_eager_one(tmp_path) -> None:
    """tests/train/test_training.py's four easy images: yolov8n trained compiled reaches mAP50 >= 0.9
    there, as eager training does, and both mAP50-95 are within 0.1. The two runs part by rounding
    (inductor's fused kernels sum in another order; the first steps' losses agree to 1e-4, above)
    and 180 steps on four images amplify it: mAP50-95 0.892 compiled against 0.946 eager measured
    on one torch thread (as the full slow suite runs it after tests that set one), within 0.05 on
    two."""
    data = write_easy_dataset(tmp_path / "easy")
    common = [
        *("data=yolo", f"data.file={data}", "model=yolov8n", "imgsz=128", "augment=none", "device=cpu"),
        *("train.epochs=90", "train.batch=2", "train.nbs=2", "train.workers=0", "schedule.warmup_epochs=0"),
        *("schedule.final_lr_ratio=1.0", "optim.lr=0.01", f"project={tmp_path / 'runs'}"),
    ]
    metrics = {}
    for name, extra in (("eager", []), ("compiled", ["train.compile=true"])):
        run_dir = run_task("train.py", *common, f"name={name}", *extra)
        metrics[name] = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["compiled"]["mAP50"] >= 0.9 and metrics["eager"]["mAP50"] >= 0.9, metrics
    assert metrics["compiled"]["mAP50-95"] == pytest.approx(metrics["eager"]["mAP50-95"], abs=0.1), metrics


def assert_same_predictions(got: list[dict], expected: list[dict]) -> None:
    """COCO predictions equal up to float rounding (boxes 1e-2 px, scores 1e-4), in file order up to
    near-ties of score."""
    assert len(got) == len(expected) > 0
    key = lambda p: (p["image_id"], p["category_id"], round(p["score"], 3))  # noqa: E731
    for a, b in zip(sorted(got, key=key), sorted(expected, key=key)):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
        np.testing.assert_allclose(a["bbox"], b["bbox"], atol=1e-2)


@pytest.mark.slow  # inductor: minutes of C++ compilation per input shape
def test_evaluate_and_predict_compiled_equal_eager(tmp_path, tiny_data, inductor, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    checkpoint = tiny_checkpoint(tmp_path)
    common = [f"checkpoint={checkpoint}", *tiny_data, "imgsz=64", "batch=3", "workers=0", "conf=0.0001", "plots=false"]
    eager = run_task("scripts/evaluate.py", *common, "name=eager")
    compiled = run_task("scripts/evaluate.py", *common, "name=compiled", "compile=true")
    assert_same_predictions(
        json.loads((compiled / "predictions.json").read_text()), json.loads((eager / "predictions.json").read_text())
    )
    images = [np.random.default_rng(i).integers(0, 256, (48 + 8 * i, 64, 3), dtype=np.uint8) for i in range(3)]
    expected = load(checkpoint, "cpu").predict(images, conf=0.0001, imgsz=64, batch=2)
    got = load(checkpoint, "cpu", compile=True).predict(images, conf=0.0001, imgsz=64, batch=2)
    for a, b in zip(got, expected):
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-2)


def test_compile_refused_where_it_cannot_work(tmp_path, monkeypatch) -> None:
    """No C++ compiler for inductor on a CPU, or an exported graph: one line each, before any work."""
    from detector.export.onnx import export_onnx
    from detector.interop.weights import load_weights

    checkpoint = tiny_checkpoint(tmp_path)
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    with pytest.raises(ConfigError, match=r"^train.compile=true: torch.compile needs a C\+\+ compiler on a CPU"):
        compile_model(torch.nn.Linear(2, 2), torch.device("cpu"), "train.compile")
    with pytest.raises(ConfigError, match=r"^compile=true: torch.compile needs a C\+\+ compiler"):
        load(checkpoint, "cpu", compile=True)
    monkeypatch.delenv("CXX")
    model, meta = load_weights(checkpoint)
    path = export_onnx(model, tmp_path / "tiny.onnx", 64, meta["names"])
    with pytest.raises(ConfigError, match=r"^compile=true applies to PyTorch checkpoints"):
        load(path, compile=True)
