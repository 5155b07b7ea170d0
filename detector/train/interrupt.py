"""Ctrl-C and SIGTERM as a flag the loop checks at optimizer-step boundaries."""

from __future__ import annotations

import signal
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
