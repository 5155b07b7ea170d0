"""``logger=csv``: the run directory's own record, ``metrics.csv`` and ``results.png`` (every logger
option writes them, beside its tracker)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from detector.images import save_figure
from detector.runs import write_text_atomic


class CSVLogger:
    """``run_dir/metrics.csv`` (one row per epoch) and ``run_dir/results.png`` (one plot per metric).

    Columns are ``epoch`` then the metric keys in first-seen order; a key first seen in a later epoch
    gets an empty cell in earlier rows. With ``resume_rows`` an existing ``metrics.csv`` is continued:
    its rows before the first epoch logged by this logger are kept and the rest are replaced, so a
    resumed run never repeats an epoch.
    """

    run_id: str | None = None

    def __init__(
        self, run_dir: Path, run_id: str | None = None, name: str | None = None, resume_rows: bool = True
    ) -> None:
        """``run_id`` and ``name`` are the trackers' (a CSV file has neither); they are taken so that
        every logger is built the same way."""
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
