"""Experiment loggers for the training loop (rank 0 only): the run directory's CSV and plot, and the
trackers TensorBoard, MLflow and Weights & Biases.

Each ``logger`` option is one or more ``_target_`` nodes under ``logger.<key>`` (``logger=[tensorboard,mlflow]``
selects several); each builds a logger from ``run_dir``, ``run_id`` and ``name``. Every logger follows
the small :class:`Logger` protocol, and the loop talks to one :class:`MultiLogger` of them, keyed as
in the config. A tracker's package is imported only when its logger is built.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from detector.train.loggers.csv_file import CSVLogger
from detector.train.loggers.mlflow_run import MLflowLogger
from detector.train.loggers.tensorboard_events import TensorBoardLogger
from detector.train.loggers.wandb_run import WANDB_MODES, WandbLogger


class Logger(Protocol):
    """What the training loop calls, once per run (config, files, finish) or once per epoch."""

    run_id: str | None  # the tracker's run id, stored in checkpoints so that a resumed run continues it

    def log_config(self, config: dict) -> None: ...

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None: ...

    def log_files(self, paths: list[Path]) -> None: ...

    def finish(self) -> None: ...


class MultiLogger:
    """Fans every call out to several loggers, in order; ``loggers`` maps the config's keys
    (``csv``, ``tensorboard``, ...) to them."""

    def __init__(self, loggers: dict[str, Logger] | None = None) -> None:
        self.loggers = dict(loggers or {})

    @property
    def run_ids(self) -> dict[str, str]:
        """Each tracker's run id by key (what a checkpoint keeps, so that a resumed run continues them)."""
        return {key: logger.run_id for key, logger in self.loggers.items() if logger.run_id is not None}

    @property
    def run_id(self) -> str | None:
        """The first tracker's run id (None without a tracker that has ids)."""
        return next(iter(self.run_ids.values()), None)

    def log_config(self, config: dict) -> None:
        for logger in self.loggers.values():
            logger.log_config(config)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        for logger in self.loggers.values():
            logger.log_epoch(epoch, metrics)

    def log_files(self, paths: list[Path]) -> None:
        for logger in self.loggers.values():
            logger.log_files(paths)

    def finish(self) -> None:
        for logger in self.loggers.values():
            logger.finish()


def open_loggers(
    makers: dict[str, Callable[..., Logger]], run_dir: Path, run_ids: dict[str, str], name: str | None
) -> MultiLogger:
    """Build each logger as ``make(run_dir, run_id=run_ids.get(key), name=name)``, in order; when one
    fails, the ones already started are finished before the error goes on."""
    loggers = MultiLogger()
    try:
        for key, make in makers.items():
            loggers.loggers[key] = make(run_dir, run_id=run_ids.get(key), name=name)
    except BaseException:
        loggers.finish()
        raise
    return loggers


__all__ = [
    "WANDB_MODES",
    "CSVLogger",
    "Logger",
    "MLflowLogger",
    "MultiLogger",
    "TensorBoardLogger",
    "WandbLogger",
    "open_loggers",
]
