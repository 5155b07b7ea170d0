"""Faults met on real machines, injected into tiny training runs: a data-loader worker killed (as
the out-of-memory killer kills it), a full disk while a checkpoint is written, the device out of
memory. Each ends in one line (what happened, the likely cause, what was kept, the resume command),
leaves a loadable last.pt at the last completed optimizer step, and the resumed run continues."""

from __future__ import annotations

import csv
import errno
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from detector.data.dataset import DetectionDataset, epoch_order
from detector.errors import TrainingStopped
from tests.helpers import REPO, run_task

TRAIN = str(REPO / "train.py")
QUICK = ("train.batch=2", "train.nbs=2", "train.val=false")  # 4 steps per epoch, no validation


def epochs_logged(run: Path) -> list[str]:
    with open(run / "metrics.csv") as f:
        return [row["epoch"] for row in csv.DictReader(f)]


def training_state(path: Path) -> dict:
    return torch.load(path, weights_only=True)["train"]["state"]


def kill_worker_at(monkeypatch, epoch: int, position: int) -> None:
    """The loader worker asked for the sample at ``position`` of ``epoch``'s order (8 samples, seed 0)
    kills itself with SIGKILL, after a pause that lets the batches before it reach the trainer."""
    doomed = int(epoch_order(8, 0, epoch)[position])
    getitem = DetectionDataset.__getitem__

    def dying(self: DetectionDataset, i: int):
        if self.epoch == epoch and i == doomed and torch.utils.data.get_worker_info() is not None:
            time.sleep(1.5)
            os.kill(os.getpid(), signal.SIGKILL)
        return getitem(self, i)

    monkeypatch.setattr(DetectionDataset, "__getitem__", dying)


def test_a_killed_loader_worker_keeps_the_last_step_and_says_how_to_resume(tmp_path, monkeypatch, tiny_run) -> None:
    """The worker making the 4th batch of epoch 2 is SIGKILLed (after the 3 batches before it were
    sent), as the kernel's out-of-memory killer would: the run stops with one line and last.pt holds
    epoch 2 after its 3rd step; resumed, the run ends its 2 epochs."""
    kill_worker_at(monkeypatch, epoch=1, position=6)  # the 7th sample of epoch 2: in its 4th batch
    with pytest.raises(TrainingStopped) as stopped:
        run_task("train.py", *tiny_run, *QUICK, "train.epochs=2", "train.workers=1")
    monkeypatch.undo()
    last = tmp_path / "runs" / "train" / "exp" / "weights" / "last.pt"
    state = training_state(last)
    assert state["epoch"] == 1 and 1 <= state["iteration"] <= 3  # 3 unless the machine is very slow
    message = str(stopped.value)
    assert "\n" not in message
    # the loader reports it from its SIGCHLD handler; when it notices the dead worker first, as
    # "exited unexpectedly" (which cannot tell a kill from a crash); when the worker died handing a
    # batch over, as the broken connection
    assert re.match(
        r"a data-loader worker (\(pid \d+\) was killed by signal: Killed in epoch 2 after batch \d: most likely the "
        r"machine ran out of memory and the kernel's out-of-memory killer ended it; |(\(pid \d+\) exited unexpectedly|"
        r"died handing over a batch \(\w+Error: [^)]*\)) in epoch 2 after batch \d: the out-of-memory killer or a "
        r"crash in the worker \(see any message above\) ends it this way; )fewer ",
        message,
    )
    assert "train.workers (now 1) or a smaller train.batch (now 2) need less" in message
    assert message.endswith(
        f"{last} holds the last completed optimizer step (epoch 2, batch {state['iteration']}). "
        f"Resume with: python train.py resume={last}"
    )
    assert epochs_logged(last.parent.parent) == ["0"]
    run_task("train.py", f"resume={last}")
    assert epochs_logged(last.parent.parent) == ["0", "1"]
    assert training_state(last)["epoch"] == 2


@pytest.mark.slow
def test_a_run_resumed_after_a_killed_worker_equals_the_uninterrupted_one(tmp_path, monkeypatch, tiny_run) -> None:
    command = (*tiny_run, *QUICK, "train.epochs=2", "train.workers=1")
    run_task("train.py", *command, "name=whole")
    kill_worker_at(monkeypatch, epoch=1, position=6)
    with pytest.raises(TrainingStopped):
        run_task("train.py", *command, "name=killed")
    monkeypatch.undo()
    runs = tmp_path / "runs" / "train"
    assert 1 <= training_state(runs / "killed" / "weights" / "last.pt")["iteration"] <= 3
    run_task("train.py", *command, "name=killed", "resume=true")
    timing = ("epoch_time_s", "images_per_s")
    with open(runs / "whole" / "metrics.csv") as a, open(runs / "killed" / "metrics.csv") as b:
        whole, resumed = list(csv.DictReader(a)), list(csv.DictReader(b))
    assert [{k: v for k, v in r.items() if k not in timing} for r in resumed] == [
        {k: v for k, v in r.items() if k not in timing} for r in whole
    ]
    ours = torch.load(runs / "killed" / "weights" / "last.pt", weights_only=True)
    theirs = torch.load(runs / "whole" / "weights" / "last.pt", weights_only=True)
    for key, value in theirs["train"]["raw_model"].items():
        torch.testing.assert_close(ours["train"]["raw_model"][key], value, atol=1e-6, rtol=0)


