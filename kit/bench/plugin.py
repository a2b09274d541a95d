"""pytest fixtures for testing your own model's latency and accuracy in a few lines.

Registered through the ``pytest11`` entry point, so installing the kit makes them available::

    def test_int8_is_fast_enough(kit_latency):
        stats = kit_latency("model.int8.onnx", threads=1)      # timed by pytest-benchmark
        assert stats.p99 < 0.005                                # seconds

    def test_int8_keeps_accuracy(kit_accuracy):
        kit_accuracy("model.int8.onnx", data="heldout.npz", baseline="model.onnx", max_drop=0.01)

Nothing heavy is imported until a fixture is used.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def kit_runtime():
    """Open models on runtimes (``kit_runtime(path, runtime=None, **options)``); all are closed after the test."""
    opened = []

    def open_model(path, runtime=None, **options):
        import kit

        runtime = kit.load(path, runtime, **options)
        opened.append(runtime)
        return runtime

    yield open_model
    for runtime in opened:
        runtime.close()


# Calls timed under --benchmark-disable: enough for a test's own assertions to run on real
# numbers, few enough that the switch still makes a test run fast.
UNBENCHMARKED_CALLS = 5


@pytest.fixture
def kit_latency(benchmark, kit_runtime):
    """Time ``Runtime.run`` on random inputs with pytest-benchmark; returns kit.bench.stats.LatencyStats
    (seconds: min, median, mean, p90, p99, max, median_ci).

    Under ``--benchmark-disable`` pytest-benchmark times nothing, so a few real calls are timed
    instead and the stats say so (``benchmarked`` is False, ``rounds`` is the call count):
    the test still runs its assertions, on numbers that are not a benchmark."""

    def measure(path, runtime=None, *, batch: int = 1, **options):
        from kit.bench.stats import latency_stats
        from kit.core.specs import batch_feeds

        model = kit_runtime(path, runtime, **options)
        feeds = batch_feeds(model.inputs, batch)
        model.run(feeds)  # warm-up: first calls allocate and pick kernels
        benchmark(model.run, feeds)
        if benchmark.enabled:
            return latency_stats(benchmark.stats.stats.data)
        return latency_stats([_timed(model.run, feeds) for _ in range(UNBENCHMARKED_CALLS)], benchmarked=False)

    return measure


def _timed(call, *args) -> float:
    import time

    started = time.perf_counter()
    call(*args)
    return time.perf_counter() - started


@pytest.fixture
def kit_accuracy():
    """Top-1/top-5 on labelled data; with ``baseline`` and a budget (``max_drop`` or ``min_ratio``)
    the test fails when the budget does not hold. Returns kit.check.accuracy.Accuracy, or the
    kit.check.accuracy.BudgetCheck against the baseline."""

    def check(model, data, *, baseline=None, max_drop=None, min_ratio=None, runtime=None, output=None, **options):
        from kit.check.accuracy import check_budget
        from kit.check.harness import evaluate

        result, correct = evaluate(model, data, runtime=runtime, output=output, **options)
        if baseline is None:
            if max_drop is not None or min_ratio is not None:
                raise pytest.UsageError("an accuracy budget needs baseline=...")
            return result
        _, baseline_correct = evaluate(baseline, data, output=output)
        budget = {"max_drop": max_drop} if max_drop is not None else {"min_ratio": min_ratio} \
            if min_ratio is not None else {"max_drop": float("inf")}
        verdict = check_budget(baseline_correct, correct, **budget)
        if not verdict.passed:
            pytest.fail(f"accuracy budget {verdict.rule} failed: {model} top-1 {verdict.candidate:.4f}, "
                        f"baseline {verdict.baseline:.4f} (delta {verdict.delta:+.4f}, 95% CI "
                        f"{verdict.delta_ci[0]:+.4f} to {verdict.delta_ci[1]:+.4f})", pytrace=False)
        return verdict

    return check
