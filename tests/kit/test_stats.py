"""Latency statistics on known samples."""

import numpy as np
import pytest

from kit.bench.stats import latency_stats, median_ci_ranks
from kit.core.errors import InputError


@pytest.mark.parametrize("n, ranks", [
    (100, (40, 61)),  # Conover's table for the median's 95% interval
    (20, (6, 15)),
    (10, (2, 9)),
    (6, (1, 6)),      # P(no sample below the median) = 1/64 <= 0.025, P(at most one) = 7/64 > 0.025
    (5, (1, 5)),      # too few for 95%: the whole range, which covers 1 - 2/32 = 93.75%
])
def test_median_interval_ranks(n, ranks):
    assert median_ci_ranks(n) == ranks


@pytest.mark.parametrize("n, coverage", [(100, 0.9648), (6, 0.96875), (5, 0.9375), (1, 0.0)])
def test_interval_coverage_is_reported(n, coverage):
    stats = latency_stats(np.arange(1.0, n + 1))
    assert stats.median_ci_level == pytest.approx(coverage, abs=1e-4)


def test_stats_of_one_to_a_hundred():
    stats = latency_stats(np.arange(100, 0, -1))  # unsorted on purpose
    assert (stats.rounds, stats.min, stats.max) == (100, 1.0, 100.0)
    assert stats.median == 50.5 and stats.mean == 50.5
    assert stats.p90 == pytest.approx(90.1) and stats.p99 == pytest.approx(99.01)
    assert not stats.tail_rounds_short and stats.benchmarked
    assert stats.median_ci == (40.0, 61.0)
    assert stats.stddev == pytest.approx(np.std(np.arange(1, 101), ddof=1))


@pytest.mark.parametrize("n, p99", [
    (99, 98.02),  # 1..99: index 0.99 * 98 = 97.02 of the sorted rounds -> 98 + 0.02 * (99 - 98)
    (10, 9.91),   # 1..10: 9 + 0.91 * (10 - 9)
    (1, 1.0),     # one round: that round
])
def test_p99_of_few_rounds_is_interpolated_and_flagged(n, p99):
    stats = latency_stats(np.arange(1.0, n + 1))
    assert stats.p99 == pytest.approx(p99)
    assert stats.tail_rounds_short and stats.max - 1 <= stats.p99 <= stats.max


def test_no_timings():
    with pytest.raises(InputError, match="no timings"):
        latency_stats([])
