"""One benchmark variant, run by pytest with pytest-benchmark in a process of its own.

``kit bench`` starts ``python -m pytest kit/bench_case.py`` once per (model, runtime) with
the variant described in the environment variable KIT_BENCH_SPEC (JSON), so backends
never share a process (their thread pools slow each other). Besides the latency rounds
it records load time, first-inference time, peak memory, and the outputs on the
fidelity data (saved to an .npz the parent compares with the baseline's).
"""

from __future__ import annotations

import json
import os
import resource
import time

import numpy as np

SPEC_VARIABLE = "KIT_BENCH_SPEC"


def test_variant(benchmark):
    from kit.harness import open_model_data, run_dataset
    from kit.runtimes.registry import create
    from kit.specs import random_feeds

    spec = json.loads(os.environ[SPEC_VARIABLE])
    rss_before = _peak_rss_mb()
    started = time.perf_counter()
    runtime = create(spec["model"], spec["runtime"], **spec["options"]).load()
    load_s = time.perf_counter() - started
    batch = {s.shape[0]: spec["batch"] for s in runtime.inputs if s.dynamic_batch}
    feeds = random_feeds(runtime.inputs, seed=0, **batch)
    started = time.perf_counter()
    runtime.run(feeds)
    first_s = time.perf_counter() - started

    benchmark.group = spec["group"]
    benchmark(runtime.run, feeds)

    dataset = open_model_data(spec["model"], spec["fidelity_data"], runtime)
    outputs, labels = run_dataset(runtime, dataset, batch_size=64)
    arrays = {f"output.{name}": array for name, array in outputs.items()}
    if labels is not None:
        arrays["labels"] = labels
    with open(spec["outputs_file"], "wb") as handle:
        np.savez(handle, **arrays)
    benchmark.extra_info["kit"] = {
        "model": spec["model"], "runtime": spec["runtime"], "runtime_info": runtime.info,
        "batch": spec["batch"] if batch else int(next(iter(feeds.values())).shape[0]),
        "load_s": load_s, "first_inference_s": first_s,
        "peak_rss_mb": _peak_rss_mb(), "rss_before_load_mb": rss_before,
        "inputs": [s.to_dict() for s in runtime.inputs],
    }
    runtime.close()


def _peak_rss_mb() -> float:
    """This process's peak resident memory.

    Linux: VmHWM, the high-water mark of this process image. Not ru_maxrss: the kernel
    carries that across execve, so a worker started from a parent holding torch would
    report the parent's memory.
    """
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 1024 / (1024 if os.uname().sysname == "Darwin" else 1)
