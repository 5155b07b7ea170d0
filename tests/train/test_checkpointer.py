"""The Checkpointer on a tiny model: which files it writes, that a failed write leaves the last good
one and says so, that a restore gives back every state it saved (mid-epoch also with another batch
size), and that a fault writes the state of the last optimizer step."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from detector.checkpoint import read_checkpoint
from detector.data.loader import EpochSampler
from detector.train.checkpointer import Checkpointer, RunRecord
from detector.train.ema import ModelEMA
from detector.train.faults import Fault
from detector.train.state import LoopState
from detector.train.step import StepParts

MODEL_CONFIG = {"_target_": "torch.nn.Conv2d", "in_channels": 3, "out_channels": 2, "kernel_size": 1}


class Numbers(Dataset):
    """Ten numbers; remembers the epoch it was set to."""

    epoch = -1

    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int) -> int:
        return i

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


def make(
    tmp_path: Path, seed: int, save_period: int = 0, batch_size: int = 2
) -> tuple[Checkpointer, StepParts, DataLoader]:
    torch.manual_seed(seed)
    model = nn.Conv2d(3, 2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    parts = StepParts(
        model, optimizer, ModelEMA(model, tau=1.0), lambda *a: None, torch.amp.GradScaler("cpu"), torch.device("cpu")
    )
    loader = DataLoader(Numbers(), batch_size=batch_size, sampler=EpochSampler(10, seed=0), generator=torch.Generator())
    record = RunRecord({"model": MODEL_CONFIG}, ["a", "b"], 64, tmp_path, "run-7")
    return Checkpointer(tmp_path / "weights", parts, loader, record, save_period), parts, loader


def train_once(parts: StepParts) -> None:
    parts.model(torch.ones(1, 3, 2, 2)).sum().backward()
    parts.optimizer.step()  # momentum buffers: optimizer state worth restoring
    parts.optimizer.zero_grad()
    parts.ema.update(parts.model)


def test_last_best_and_every_period(tmp_path: Path) -> None:
    checkpointer, parts, _ = make(tmp_path, seed=0, save_period=2)
    weights = tmp_path / "weights"
    checkpointer.save(LoopState(epoch=1, best_fitness=0.5), "best")
    assert sorted(p.name for p in weights.iterdir()) == ["best.pt", "last.pt"]  # epoch 1: not a period's end
    checkpointer.save(LoopState(epoch=2), "last")
    assert sorted(p.name for p in weights.iterdir()) == ["best.pt", "epoch2.pt", "last.pt"]
    checkpointer.save(LoopState(epoch=4, iteration=3), "interrupt")  # an interrupt writes last.pt only
    assert sorted(p.name for p in weights.iterdir()) == ["best.pt", "epoch2.pt", "last.pt"]
    epochs = {name: read_checkpoint(weights / name)["epoch"] for name in ("best.pt", "epoch2.pt", "last.pt")}
    assert epochs == {"best.pt": 1, "epoch2.pt": 2, "last.pt": 4}
    best = read_checkpoint(weights / "best.pt")
    assert best["best_fitness"] == 0.5 and best["names"] == ["a", "b"] and best["imgsz"] == 64
    assert best["model_config"] == MODEL_CONFIG and best["train"]["logger_run_id"] == "run-7"
    assert best["train"]["run_dir"] == str(tmp_path.resolve())
    assert all(torch.equal(best["model"][k], v) for k, v in parts.ema.module.state_dict().items())


def disk_full_half_way(obj: object, f: object) -> None:
    f.write(b"PK\x03\x04 half a zip")  # type: ignore[attr-defined]
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_failed_write_keeps_the_last_good_checkpoint_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpointer, _, _ = make(tmp_path, seed=0)
    last = tmp_path / "weights" / "last.pt"
    monkeypatch.setattr(torch, "save", disk_full_half_way)
    with pytest.raises(Fault) as fault:
        checkpointer.save(LoopState(epoch=1), "last")  # the run's first checkpoint
    assert str(fault.value) == (
        f"could not write {last} (No space left on device); no {last} was written before it, so the run "
        "cannot be resumed"
    )
    assert fault.value.checkpoint is None and not last.exists()
    monkeypatch.undo()
    checkpointer.save(LoopState(epoch=1), "last")
    monkeypatch.setattr(torch, "save", disk_full_half_way)
    with pytest.raises(Fault) as fault:
        checkpointer.save(LoopState(epoch=2, iteration=3), "best")
    assert str(fault.value) == (
        f"could not write {last} (No space left on device); {last} (1 epoch done) is intact and loadable"
    )
    assert fault.value.checkpoint == last
    monkeypatch.undo()
    assert read_checkpoint(last)["epoch"] == 1
    assert [p.name for p in (tmp_path / "weights").iterdir()] == ["last.pt"]  # no temporary file, no best.pt


def test_a_write_torch_fails_and_a_dead_worker_during_a_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's zip writer turns a failed write into a RuntimeError: a failed write too. A loader
    worker's death reported during the write is not: it passes on, and the fault path handles it."""
    checkpointer, _, _ = make(tmp_path, seed=0)
    last = tmp_path / "weights" / "last.pt"
    checkpointer.save(LoopState(epoch=1), "last")

    def raising(error: BaseException):
        def save(obj: object, f: object) -> None:
            f.write(b"PK\x03\x04 half")  # type: ignore[attr-defined]
            raise error

        return save

    monkeypatch.setattr(
        torch, "save", raising(RuntimeError("[enforce fail at inline_container.cc:671] . unexpected pos"))
    )
    with pytest.raises(
        Fault, match=r"\(\[enforce fail at inline_container.cc:671\] . unexpected pos\); .*\(1 epoch done\) is intact"
    ):
        checkpointer.save(LoopState(epoch=2), "last")
    monkeypatch.setattr(torch, "save", raising(RuntimeError("DataLoader worker (pid 9) is killed by signal: Killed. ")))
    with pytest.raises(RuntimeError, match="^DataLoader worker"):
        checkpointer.save(LoopState(epoch=2), "last")
    monkeypatch.undo()
    assert read_checkpoint(last)["epoch"] == 1 and [p.name for p in last.parent.iterdir()] == ["last.pt"]


