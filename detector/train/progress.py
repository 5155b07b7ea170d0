"""The epoch's progress bar (rich) and its per-batch text."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from detector.train.state import LoopState


def batch_info(state: LoopState, lr: float, instances: int, world_size: int = 1) -> str:
    """Running loss means of the epoch (the criterion's parts, in its order), the first group's lr, the
    batch's instances, images/s over all processes."""
    means = "".join(f"{k} {v / max(state.images, 1):.3f} " for k, v in state.sums.items())
    rate = state.images / max(state.seconds, 1e-9)
    return f"{means}lr {lr:.2e} inst {instances} {rate * world_size:.1f} img/s"


class EpochProgress:
    """One bar per epoch on ``console`` (nothing when ``enabled`` is false: the other ranks)."""

    def __init__(self, console: Console, enabled: bool = True, world_size: int = 1) -> None:
        self.console = console
        self.enabled = enabled
        self.world_size = world_size
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    @contextmanager
    def epoch(self, epoch: int, epochs: int, batches: int, done: int) -> Iterator[None]:
        """The bar of ``epoch`` (0-based) of ``epochs``: ``done`` of ``batches`` already done."""
        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            disable=not self.enabled,
            transient=False,
        )
        with bar:
            self._bar = bar
            self._task = bar.add_task(f"epoch {epoch + 1}/{epochs}", total=batches, completed=done, info="")
            try:
                yield
            finally:
                self._bar = self._task = None

    def update(self, state: LoopState, lr: float, instances: int) -> None:
        """After a batch: the bar at ``state.iteration``, with :func:`batch_info`."""
        if self.enabled and self._bar is not None and self._task is not None:
            info = batch_info(state, lr, instances, self.world_size)
            self._bar.update(self._task, completed=state.iteration, info=info)
