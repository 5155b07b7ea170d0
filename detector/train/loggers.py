"""Experiment loggers for the training loop (rank 0 only): a local CSV + plot, and Weights & Biases.

The loop talks to one :class:`MultiLogger`, built by the ``logger`` config's ``_target_``
(:func:`csv_loggers` or :func:`wandb_loggers`); every logger follows the small :class:`Logger`
protocol, so a new tracker is one more class and one more factory.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from pathlib import Path
from typing import Any, Protocol

from detector.images import save_figure
from detector.runs import write_text_atomic

WANDB_MODES = ("online", "offline", "disabled")


class Logger(Protocol):
    """What the training loop calls, once per run (config, files, finish) or once per epoch."""

    run_id: str | None  # the tracker's run id, stored in checkpoints so that a resumed run continues it

    def log_config(self, config: dict) -> None: ...

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None: ...

    def log_files(self, paths: list[Path]) -> None: ...

    def finish(self) -> None: ...


class CSVLogger:
    """``run_dir/metrics.csv`` (one row per epoch) and ``run_dir/results.png`` (one plot per metric).

    Columns are ``epoch`` then the metric keys in first-seen order; a key first seen in a later epoch
    gets an empty cell in earlier rows. With ``resume_rows`` an existing ``metrics.csv`` is continued:
    its rows before the first epoch logged by this logger are kept and the rest are replaced, so a
    resumed run never repeats an epoch.
    """

    run_id: str | None = None

    def __init__(self, run_dir: Path, resume_rows: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.csv_path = self.run_dir / "metrics.csv"
        self.png_path = self.run_dir / "results.png"
        self._columns: list[str] = []  # metric keys, without "epoch"
        self._rows: dict[int, dict[str, str]] = {}  # epoch -> column -> cell text
        self._first_epoch: int | None = None
        if resume_rows and self.csv_path.is_file():
            self._read_existing()

    def log_config(self, config: dict) -> None:
        """Nothing to do: the run directory already holds the resolved config."""

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """Add (or replace) the row for ``epoch``, then rewrite the CSV and the plot."""
        if self._first_epoch is None:
            self._first_epoch = epoch
            self._rows = {e: row for e, row in self._rows.items() if e < epoch}
        for key in metrics:
            if key != "epoch" and key not in self._columns:
                self._columns.append(key)
        self._rows[epoch] = {key: _format(value) for key, value in metrics.items() if key != "epoch"}
        write_text_atomic(self.csv_path, self._csv_text())
        self._plot()

    def log_files(self, paths: list[Path]) -> None:
        """Nothing to do: the files are already in the run directory."""

    def finish(self) -> None:
        """Nothing to do: every epoch was written when logged."""

    def _read_existing(self) -> None:
        """Load the rows of an earlier ``metrics.csv``; rows without a readable epoch are dropped."""
        with open(self.csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            self._columns = [c for c in reader.fieldnames or [] if c and c != "epoch"]
            for row in reader:
                try:
                    epoch = int(row.get("epoch") or "")
                except ValueError:
                    continue
                self._rows[epoch] = {c: row.get(c) or "" for c in self._columns}

    def _csv_text(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["epoch", *self._columns], restval="", lineterminator="\n")
        writer.writeheader()
        for epoch in sorted(self._rows):
            writer.writerow({"epoch": epoch, **self._rows[epoch]})
        return buffer.getvalue()

    def _plot(self) -> None:
        """Redraw ``results.png``: one small subplot per metric against epoch, on a 2-row grid."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n = len(self._columns)
        if n == 0:
            return
        rows = 1 if n == 1 else 2
        cols = math.ceil(n / rows)
        fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.4 * rows), dpi=100, squeeze=False)
        try:
            for ax, key in zip(axes.flat, self._columns):
                cells = [(e, _number(row.get(key))) for e, row in sorted(self._rows.items())]
                points = [(e, v) for e, v in cells if v is not None]
                if points:
                    epochs, values = zip(*points)
                    ax.plot(epochs, values, marker=".", linewidth=1.5)
                ax.set_title(key, fontsize=9)
                ax.tick_params(labelsize=7)
                ax.grid(alpha=0.3)
            for ax in list(axes.flat)[n:]:
                ax.axis("off")
        except BaseException:
            plt.close(fig)
            raise
        save_figure(fig, self.png_path)