def test_a_fault_writes_the_marked_state_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkpointer, _, _ = make(tmp_path, seed=0)
    last = tmp_path / "weights" / "last.pt"
    state = LoopState(epoch=2, iteration=3, samples=6, sums={"box": 1.0})
    checkpointer.mark(state)
    state.iteration, state.samples, state.sums["box"] = 4, 8, 2.0  # a batch after the step: not kept
    fault = checkpointer.save_marked("a worker died", ("train.batch=1",))
    assert str(fault) == f"a worker died. {last} holds the last completed optimizer step (epoch 3, batch 3)"
    assert fault.checkpoint == last and fault.resume_overrides == ("train.batch=1",)
    saved = read_checkpoint(last)["train"]["state"]
    assert (saved["epoch"], saved["iteration"], saved["samples"], saved["sums"]) == (2, 3, 6, {"box": 1.0})
    writes = []
    monkeypatch.setattr(checkpointer, "_write", lambda path, payload: writes.append(path))
    checkpointer.save_marked("again")  # last.pt holds the marked state already
    assert writes == []
    monkeypatch.undo()  # the real writer, on a full disk
    monkeypatch.setattr(torch, "save", disk_full_half_way)
    checkpointer.mark(LoopState(epoch=3))
    fault = checkpointer.save_marked("a worker died")
    assert str(fault) == (
        f"a worker died; then could not write {last} (No space left on device); {last} (epoch 3, batch 3) is "
        "intact and loadable"
    )


def test_restore_gives_back_every_state(tmp_path: Path) -> None:
    checkpointer, parts, loader = make(tmp_path, seed=0)
    train_once(parts)
    random.seed(3)
    np.random.seed(4)
    loader.generator.manual_seed(5)
    saved = LoopState(epoch=3, iteration=2, samples=4, global_step=17, best_fitness=0.25, sums={"box": 1.5}, images=4)
    checkpointer.save(saved, "last")
    after_save = (
        random.random(),
        float(np.random.rand()),
        float(torch.rand(1)),
        int(torch.randint(9, (1,), generator=loader.generator)),
    )

    fresh, other, other_loader = make(tmp_path, seed=1)  # other weights, no optimizer state
    state = fresh.restore(read_checkpoint(tmp_path / "weights" / "last.pt"))
    assert state == saved
    for a, b in ((other.model, parts.model), (other.ema.module, parts.ema.module)):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert other.ema.updates == parts.ema.updates == 1
    momentum = [s["momentum_buffer"] for s in other.optimizer.state_dict()["state"].values()]
    assert len(momentum) == 2  # weight and bias
    assert all(
        torch.equal(x, s["momentum_buffer"]) for x, s in zip(momentum, parts.optimizer.state_dict()["state"].values())
    )
    assert other.scaler.state_dict() == parts.scaler.state_dict()
    restored = (
        random.random(),
        float(np.random.rand()),
        float(torch.rand(1)),
        int(torch.randint(9, (1,), generator=other_loader.generator)),
    )
    assert restored == after_save
    # mid-epoch: the loader continues after the 2 batches (of 2) of epoch 3 already done
    assert other_loader.sampler.epoch == 3 and len(other_loader.sampler) == 10 - 4 and other_loader.dataset.epoch == 3


@pytest.mark.parametrize("batch_size, iteration", [(4, 2), (3, 2), (1, 6)])
def test_a_resume_with_another_batch_size_goes_on_from_the_same_sample(
    tmp_path: Path, batch_size: int, iteration: int
) -> None:
    checkpointer, _, _ = make(tmp_path, seed=0)
    checkpointer.save(LoopState(epoch=3, iteration=3, samples=6), "last")  # 3 batches of 2
    other, _, loader = make(tmp_path, seed=1, batch_size=batch_size)
    state = other.restore(read_checkpoint(tmp_path / "weights" / "last.pt"))
    assert (state.samples, state.iteration) == (6, iteration)
    rest = [int(i) for batch in loader for i in batch]
    order = EpochSampler(10, seed=0)
    order.set_epoch(3)
    assert rest == list(order)[6:]  # the samples not yet seen, in the epoch's order


def test_a_checkpoint_without_a_sample_count_resumes_by_its_batches(tmp_path: Path) -> None:
    checkpointer, _, _ = make(tmp_path, seed=0)
    checkpointer.save(LoopState(epoch=1, iteration=2), "last")  # as written before samples were counted
    payload = read_checkpoint(tmp_path / "weights" / "last.pt")
    del payload["train"]["state"]["samples"]
    other, _, loader = make(tmp_path, seed=1)
    state = other.restore(payload)
    assert (state.samples, state.iteration, len(loader.sampler)) == (4, 2, 6)
