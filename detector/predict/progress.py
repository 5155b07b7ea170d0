"""Progress of a prediction run: a rich bar on a terminal, a plain line every ``interval`` seconds
(and at the end) where the output is a file or a pipe, where a live bar would not show."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class PredictProgress:
    """``with PredictProgress(console, total, "frames") as progress: ... progress.advance()``;
    ``total`` None (a camera, a stream) counts without a bar's end."""

    def __init__(self, console: Console, total: int | None, unit: str = "images", interval: float = 10.0) -> None:
        self.console = console
        self.total = total
        self.unit = unit
        self.interval = interval
        self.done = 0
        self._start = self._last = 0.0
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> PredictProgress:
        self._start = self._last = time.monotonic()
        if self.console.is_terminal:
            self._bar = Progress(
                TextColumn("predict"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(self.unit),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[rate]}"),
                console=self.console,
            )
            self._bar.start()
            self._task = self._bar.add_task("predict", total=self.total, rate="")
        return self

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=self.done, rate=self._rate(now))
        elif now - self._last >= self.interval:
            self._last = now
            self.console.print(self.line(now))

    def print(self, message: str) -> None:
        """A line above the bar (or among the plain lines)."""
        self.console.print(message)

    def line(self, now: float) -> str:
        of = f"/{self.total}" if self.total is not None else ""
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        return f"predict: {self.done}{of} {self.unit}{share}, {now - self._start:.0f} s, {self._rate(now)}"

    def _rate(self, now: float) -> str:
        return f"{self.done / max(now - self._start, 1e-9):.1f} {self.unit}/s"

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
        else:
            self.console.print(self.line(time.monotonic()))
