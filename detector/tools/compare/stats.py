"""Statistics of a multi-seed head-to-head: mean and sample standard deviation per side, and the
paired per-seed ratio (ours / theirs) and difference (ours - theirs) with a Student-t interval over
the seeds. Plain numbers in and out (no torch); ``nan`` marks what cannot be computed (a ratio over
a zero, a deviation or an interval of one seed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

LEVEL = 0.95  # the confidence of every interval


def t_quantile(df: int, level: float = LEVEL) -> float:
    """The two-sided Student-t quantile ``t_{(1 + level) / 2, df}`` (scipy)."""
    from scipy.stats import t

    return float(t.ppf((1 + level) / 2, df))


def mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else math.nan


def sample_sd(values: Sequence[float]) -> float:
    """Standard deviation with ``ddof=1``; ``nan`` for fewer than two values."""
    if len(values) < 2:
        return math.nan
    m = mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (len(values) - 1))


@dataclass(frozen=True)
class Interval:
    """A mean over seeds and its t-interval (``low`` and ``high`` are ``nan`` for one seed)."""

    mean: float
    low: float
    high: float


def t_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """``mean +- t_{(1+level)/2, n-1} * sd / sqrt(n)`` over ``values`` (one per seed)."""
    n = len(values)
    m = mean(values)
    if n < 2:
        return Interval(m, math.nan, math.nan)
    half = t_quantile(n - 1, level) * sample_sd(values) / math.sqrt(n)
    return Interval(m, m - half, m + half)


def ratio(a: float, b: float) -> float:
    return a / b if b != 0 else math.nan


@dataclass(frozen=True)
class Paired:
    """One metric over the same seeds for both sides."""

    ours: list[float]
    theirs: list[float]

    def __post_init__(self) -> None:
        if len(self.ours) != len(self.theirs) or not self.ours:
            raise ValueError(
                f"paired statistics need the same seeds on both sides, got {len(self.ours)} and {len(self.theirs)}"
            )

    @property
    def n(self) -> int:
        return len(self.ours)

    @property
    def ratios(self) -> list[float]:
        """Per seed, ours / theirs (``nan`` where theirs is 0)."""
        return [ratio(o, t) for o, t in zip(self.ours, self.theirs)]

    @property
    def differences(self) -> list[float]:
        """Per seed, ours - theirs."""
        return [o - t for o, t in zip(self.ours, self.theirs)]

    def ratio_interval(self, level: float = LEVEL) -> Interval:
        """The mean of the per-seed ratios and its t-interval."""
        return t_interval(self.ratios, level)

    def difference_interval(self, level: float = LEVEL) -> Interval:
        """The mean of the per-seed differences and its t-interval."""
        return t_interval(self.differences, level)


@dataclass(frozen=True)
class Summary:
    """One metric's summary row: mean and sd per side, the paired ratio and difference with their
    t-intervals (``paired`` false: the ratio of the two means, no interval, no difference)."""

    metric: str
    n: int
    ours_mean: float
    ours_sd: float
    theirs_mean: float
    theirs_sd: float
    ratio: Interval
    difference: Interval | None
    paired: bool


def summarize(metric: str, values: Paired, paired: bool = True, level: float = LEVEL) -> Summary:
    """``paired``: the mean of per-seed ratios and differences, each with its t-interval (accuracy);
    otherwise the ratio of the means (throughput, time)."""
    ours_mean, theirs_mean = mean(values.ours), mean(values.theirs)
    if paired:
        ratio_ci, difference = values.ratio_interval(level), values.difference_interval(level)
    else:
        ratio_ci, difference = Interval(ratio(ours_mean, theirs_mean), math.nan, math.nan), None
    return Summary(
        metric,
        values.n,
        ours_mean,
        sample_sd(values.ours),
        theirs_mean,
        sample_sd(values.theirs),
        ratio_ci,
        difference,
        paired,
    )
