"""Ctrl-C and SIGTERM as a flag the loop checks at optimizer-step boundaries; signals whose handlers
raise, held back while a batch is being trained on."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


class Interrupt:
    """Inside ``with Interrupt() as interrupt``, SIGINT and SIGTERM set ``interrupt.signal`` instead
    of stopping the process; the previous handlers come back on exit."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interrupt:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@contextmanager
def deferred(signum: int) -> Iterator[None]:
    """Run the block with ``signum``'s Python handler held back: a signal that arrives inside calls the
    handler on leaving the block instead (whatever it raises is raised there). The training loop runs
    each batch inside ``deferred(SIGCHLD)``: PyTorch's loader raises a dead worker's error from its
    SIGCHLD handler, which would otherwise land anywhere, in the middle of an optimizer step too.
    Outside the main thread, or with no Python handler set, the block runs as it is."""
    previous = signal.getsignal(signum)
    if not callable(previous) or threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[FrameType | None] = []
    signal.signal(signum, lambda s, frame: arrived.append(frame))
    try:
        yield
    finally:
        signal.signal(signum, previous)
        if arrived:
            previous(signum, arrived[-1])
