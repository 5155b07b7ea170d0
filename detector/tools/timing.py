"""Timing for the tools, on ``torch.utils.benchmark``: its ``Timer`` for repeated calls (untimed
warm-up calls first, the accelerator synchronised around the timed block, garbage collection off)
and its accelerator-synchronising clock for single passes (a whole validation, a loader epoch, a
training epoch), whose repetition would be too costly for a warm-up of their own.

:func:`alternate` runs two sides in turn (ours first in even repeats, theirs first in odd ones)
after untimed warm-up measurements, so both see the same machine conditions.
"""

from __future__ import annotations

import functools
import logging
import statistics
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch

SIDES = ("ours", "ultralytics")

Measure = Callable[[], float]  # one measurement of one side: a throughput or a time
Alternate = Callable[[Measure, Measure], dict[str, list[float]]]  # alternate() with its settings bound

__all__ = ["SIDES", "Alternate", "Measure", "alternate", "clock", "median_ms", "seconds", "seconds_per_call"]


@functools.cache
def _benchmark() -> ModuleType:
    """``torch.utils.benchmark``, imported on first use. Its import also loads the C++-extension
    builder, which logs a notice on machines whose torch has CUDA support but no CUDA runtime; the
    Python timers used here compile nothing, so that notice is kept out of the output."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        import torch.utils.benchmark as benchmark
    finally:
        logger.setLevel(level)
    return benchmark


def clock() -> float:
    """Seconds on ``torch.utils.benchmark``'s clock, which first waits for the current accelerator's
    queued work (CUDA, MPS, ... are asynchronous)."""
    return float(_benchmark().timer())


def seconds_per_call(call: Callable[[], object], number: int) -> float:
    """Mean seconds per call of ``number`` calls, timed by ``torch.utils.benchmark.Timer`` (two untimed
    calls first) with the torch CPU thread count as it is now."""
    timer = _benchmark().Timer(stmt="call()", globals={"call": call}, num_threads=torch.get_num_threads())
    return float(timer.timeit(number).mean)


def seconds(call: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds of one call of ``call`` (accelerator synchronised at both ends) and what it returned."""
    start = clock()
    result = call()
    return clock() - start, result


@torch.inference_mode()
def median_ms(call: Callable[[], object], warmup: int = 10, repeats: int = 50) -> float:
    """Median milliseconds of one call over ``repeats`` calls, after ``warmup`` untimed calls."""
    for _ in range(max(warmup, 0)):
        call()
    return 1000.0 * statistics.median(seconds(call)[0] for _ in range(max(repeats, 1)))


def alternate(
    ours: Measure,
    theirs: Measure,
    repeats: int,
    warmup: int,
    threads: int | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> dict[str, list[float]]:
    """``warmup`` untimed calls of each, then ``repeats`` measurements of each, in turn: ours first in
    even repeats, theirs first in odd ones. ``threads`` (if given) is the torch CPU thread count
    set before every call. Returns the measurements by side."""
    measures = {"ours": ours, "ultralytics": theirs}

    def call(side: str) -> float:
        if threads is not None:
            torch.set_num_threads(threads)
        return measures[side]()

    for _ in range(warmup):
        for side in SIDES:
            call(side)
    results: dict[str, list[float]] = {side: [] for side in SIDES}
    for r in range(repeats):
        for side in SIDES if r % 2 == 0 else SIDES[::-1]:
            value = call(side)
            results[side].append(value)
            log(f"  repeat {r + 1}/{repeats} {side:>11}: {value:.4g}")
    return results
