"""Faults a run meets on real machines, each told in one line with its likely cause.

A data-loader worker killed (the kernel's out-of-memory killer picks the largest process, often a
worker), the accelerator out of memory, a checkpoint that cannot be written (a full disk). The loop
stops on them the way it stops on SIGTERM: the last completed optimizer step is written to
``last.pt`` (when it can be) and :class:`Fault` carries what happened and the checkpoint that
resumes the run; the training task adds the resume command.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
import torch.utils.data.dataloader

from detector.train.state import LoopSettings, LoopState


class Fault(Exception):
    """Training stopped by a fault. ``str(fault)``: what happened and why, one line; ``checkpoint``:
    the file the run resumes from (None: there is none); ``resume_overrides``: what the resume command
    should change (``train.batch=8`` after running out of memory)."""

    def __init__(self, message: str, checkpoint: Path | None, resume_overrides: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint
        self.resume_overrides = resume_overrides


def position(state: LoopState | dict[str, Any]) -> str:
    """Where a run stands: ``epoch 3, batch 12`` or, between epochs, ``2 epochs done``."""
    epoch, iteration = (
        (state["epoch"], state["iteration"]) if isinstance(state, dict) else (state.epoch, state.iteration)
    )
    return f"epoch {epoch + 1}, batch {iteration}" if iteration else f"{epoch} epoch{'s' if epoch != 1 else ''} done"


def describe_fault(
    err: BaseException, settings: LoopSettings, device: torch.device, state: LoopState
) -> tuple[str, tuple[str, ...]] | None:
    """What a fault is and its likely cause, in one line, and the overrides a resume should add; None for
    an error that is none of the faults the loop handles (it is raised as it is)."""
    where = f"in epoch {state.epoch + 1} " + (
        f"after batch {state.iteration}" if state.iteration else "before its first batch"
    )
    if out_of_memory(err):
        smaller = max(1, settings.batch // 2)
        overrides = (f"train.batch={smaller}",) if smaller < settings.batch else ()
        advice = f"resume with a smaller train.batch (train.batch={smaller})" if overrides else "try a smaller imgsz"
        return (
            f"{device} ran out of memory {where} with train.batch={settings.batch}: {advice}",
            overrides,
        )
    worker = loader_worker_failure(err)
    if worker is not None:
        lighter = lighter_loading("train.", settings.workers, settings.batch)
        return f"{worker} {where}: {likely_cause(str(err), lighter)}", ()
    return None


def describe_evaluation_fault(err: BaseException, device: torch.device, workers: int, batch: int) -> str | None:
    """The same faults met while evaluating (the loader's ``workers`` and ``batch`` are evaluate.py's
    ``workers=`` and ``batch=``), in one line; None for any other error."""
    if out_of_memory(err):
        return f"{device} ran out of memory with batch={batch}: a smaller batch= needs less"
    worker = loader_worker_failure(err)
    if worker is not None:
        return f"{worker}: {likely_cause(str(err), lighter_loading('', workers, batch))}"
    return None


def out_of_memory(err: BaseException) -> bool:
    """CUDA's (and XPU's) ``torch.OutOfMemoryError``, or the CPU and MPS allocators' RuntimeError."""
    text = str(err)
    return isinstance(err, torch.OutOfMemoryError) or (
        isinstance(err, RuntimeError)
        and ("DefaultCPUAllocator: not enough memory" in text or "MPS backend out of memory" in text)
    )


# What a fault reaches the loop as: PyTorch's RuntimeError (a dead worker, out of memory), or the
# ConnectionError / EOFError of a batch whose worker died while handing it over.
FAULT_ERRORS = (RuntimeError, ConnectionError, EOFError)


def loader_worker_failure(err: BaseException) -> str | None:
    """``a data-loader worker (pid 123) was killed by signal: Killed`` for PyTorch's error about a
    worker that died, ``a data-loader worker died handing over a batch (ConnectionResetError: ...)``
    for a batch lost that way (:func:`batch_lost_in_transfer`), else None."""
    if batch_lost_in_transfer(err):
        return f"a data-loader worker died handing over a batch ({type(err).__name__}: {err})"
    text = str(err)
    if not isinstance(err, RuntimeError) or "DataLoader worker" not in text:
        return None
    pid = re.search(r"pid(?:\(s\))? ([\d, ]*\d)", text)
    who = f"a data-loader worker (pid {pid.group(1)})" if pid else "a data-loader worker"
    signal = re.search(r"killed by signal: ([^.]+)", text)
    if signal:
        return f"{who} was killed by signal: {signal.group(1)}"
    return f"{who} exited unexpectedly"


def batch_lost_in_transfer(err: BaseException) -> bool:
    """A ConnectionError or EOFError raised inside PyTorch's loader while it received a batch. A
    worker passes a batch's shared memory over a connection of its own; killed in the middle, its end
    closes, and the loader re-raises that error as it is when it has not yet seen the worker die."""
    if not isinstance(err, (ConnectionError, EOFError)):
        return False
    loader_module = torch.utils.data.dataloader.__file__
    tb = err.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == loader_module:
            return True
        tb = tb.tb_next
    return False


def lighter_loading(prefix: str, workers: int, batch: int) -> str:
    """What makes loading need less memory, under the keys ``prefix`` + ``workers`` and ``batch``."""
    return f"fewer {prefix}workers (now {workers}) or a smaller {prefix}batch (now {batch}) need less"


def likely_cause(text: str, lighter: str) -> str:
    """The usual reason a loader worker dies that way, and ``lighter``: what needs less of it."""
    if "Bus error" in text:
        return f"most likely shared memory (/dev/shm) is too small for the batches; {lighter}"
    if "Killed" in text:
        return f"most likely the machine ran out of memory and the kernel's out-of-memory killer ended it; {lighter}"
    return f"the out-of-memory killer or a crash in the worker (see any message above) ends it this way; {lighter}"
