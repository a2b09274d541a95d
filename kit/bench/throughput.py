"""Throughput with several concurrent streams, as OpenVINO's benchmark_app and trtexec's
``--streams`` measure it: every stream calls the model back to back for the same seconds, and
the calls they complete together, over that time, are the throughput. Each call's latency
under that load is kept too (a server's tail is what the load does to it).

A backend whose calls may share one loaded model (``thread_safe``: ONNX Runtime, OpenVINO)
gets one instance for all streams, loaded with its concurrent options where it has them
(OpenVINO: the throughput hint and that many streams); the others get an instance per
stream (a TFLite interpreter serves one call at a time).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from kit.bench.stats import latency_stats


def measure(runtime, make_runtime, feeds: dict, streams: int, seconds: float, max_calls: int) -> dict[str, Any]:
    """``streams`` threads calling ``run(feeds)`` for ``seconds``, all stopped once one of them
    has made ``max_calls`` calls (a bound however fast the model). ``runtime`` is the loaded
    single-stream instance; ``make_runtime(**options)`` loads another with extra options."""
    concurrent = type(runtime).concurrent_options(streams)
    made: list = []
    try:
        if runtime.thread_safe:
            shared = runtime
            if concurrent:
                shared = make_runtime(**concurrent)
                made.append(shared)
            runners = [shared] * streams
        else:
            for _ in range(streams - 1):
                made.append(make_runtime())
            runners = [runtime, *made]
        for runner in dict.fromkeys(runners):  # a first call outside the window (a request's set-up)
            runner.run(feeds)
        calls_per_s, latencies, capped = _drive(runners, feeds, seconds, max_calls)
        ran_as = runners[0].info if runtime.thread_safe else None  # what the backend made of it (its streams)
    finally:
        for extra in made:
            extra.close()
    stats = latency_stats(latencies)
    return {"streams": streams, "shared_model": runtime.thread_safe, "options": concurrent,
            "runtime_info": ran_as, "calls_per_s": calls_per_s, "calls": len(latencies), "capped": capped,
            "latency_s": {key: getattr(stats, key) for key in ("median", "p90", "p99", "mean")}}


def _drive(runners: list, feeds: dict, seconds: float, max_calls: int) -> tuple[float, list[float], bool]:
    """Each runner in its own thread, started together; calls per second from the start to the
    last call's end, every call's latency, and whether the call cap ended it before the time."""
    start_together = threading.Barrier(len(runners) + 1)
    stop = threading.Event()
    timings: list[list[float]] = [[] for _ in runners]
    ends: list[float] = []
    failures: list[BaseException] = []

    def stream(runner, times: list[float]) -> None:
        start_together.wait()
        try:
            while not stop.is_set():
                began = time.perf_counter()
                runner.run(feeds)
                times.append(time.perf_counter() - began)
                if len(times) >= max_calls:
                    stop.set()  # every stream stops: the window closes on the same calls
        except BaseException as error:  # re-raised in the caller's thread
            failures.append(error)
            stop.set()
        finally:
            ends.append(time.perf_counter())

    threads = [threading.Thread(target=stream, args=(runner, times), daemon=True)
               for runner, times in zip(runners, timings)]
    for thread in threads:
        thread.start()
    start_together.wait()
    began = time.perf_counter()
    try:
        stop.wait(seconds)
    finally:  # an interrupt too: no stream is left calling the model
        capped = stop.is_set() and not failures
        stop.set()
        for thread in threads:
            thread.join()
    if failures:
        raise failures[0]
    latencies = [value for times in timings for value in times]
    return len(latencies) / (max(ends) - began), latencies, capped