def test_a_full_disk_keeps_the_previous_checkpoint_and_the_original_command_resumes(
    tmp_path, monkeypatch, tiny_run
) -> None:
    """Writing epoch 2's checkpoint fails half-way with ENOSPC: the previous last.pt stays whole and
    loadable, the message says so; the original command with resume=true goes on from it."""
    save = torch.save

    def full_disk_at_epoch_2(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("epoch") == 2:
            f.write(b"PK\x03\x04 half a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return save(obj, f, *args, **kwargs)

    command = (*tiny_run, *QUICK, "train.workers=0", "train.epochs=2")
    monkeypatch.setattr(torch, "save", full_disk_at_epoch_2)
    with pytest.raises(TrainingStopped) as stopped:
        run_task("train.py", *command)
    monkeypatch.setattr(torch, "save", save)
    weights = tmp_path / "runs" / "train" / "exp" / "weights"
    last = weights / "last.pt"
    assert str(stopped.value) == (
        f"could not write {last} (No space left on device); {last} (1 epoch done) is intact and loadable. "
        f"Resume with: python train.py resume={last}"
    )
    assert training_state(last)["epoch"] == 1
    assert not [p.name for p in weights.iterdir() if p.name.startswith(".")]  # no half-written file left
    run_task("train.py", *command, "resume=true")  # the command that started the run, resume=true added
    assert epochs_logged(weights.parent) == ["0", "1"]
    assert training_state(last)["epoch"] == 2
    assert sorted(p.name for p in weights.parent.parent.iterdir()) == ["exp"]  # no new run directory


def test_a_batch_lost_in_transfer_is_a_dead_worker_and_keeps_the_last_step(tmp_path, monkeypatch, tiny_run) -> None:
    """A worker killed while it hands a batch over makes the loader raise the broken connection
    itself (ConnectionResetError), not its dead-worker error: the run stops on it as on a dead
    worker, with one line and last.pt at the step before. (The error is raised here by the sample
    the 4th batch of epoch 1 needs, in the main process, so it comes out of the loader as a lost
    batch does.) The same error raised outside the loader is not a loader fault: it passes as it is."""
    from detector.train.faults import batch_lost_in_transfer, loader_worker_failure

    doomed = int(epoch_order(8, 0, 0)[6])  # the 7th sample of epoch 1: in its 4th batch of 2
    getitem = DetectionDataset.__getitem__

    def reset(self: DetectionDataset, i: int):
        if self.epoch == 0 and i == doomed:
            raise ConnectionResetError(errno.ECONNRESET, os.strerror(errno.ECONNRESET))
        return getitem(self, i)

    monkeypatch.setattr(DetectionDataset, "__getitem__", reset)
    with pytest.raises(TrainingStopped) as stopped:
        run_task("train.py", *tiny_run, *QUICK, "train.epochs=1", "train.workers=0")
    monkeypatch.undo()
    last = tmp_path / "runs" / "train" / "exp" / "weights" / "last.pt"
    assert str(stopped.value) == (
        "a data-loader worker died handing over a batch (ConnectionResetError: "
        f"[Errno {errno.ECONNRESET}] {os.strerror(errno.ECONNRESET)}) in epoch 1 after batch 3: the out-of-memory killer or a crash in the worker (see any message above) ends "
        "it this way; fewer train.workers (now 0) or a smaller train.batch (now 2) need less. "
        f"{last} holds the last completed optimizer step (epoch 1, batch 3). Resume with: python train.py resume={last}"
    )
    assert (training_state(last)["epoch"], training_state(last)["iteration"]) == (0, 3)

    try:
        raise ConnectionResetError(errno.ECONNRESET, os.strerror(errno.ECONNRESET))
    except ConnectionResetError as err:
        assert not batch_lost_in_transfer(err) and loader_worker_failure(err) is None


def test_out_of_memory_names_train_batch_and_resumes_with_a_smaller_one(tmp_path, monkeypatch, tiny_run) -> None:
    """The 4th step (epoch 2, batch 2) runs out of memory, as CUDA would: last.pt holds the step
    before it; the suggested command (half the batch) finishes the epoch from the same sample."""
    import detector.train.loop as loop

    step, calls = loop.train_step, []

    def out_of_memory_at_4(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return step(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", out_of_memory_at_4)
    with pytest.raises(TrainingStopped) as stopped:
        run_task("train.py", *tiny_run, "train.batch=4", "train.nbs=4", "train.val=false", "train.epochs=2")
    monkeypatch.setattr(loop, "train_step", step)
    last = tmp_path / "runs" / "train" / "exp" / "weights" / "last.pt"
    assert str(stopped.value) == (
        "cpu ran out of memory in epoch 2 after batch 1 with train.batch=4: resume with a smaller train.batch "
        f"(train.batch=2). {last} holds the last completed optimizer step (epoch 2, batch 1). "
        f"Resume with: python train.py resume={last} train.batch=2"
    )
    state = training_state(last)
    assert (state["epoch"], state["iteration"], state["samples"]) == (1, 1, 4)
    run_task("train.py", f"resume={last}", "train.batch=2")
    state = training_state(last)
    assert (state["epoch"], epochs_logged(last.parent.parent)) == (2, ["0", "1"])
    assert state["global_step"] == 2 + 1 + 2  # 2 batches of 4, 1 of 4, then the 4 samples left in 2 of 2


def test_a_killed_worker_in_the_final_evaluation_keeps_the_weights_and_says_how_to_evaluate(
    tmp_path, monkeypatch, tiny_run
) -> None:
    """Training ends and the evaluation of best.pt that follows loses its loader worker: one line says
    that the trained weights are kept, why the worker likely died and how to evaluate best.pt; the
    checkpoints are whole and the loggers closed (metrics.csv holds every epoch)."""
    import detector.tasks.train as train_task

    load, final = train_task.load_checkpoint, []

    def loading_for_the_final_evaluation(*args, **kwargs):  # finish() loads best.pt before evaluating it
        final.append(True)
        return load(*args, **kwargs)

    getitem = DetectionDataset.__getitem__

    def dying(self: DetectionDataset, i: int):
        if final and torch.utils.data.get_worker_info() is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        return getitem(self, i)

    monkeypatch.setattr(train_task, "load_checkpoint", loading_for_the_final_evaluation)
    monkeypatch.setattr(DetectionDataset, "__getitem__", dying)
    with pytest.raises(TrainingStopped) as stopped:
        run_task("train.py", *tiny_run, "train.batch=2", "train.nbs=2", "train.epochs=2", "train.workers=1")
    monkeypatch.undo()
    run = tmp_path / "runs" / "train" / "exp"
    message = str(stopped.value)
    assert "\n" not in message
    assert re.fullmatch(
        rf"done: the trained weights are in {re.escape(str(run / 'weights'))}, but the final evaluation of best.pt "
        r"stopped: a data-loader worker (\(pid \d+\) (was killed by signal: Killed|exited unexpectedly)|died handing "
        r"over a batch \(\w+Error: [^)]*\)): .*fewer "
        r"workers \(now 1\) or a smaller batch \(now 2\) need less. Evaluate it with: python scripts/evaluate.py "
        rf"checkpoint={re.escape(str(run / 'weights' / 'best.pt'))} and the run's data options \(its config.yaml\)",
        message,
    ), message
    assert training_state(run / "weights" / "last.pt")["epoch"] == 2
    assert torch.load(run / "weights" / "best.pt", weights_only=True)["model"]
    assert epochs_logged(run) == ["0", "1"]
    assert not (run / "metrics.json").exists()  # the final evaluation wrote nothing half-done


@pytest.mark.slow
def test_the_command_line_reports_a_killed_worker_in_one_line(tmp_path, tiny_run) -> None:
    """``python train.py`` with a worker killed from outside: exit status 1, one line on stderr with
    the resume command, and that command continues the run."""
    last = tmp_path / "runs" / "train" / "exp" / "weights" / "last.pt"
    proc = subprocess.Popen(
        [sys.executable, TRAIN, *tiny_run, *QUICK, "train.epochs=100", "train.workers=1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 240
    while not last.exists() and time.time() < deadline:
        time.sleep(0.2)
    killed = None
    while killed is None and time.time() < deadline:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        for pid in children:  # the loader's worker (between epochs there is none)
            try:
                os.kill(int(pid), signal.SIGKILL)
                killed = pid
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err[-2000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith(
        (f"error: a data-loader worker (pid {killed}) ", "error: a data-loader worker died handing over")
    )
    assert line.endswith(f"Resume with: python train.py resume={last}")
    result = subprocess.run(
        [sys.executable, TRAIN, f"resume={last}", "train.epochs=2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert training_state(last)["epoch"] >= 2
