"""Soak: 100,000 calls per backend on the digits CNN, memory sampled during the run.

A runtime that leaks per call grows without bound on a device that runs for weeks; a short
benchmark never shows it. Each backend (onnxruntime, tflite fp32, tflite full int8, torch)
first runs WARMUP calls (allocators, kernel caches and thread pools settle), then 100,000
calls through pytest-benchmark as 1,000 rounds of 100 calls: pytest-benchmark keeps one
float per round, so one call per round would itself grow RSS by ~32 bytes per call (measured:
+2.4 to +4 MB over 100,000 rounds, on every backend alike). Every SAMPLE_EVERY calls, between
rounds (outside the timing), three counters are read:

- RSS (VmRSS): what the operating system sees, the number a device's watchdog acts on;
- malloc's bytes in use (glibc mallinfo2): native leaks, even where they reuse freed pages
  that are still resident (this process has freed hundreds of MB after the exports, which
  RSS alone would not see being reused);
- Python's allocated blocks (sys.getallocatedblocks): Python objects kept per call, even
  where they fill freed pymalloc pools.

extra_info["soak"] holds each counter's first and last sample, the growth (last - first)
and the least-squares slope per call. The "harness only" case runs the same loop around a
call that does nothing (the measurement's noise floor), and a harness that keeps one float
per call shows that the tolerances catch the smallest Python leak.

Tolerances, over 100,000 calls, for both the growth and the slope over the run: RSS and
malloc at most 1 MB (10 bytes per call: below any per-call allocation kept - a numpy array
header alone is over 100 bytes - and far above what the runtimes showed here, at most 72 kB
of malloc and no RSS at all); Python's blocks at most 5,000 (one object kept every 20 calls:
the harness itself keeps about 1,600 - pytest-benchmark's 1,000 round timings and the
sampler's 101 samples - and the one-float leak adds 100,000).
"""

import ctypes
import sys

import numpy as np
import pytest

import kit

CALLS = 100_000
CALLS_PER_ROUND = 100
WARMUP = 2_000
SAMPLE_EVERY = 1_000
TOLERANCE = {"rss_bytes": 2**20, "malloc_bytes": 2**20, "python_blocks": 5_000}


class NoRuntime:
    """The harness alone: the same loop around a call that allocates nothing."""

    inputs: list = []

    def run(self, feeds):
        return feeds

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        pass


class LeakyRuntime(NoRuntime):
    """Keeps one float per call: the smallest leak a Python runtime wrapper could have."""

    def __init__(self):
        self.kept = []

    def run(self, feeds):
        self.kept.append(float(len(self.kept)))
        return feeds


BACKENDS = {
    "harness only": None,
    "onnxruntime": lambda models: (models["onnx"], "onnxruntime", {}),
    "tflite fp32": lambda models: (models["fp32"], "tflite", {}),
    "tflite int8": lambda models: (models["int8"], "tflite", {}),
    "torch": lambda models: ("kit.models:make_digits_cnn", "torch", {"input_shapes": "1x1x8x8"}),
}


@pytest.fixture(scope="module")
def models(digits_onnx, digits_tflite):
    return {"onnx": digits_onnx, **digits_tflite}


@pytest.mark.parametrize("backend", BACKENDS)
def test_soak(benchmark, models, backend):
    with _open(backend, models) as runtime:
        result = soak(benchmark, runtime, backend)
    for counter, limit in TOLERANCE.items():
        if result[counter] is not None:
            assert result[counter]["growth"] <= limit and result[counter]["slope_growth"] <= limit, counter


def test_soak_sees_a_leak_of_one_float_per_call(benchmark):
    with LeakyRuntime() as runtime:
        result = soak(benchmark, runtime, "harness keeping one float per call")
    assert result["rss_bytes"]["growth"] > TOLERANCE["rss_bytes"]
    assert result["python_blocks"]["growth"] > 10 * TOLERANCE["python_blocks"]
    assert result["python_blocks"]["slope"] == pytest.approx(1.0, abs=0.05)  # one float object per call


def soak(benchmark, runtime, label: str) -> dict:
    """WARMUP untimed calls, then CALLS timed ones with the counters sampled; their growth, also in extra_info."""
    from kit.core.specs import random_feeds

    if benchmark.disabled:
        pytest.skip("the soak is pytest-benchmark's rounds; run it without --benchmark-disable")
    feeds = random_feeds(runtime.inputs, seed=0)
    for _ in range(WARMUP):
        runtime.run(feeds)
    sampler = Sampler(SAMPLE_EVERY, CALLS_PER_ROUND)
    benchmark.group = f"soak: {CALLS:,} calls, digits CNN, 1 thread (time per call)"
    benchmark.pedantic(runtime.run, args=(feeds,), teardown=sampler, rounds=CALLS // CALLS_PER_ROUND,
                       iterations=CALLS_PER_ROUND)
    result = sampler.growth()
    assert result["calls"] == CALLS and result["samples"] == CALLS // SAMPLE_EVERY + 1
    benchmark.extra_info["soak"] = result
    print(f"\n{label}: " + "; ".join(f"{name} {c['first']:,.0f} -> {c['last']:,.0f} ({c['growth']:+,.0f}, slope "
                                      f"{c['slope']:+.3f}/call)" for name, c in result.items()
                                      if isinstance(c, dict)))
    return result


class Sampler:
    """pytest-benchmark's teardown (run after each round): counts calls, reads the counters every ``every``."""

    def __init__(self, every: int, per_round: int):
        self.every, self.per_round, self.calls = every, per_round, 0
        self.samples = [(0, *counters())]

    def __call__(self, *args):
        self.calls += self.per_round
        if self.calls % self.every == 0:
            self.samples.append((self.calls, *counters()))

    def growth(self) -> dict:
        calls, *columns = (np.array(column, dtype=np.float64) for column in zip(*self.samples))
        result = {"calls": int(calls[-1]), "samples": len(self.samples)}
        for name, values in zip(("rss_bytes", "malloc_bytes", "python_blocks"), columns):
            if np.isnan(values).any():
                result[name] = None  # not readable here (mallinfo2 is glibc's)
                continue
            slope = float(np.polyfit(calls, values, 1)[0])
            result[name] = {"first": values[0], "last": values[-1], "peak": values.max(),
                            "growth": values[-1] - values[0], "slope": slope, "slope_growth": slope * calls[-1]}
        return result


def counters() -> tuple[float, float, float]:
    return _rss_bytes(), _malloc_bytes(), float(sys.getallocatedblocks())


def _rss_bytes() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024.0
    return float("nan")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                    "fsmblks", "uordblks", "fordblks", "keepcost")]


def _malloc_bytes() -> float:
    """Bytes malloc has handed out and not had back, all arenas plus mmapped blocks (glibc >= 2.33)."""
    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return float("nan")
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return float(info.uordblks + info.hblkhd)


def _open(backend: str, models: dict):
    if BACKENDS[backend] is None:
        return NoRuntime()
    path, runtime_name, options = BACKENDS[backend](models)
    return kit.load(path, runtime_name, threads=1, **options)
