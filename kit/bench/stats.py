"""Latency statistics from raw timings (pytest-benchmark's per-round data).

Percentiles use numpy's linear interpolation (the default of numpy.percentile). Below 100
rounds p99 still has a value, but an honest one only: it lies between the two slowest
rounds, so read it as "the tail of ``rounds`` calls", not as a 1-in-100 estimate
(``tail_rounds_short`` says so). The confidence interval of the median is
distribution-free: the order statistics whose ranks bound the median with binomial
probability (Conover, Practical Nonparametric Statistics): for n = 100 and 95% it is the
40th to the 61st smallest value. With six rounds or fewer no pair of ranks reaches 95%;
the interval is then the whole range and ``median_ci_level`` says what it does cover.
The interval treats rounds as independent draws from one run: it does not include the
run-to-run variation of a shared machine, which only repeated runs show.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from kit.core.errors import InputError

P99_ROUNDS = 100  # rounds from which p99 has at least one round above it


@dataclass(frozen=True)
class LatencyStats:
    """Seconds per call."""

    rounds: int
    min: float
    median: float
    mean: float
    p90: float
    p99: float  # interpolated; below 100 rounds it lies between the two slowest (see tail_rounds_short)
    max: float
    stddev: float
    median_ci: tuple[float, float]
    median_ci_level: float  # the coverage the interval really has (>= the level asked for, when n allows)
    # False: a few calls timed under --benchmark-disable to keep a test running, not a benchmark.
    benchmarked: bool = True

    @property
    def tail_rounds_short(self) -> bool:
        """True below 100 rounds, where p99 is an interpolation between the slowest rounds."""
        return self.rounds < P99_ROUNDS

    def to_dict(self) -> dict:
        return {**asdict(self), "median_ci": list(self.median_ci)}


def latency_stats(timings, level: float = 0.95, *, benchmarked: bool = True) -> LatencyStats:
    samples = np.sort(np.asarray(timings, dtype=np.float64))
    if samples.size == 0:
        raise InputError("no timings to summarize.", hint="Run at least one round.")
    low, high = median_ci_ranks(samples.size, level)
    return LatencyStats(
        int(samples.size), float(samples[0]), float(np.median(samples)), float(samples.mean()),
        float(np.percentile(samples, 90)), float(np.percentile(samples, 99)),
        float(samples[-1]), float(samples.std(ddof=1)) if samples.size > 1 else 0.0,
        (float(samples[low - 1]), float(samples[high - 1])), ci_coverage(samples.size, low), benchmarked)


def ci_coverage(n: int, low: int) -> float:
    """P(X_(low) <= median <= X_(n+1-low)) for n samples: 1 - 2 P(Binomial(n, 1/2) < low)."""
    below = sum(math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + n * math.log(0.5))
                for i in range(low))
    return max(0.0, 1 - 2 * below)


def median_ci_ranks(n: int, level: float = 0.95) -> tuple[int, int]:
    """1-based ranks (j, k) with P(X_(j) <= median <= X_(k)) >= level for any continuous distribution.

    j is the largest rank with P(Binomial(n, 1/2) < j) <= (1 - level) / 2, and k = n + 1 - j.
    With too few samples for the level, the whole range (1, n) is returned.
    """
    tail = (1 - level) / 2
    cumulative, j = 0.0, 0
    log_half_n = n * math.log(0.5)
    for i in range(n + 1):
        probability = math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + log_half_n)
        if cumulative + probability > tail:
            break
        cumulative += probability
        j = i + 1  # P(count <= i) <= tail, so X_(i+1) is a valid lower bound
    j = max(j, 1)
    return j, n + 1 - j
