"""What the tasks print through: a rich console whose tables read well in a log file, and progress
reports for long work (a bar at a terminal, a line now and then elsewhere).

Rich sizes its output to the terminal; where the output is a file or a pipe it would fall back to 80
columns and wrap every wider table mid-row. :func:`make_console` gives such output room for the
natural width instead (``COLUMNS``, when set, still decides). Library functions never print their
progress: they take a :data:`detector.types.ProgressCallback`, which the task makes here with
:func:`progress_report`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

NATURAL_WIDTH = 10_000  # columns given to output that no terminal shows: wide enough that no table wraps
REPORT_INTERVAL = 30.0  # seconds between progress lines where no terminal shows a bar


def make_console(stderr: bool = False) -> Console:
    """A console on stdout (or stderr): at a terminal, the terminal's width; elsewhere (a file, a pipe,
    a CI log) ``COLUMNS`` when set, else :data:`NATURAL_WIDTH`, so tables keep their natural width."""
    console = Console(stderr=stderr)
    if console.is_terminal or os.environ.get("COLUMNS", "").isdigit():
        return console
    return Console(stderr=stderr, width=NATURAL_WIDTH)


class ProgressReport:
    """``report(done, total)`` after each piece of work. At a terminal: a bar that appears with the
    first report and goes away when closed. Elsewhere: a line ``<what>: done/total <unit> (p%), m:ss``
    once ``interval`` seconds have passed and every ``interval`` seconds after (nothing for shorter
    work), and a last line on closing when any was written."""

    def __init__(
        self,
        console: Console,
        what: str,
        unit: str = "images",
        interval: float = REPORT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.what = what
        self.unit = unit
        self.interval = interval
        self.clock = clock
        self.start = clock()
        self.last_line = self.start
        self.lines = 0  # progress lines written (no terminal)
        self.done = self.total = 0
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        if self.console.is_terminal:
            if self._bar is None:
                self._bar = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn(self.unit),
                    TimeElapsedColumn(),
                    console=self.console,
                    transient=True,
                )
                self._bar.start()
                self._task = self._bar.add_task(self.what, total=total)
            self._bar.update(self._task, completed=done, total=total)  # type: ignore[arg-type]
            return
        now = self.clock()
        if now - self.last_line >= self.interval and done < total:
            self._line(now)

    def _line(self, now: float) -> None:
        self.last_line = now
        self.lines += 1
        seconds = int(now - self.start)
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        self.console.print(
            f"{self.what}: {self.done:,}/{self.total:,} {self.unit}{share}, {seconds // 60}:{seconds % 60:02d}",
            highlight=False,
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self.lines:
            self._line(self.clock())


@contextmanager
def progress_report(
    console: Console, what: str, unit: str = "images", interval: float = REPORT_INTERVAL
) -> Iterator[ProgressReport]:
    """A :class:`ProgressReport` for the work inside the block, closed at its end (also on an error)."""
    report = ProgressReport(console, what, unit, interval)
    try:
        yield report
    finally:
        report.close()