class WandbLogger:
    """A Weights & Biases run whose local files live in ``run_dir/wandb``.

    ``mode`` is ``online``, ``offline`` (everything stays in ``run_dir/wandb/offline-run-*``; upload
    it later with ``wandb sync``) or ``disabled`` (a no-op run; nothing is written). Passing the
    ``run_id`` of an earlier run resumes it. When an online run cannot start (no network, no API
    key), the run goes on offline with a warning, so training never stops for the tracker.
    """

    def __init__(
        self,
        run_dir: Path,
        project: str,
        entity: str | None,
        mode: str,
        tags: list[str],
        run_id: str | None = None,
        name: str | None = None,
    ) -> None:
        import wandb

        if mode not in WANDB_MODES:
            raise ValueError(f"wandb mode must be one of {', '.join(WANDB_MODES)}, got {mode!r}")
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._wandb = wandb
        self._last_epoch: int | None = None
        init = {
            "project": project,
            "entity": entity,
            "dir": str(self.run_dir),
            "id": run_id,
            "name": name,
            "resume": "allow" if run_id else None,
            "tags": list(tags),
            "config": None,
        }
        try:
            self._run = wandb.init(mode=mode, settings=_settings(wandb), **init)
        except wandb.errors.Error as error:
            if mode != "online":
                raise
            where = self.run_dir / "wandb"
            message = f"wandb could not start an online run ({error}); logging offline to {where} instead"
            warnings.warn(f"{message}: upload it later with `wandb sync`", stacklevel=2)
            self._run = wandb.init(mode="offline", settings=_settings(wandb), **init)

    @property
    def run_id(self) -> str | None:
        """The wandb run id (pass it back as ``run_id`` to resume this run)."""
        return self._run.id

    def log_config(self, config: dict) -> None:
        """Merge ``config`` (plain, resolved values) into the run's config."""
        self._run.config.update(dict(config), allow_val_change=True)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """One history row per epoch, at ``step=epoch``."""
        self._run.log({**metrics, "epoch": epoch}, step=epoch)
        self._last_epoch = epoch

    def log_files(self, paths: list[Path]) -> None:
        """PNGs become images (under their stem, in the last epoch's row); other files are saved with
        the run, under their path relative to ``run_dir``; a missing file is skipped with a warning."""
        images = {}
        for path in map(Path, paths):
            if not path.is_file():
                warnings.warn(f"wandb: not logging {path}: no such file", stacklevel=2)
            elif path.suffix.lower() == ".png":
                images[path.stem] = self._wandb.Image(str(path))
            else:
                base = self.run_dir if path.resolve().is_relative_to(self.run_dir.resolve()) else path.parent
                self._run.save(str(path.resolve()), base_path=str(base.resolve()), policy="now")
        if images:
            self._run.log(images, step=self._last_epoch)

    def finish(self) -> None:
        """Close the run (an offline run is then complete and ready for ``wandb sync``)."""
        self._run.finish()


class MultiLogger:
    """Fans every call out to several loggers, in order."""

    def __init__(self, loggers: list[Logger]) -> None:
        self.loggers = list(loggers)

    @property
    def run_id(self) -> str | None:
        """The first run id any logger has (the tracker's, since the CSV logger has none)."""
        return next((logger.run_id for logger in self.loggers if logger.run_id is not None), None)

    def log_config(self, config: dict) -> None:
        for logger in self.loggers:
            logger.log_config(config)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        for logger in self.loggers:
            logger.log_epoch(epoch, metrics)

    def log_files(self, paths: list[Path]) -> None:
        for logger in self.loggers:
            logger.log_files(paths)

    def finish(self) -> None:
        for logger in self.loggers:
            logger.finish()


def csv_loggers(run_dir: Path, run_id: str | None = None, name: str | None = None) -> MultiLogger:
    """``logger=csv``: the run directory's ``metrics.csv`` and ``results.png`` only (``run_id`` and
    ``name`` are for trackers; there is none)."""
    return MultiLogger([CSVLogger(run_dir)])


def wandb_loggers(
    run_dir: Path,
    project: str,
    entity: str | None,
    mode: str,
    tags: list[str],
    run_id: str | None = None,
    name: str | None = None,
) -> MultiLogger:
    """``logger=wandb``: the run directory's files and a :class:`WandbLogger` run (``run_id``: the
    run to continue)."""
    return MultiLogger([CSVLogger(run_dir), WandbLogger(run_dir, project, entity, mode, list(tags), run_id, name)])


def _settings(wandb: Any) -> Any:
    """Quiet, self-contained wandb settings. A fresh object per ``wandb.init``: init writes the run id
    into the settings it is given, which would leak into the next run."""
    return wandb.Settings(
        quiet=True,  # only the essentials (where the run is) on the terminal
        console="off",  # leave sys.stdout/stderr alone: the loop's progress output is not rewrapped
        save_code=False,
        symlink=False,  # saved files are hard links or copies, so an offline run dir can be moved and synced
    )


def _format(value: Any) -> str:
    """A metric as CSV text: six significant digits for numbers, empty for None."""
    if value is None:
        return ""
    if isinstance(value, (int, float)) or hasattr(value, "item"):
        return f"{float(value):.6g}"
    return str(value)


def _number(text: str | None) -> float | None:
    """A CSV cell as a number, or None when it is empty or not a number."""
    try:
        return float(text) if text else None
    except ValueError:
        return None


__all__ = ["WANDB_MODES", "CSVLogger", "Logger", "MultiLogger", "WandbLogger", "csv_loggers", "wandb_loggers"]
