"""The run's checkpoints: :class:`Checkpointer` writes ``last.pt``, ``best.pt`` and ``epochN.pt`` and
restores a run from one of them, with every random state, so a resumed run continues exactly."""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader

from detector.checkpoint import checkpoint_payload, read_checkpoint, write_checkpoint
from detector.errors import ConfigError
from detector.train.faults import Fault, loader_worker_failure, out_of_memory, position
from detector.train.state import LoopState
from detector.train.step import StepParts

Which = Literal["last", "best", "interrupt"]  # why a checkpoint is written


@dataclass(frozen=True)
class RunRecord:
    """What every checkpoint of a run records besides the training state."""

    config: dict[str, Any]  # the resolved config, plain data (config["model"] builds the model)
    names: list[str]  # class names, in class-index order
    imgsz: int
    run_dir: Path
    logger_run_id: dict[str, str] | None = None  # the trackers' run ids by logger key, continued on resume


def rng_state(loader_generator: torch.Generator) -> dict[str, Any]:
    """Every random state, as plain data and tensors (loads with ``weights_only=True``)."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "loader": loader_generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], loader_generator: torch.Generator) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    loader_generator.set_state(state["loader"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpointer:
    """Writes ``weights/last.pt`` after every epoch and on an interrupt, ``best.pt`` when fitness
    improved, ``epochN.pt`` every ``save_period`` epochs (0: never); each write is atomic. The model
    saved is the EMA; the raw model, optimizer, grad scaler, loop state and random states ride along
    under ``train``. ``enabled=False`` (the other ranks under torchrun) writes nothing.

    The loop marks (:meth:`mark`) the state after every completed optimizer step; on a fault,
    :meth:`save_marked` writes that state (the model, optimizer and EMA are at that step: gradients of
    batches after it are not part of a checkpoint). A write that fails (a full disk) raises
    :class:`Fault`, saying whether the previous ``last.pt`` is intact: the atomic writer never touches
    it, and it is read back to be sure."""

    def __init__(
        self,
        weights: Path,
        parts: StepParts,
        loader: DataLoader,
        record: RunRecord,
        save_period: int = 0,
        enabled: bool = True,
    ) -> None:
        self.weights = Path(weights)
        self.parts = parts
        self.loader = loader
        self.record = record
        self.save_period = save_period
        self.enabled = enabled
        self._marked = LoopState()
        self._written: tuple[int, int] | None = None  # (epoch, iteration) of the last.pt this run wrote last

    @property
    def last(self) -> Path:
        return self.weights / "last.pt"

    def save(self, state: LoopState, which: Which) -> None:
        if not self.enabled:
            return
        payload = self.payload(state)
        self._write(self.last, payload)
        self._written = (state.epoch, state.iteration)
        if which == "best":
            self._write(self.weights / "best.pt", payload)
        if self.save_period > 0 and which != "interrupt" and state.epoch % self.save_period == 0:
            self._write(self.weights / f"epoch{state.epoch}.pt", payload)

    def _write(self, path: Path, payload: dict[str, Any]) -> None:
        """Write one checkpoint; a failure to write it (OSError, or the RuntimeError torch's zip writer
        makes of one) raises :class:`Fault`. Other faults that land here (a dead loader worker's
        error, raised from a signal handler) pass on as they are."""
        try:
            write_checkpoint(path, payload)
        except (OSError, RuntimeError) as err:
            if out_of_memory(err) or loader_worker_failure(err) is not None:
                raise
            why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            intact, checkpoint = self.last_intact()
            raise Fault(f"could not write {path} ({why}); {intact}", checkpoint) from None

    def last_intact(self) -> tuple[str, Path | None]:
        """Whether ``last.pt`` is there and loads (it is read back), in words, and the file if so."""
        if not self.last.is_file():
            return f"no {self.last} was written before it, so the run cannot be resumed", None
        try:
            state = read_checkpoint(self.last)["train"]["state"]
        except (ConfigError, KeyError, OSError) as err:
            return f"{self.last} cannot be read either ({err})", None
        return f"{self.last} ({position(state)}) is intact and loadable", self.last

    def mark(self, state: LoopState) -> None:
        """Remember ``state`` as the latest consistent point: after an optimizer step, or between epochs."""
        self._marked = replace(state, sums=dict(state.sums))

    def save_marked(self, what: str, resume_overrides: tuple[str, ...] = ()) -> Fault:
        """Write the marked state to ``last.pt`` (unless that is what it holds) and return the
        :class:`Fault` that stops the run: ``what`` happened, and which checkpoint resumes it."""
        marked = self._marked
        if not self.enabled:
            return Fault(what, self.last, resume_overrides)
        try:
            if self._written != (marked.epoch, marked.iteration):
                self.save(marked, "interrupt")
        except Fault as failed:
            return Fault(f"{what}; then {failed}", failed.checkpoint, resume_overrides)
        return Fault(
            f"{what}. {self.last} holds the last completed optimizer step ({position(marked)})",
            self.last,
            resume_overrides,
        )

    def payload(self, state: LoopState) -> dict[str, Any]:
        parts, record = self.parts, self.record
        return checkpoint_payload(
            parts.ema.module,
            record.config["model"],
            record.names,
            imgsz=record.imgsz,
            epoch=state.epoch,
            best_fitness=state.best_fitness,
            train={
                "raw_model": {k: v.detach().cpu() for k, v in parts.model.state_dict().items()},
                "optimizer": parts.optimizer.state_dict(),
                "scaler": parts.scaler.state_dict(),
                "ema_updates": parts.ema.updates,
                "state": asdict(state),
                "rng": rng_state(self.loader.generator),
                "config": record.config,
                "logger_run_id": record.logger_run_id,
                "run_dir": str(record.run_dir.resolve()),
            },
        )

    def restore(self, payload: dict[str, Any]) -> LoopState:
        """Put a checkpoint's states back (model, EMA, optimizer, scaler, random states) and position
        the loader where it stopped (also mid-epoch); returns the loop state to continue from."""
        t = payload["train"]
        parts = self.parts
        parts.model.load_state_dict(t["raw_model"])
        parts.optimizer.load_state_dict(t["optimizer"])
        parts.scaler.load_state_dict(t["scaler"])
        parts.ema.load_state_dict({"model": payload["model"], "updates": t["ema_updates"]})
        state = LoopState(**t["state"])
        restore_rng(t["rng"], self.loader.generator)
        if state.iteration:
            # samples drawn so far (checkpoints without that count had this batch size); another
            # train.batch than the run's goes on from the same sample, in batches of the new size
            done = state.samples or state.iteration * self.loader.batch_size
            state.samples, state.iteration = done, math.ceil(done / self.loader.batch_size)
            self.loader.sampler.set_epoch(state.epoch, start=done)
            self.loader.dataset.set_epoch(state.epoch)
        self.mark(state)
        return state
