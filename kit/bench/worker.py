"""One benchmark variant, run by pytest with pytest-benchmark in a process of its own.

``kit bench`` starts ``python -m pytest kit/bench/worker.py`` once per (model, runtime) with
the variant described in the environment variable KIT_BENCH_SPEC (JSON), so backends
never share a process (their thread pools slow each other). Each round is one call
(``iterations=1``), so percentiles are of single calls, and the number of rounds comes
from the time budget. Besides the rounds it records load time, first-inference time and
peak memory, then the outputs on the fidelity data (saved to an .npz the parent compares
with the baseline's).

The module is also loaded as a pytest plugin (``-p kit.bench.worker``): through
pytest-benchmark's hooks the JSON it writes carries the variant's name, the kit's
environment in ``machine_info`` and the git commit of the folder the user ran
``kit bench`` from (the worker itself runs in a scratch folder).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import time
from pathlib import Path

SPEC_VARIABLE = "KIT_BENCH_SPEC"
MIN_ROUNDS = 10  # even a slow model gets this many rounds: a median of fewer is not worth printing


def test_variant(benchmark):
    from kit.check.runner import run
    from kit.core.specs import batch_feeds
    from kit.runtimes.registry import create

    spec = _spec()
    rss_before = _memory_mb("VmRSS")
    runtime = create(spec["model"], spec["runtime"], **spec["options"])
    runtime.require()  # import the runtime library before the clock starts: load time is the model's
    load_s = _timed(runtime.load)
    feeds = batch_feeds(runtime.inputs, spec["batch"])
    first_s = _timed(runtime.run, feeds)
    rounds, capped = _rounds(spec, runtime.run, feeds)

    benchmark.group = spec["group"]
    with _sampled(spec) as power:
        benchmark.pedantic(runtime.run, args=(feeds,), rounds=rounds, iterations=1, warmup_rounds=_warmup(rounds))
    peak = _memory_mb("VmHWM")  # before the fidelity pass adds the kit's own arrays
    throughput = None
    if spec.get("streams"):  # after the single-stream rounds and the memory reading, before fidelity
        from kit.bench.throughput import measure

        throughput = measure(runtime, lambda **extra: create(spec["model"], spec["runtime"], **{
            **spec["options"], **extra}).load(), feeds, spec["streams"], spec["max_time"], spec["max_rounds"])

    # Saved for the driver, which compares every variant's results with the baseline's.
    if spec["detect"]:  # detection data: the images through the detector, its boxes saved beside
        from kit import tasks
        from kit.bench.driver import DETECTIONS
        from kit.check.detection import detect_with
        from kit.core import provenance

        # A model with NMS in its graph outputs as many detections as it finds: no raw outputs to pair.
        raw = (provenance.read(spec["model"]).get("task") or {}).get("nms") != "graph"
        found, results = detect_with(runtime, spec["model"], spec["fidelity_data"], tasks.from_dict(spec["detect"]),
                                     preprocess=_preprocess_of(spec), keep=raw)
        results.save(spec["outputs_file"])
        found.save(spec["outputs_file"] + DETECTIONS)
        description = spec["fidelity_data"]
    else:
        dataset = _fidelity_dataset(spec, runtime)
        run([runtime], dataset.batches(64, pad=False), keep=True).save(spec["outputs_file"])
        description = dataset.description
    dynamic = all(s.dynamic_batch for s in runtime.inputs)
    benchmark.extra_info["kit"] = {
        "model": spec["display_model"], "runtime": spec["runtime"], "name": spec["name"],
        "runtime_info": runtime.info,
        "batch": spec["batch"] if dynamic else None, "load_s": load_s, "first_inference_s": first_s,
        "peak_rss_mb": peak, "rss_before_load_mb": rss_before, "max_time_s": spec["max_time"],
        "rounds_capped": capped, "fidelity_data": description,
        "inputs": [s.to_dict() for s in runtime.inputs], "outputs_file": spec["outputs_file"],
        # Backends that time their own stages (TensorRT: host-to-device, compute, device-to-host).
        **({"stage_ms": runtime.stage_ms} if runtime.stage_ms else {}),
        **({"power": power.summary(rounds + _warmup(rounds))} if spec.get("power") else {}),
        "sustained": spec.get("sustained", False),
        **({"throughput": throughput} if throughput else {}),
    }
    runtime.close()


def test_pipeline(benchmark):
    """With --pipeline: each round is one frame of the video or folder (read in its own thread,
    looping at the end) through the whole loop as kit run --source runs it, plus drawing and a
    JPEG encoding (what kit serve streams); every stage timed as in kit.deploy.stream."""
    import pytest

    spec = _spec()
    if not spec.get("pipeline"):
        pytest.skip("no --pipeline")
    import cv2

    from kit.deploy.sources import open_source
    from kit.deploy.stream import STAGES, Annotator, FrameProcessor, stage_stats
    from kit.runtimes.registry import load

    times: dict[str, list[float]] = {stage: [] for stage in STAGES}
    with load(spec["model"], spec["runtime"], **spec["options"]) as runtime:
        processor = FrameProcessor.as_recorded(runtime, _preprocess_of(spec))
        source = open_source(spec["pipeline"], loop=True, prepare=processor.prepare)
        annotate, frames = Annotator(processor.task), iter(source)

        def one_frame():
            began = time.perf_counter()
            frame = next(frames)
            got = time.perf_counter()
            processed = processor(frame.image, frame.prepared, frame.prepare_ms)
            drawing = time.perf_counter()
            drawn = annotate(frame.image, processed)
            drawn_at = time.perf_counter()
            cv2.imencode(".jpg", drawn)
            ms = {**processed.ms, "capture": frame.read_ms, "wait": (got - began) * 1e3,
                  "draw": (drawn_at - drawing) * 1e3, "write": (time.perf_counter() - drawn_at) * 1e3}
            for stage, value in ms.items():
                times[stage].append(value)

        rounds, capped = _rounds(spec, one_frame)
        benchmark.group = spec["group"]
        try:
            benchmark.pedantic(one_frame, rounds=rounds, iterations=1, warmup_rounds=_warmup(rounds))
        finally:
            source.close()
        dropped, description = source.dropped, source.description
    timed = {stage: values[-rounds:] for stage, values in times.items()}  # the benchmark's rounds only
    stages = stage_stats(timed, benchmark.stats.stats.mean * 1e3)
    benchmark.extra_info["kit"] = {
        "model": spec["display_model"], "runtime": spec["runtime"], "name": f"{spec['name']} pipeline",
        "max_time_s": spec["max_time"], "rounds_capped": capped,
        "pipeline": {"source": description, "frames_dropped": dropped, "stages": stages,
                     "outside_model": 1 - stages["inference"]["share"]},
    }


def _rounds(spec: dict, call, *args) -> tuple[int, bool]:
    """Rounds of ``call`` for --max-time from its fastest of three calls (at least MIN_ROUNDS, at
    most max_rounds: see kit.bench.driver.MAX_ROUNDS), and whether that cap cut them."""
    per_call = min(_timed(call, *args) for _ in range(3))
    wanted = max(MIN_ROUNDS, spec["max_time"] / max(per_call, 1e-7))
    return int(min(spec["max_rounds"], wanted)), wanted > spec["max_rounds"]


def _warmup(rounds: int) -> int:
    return min(10, rounds)


class _sampled:
    """With --power: power, temperatures and clocks read in a thread while the rounds run;
    ``summary(calls)`` over exactly that window."""

    def __init__(self, spec: dict):
        self.spec, self.recorder = spec, None

    def __enter__(self):
        if self.spec.get("power"):
            from kit.bench.samplers import SPAWNING_INTERVAL, Recorder, Sensors

            self.sensors = Sensors(self.spec.get("power_command"), interval=self.spec["power_interval"])
            # A reading that starts processes (vcgencmd, a meter's command) costs the board more: fewer of them.
            interval = max(self.spec["power_interval"], SPAWNING_INTERVAL) if self.sensors.spawns else \
                self.spec["power_interval"]
            self.recorder = Recorder(self.sensors, interval).__enter__()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc_info):
        self.ended = time.perf_counter()
        if self.recorder is not None:
            try:
                self.recorder.__exit__(*exc_info)
            finally:  # tegrastats ends with the recording, whatever its last reading did
                self.sensors.close()

    def summary(self, calls: int) -> dict:
        from kit.bench.samplers import summarize

        return {**summarize(self.recorder.readings, self.started, self.ended, calls),
                "sensors": self.sensors.describe()}


def pytest_benchmark_update_machine_info(config, machine_info):
    from kit.core import environment

    machine_info["kit_environment"] = environment.describe(_spec()["threads"])


def pytest_benchmark_generate_commit_info(config):
    """pytest-benchmark's own commit info, read in the user's folder rather than the scratch one."""
    from pytest_benchmark.utils import get_commit_info

    with _working_directory(_spec()["user_cwd"]):
        return get_commit_info(config.getoption("benchmark_project_name", None))


def pytest_benchmark_update_json(config, benchmarks, output_json):
    spec = _spec()
    for entry in output_json["benchmarks"]:  # the variant's name, not this file's test function
        # NAME[runtime], or NAME[runtime] pipeline (a round that failed wrote no kit fields)
        name = entry["extra_info"].get("kit", {}).get("name", spec["name"])
        entry.update(name=name, fullname=name, param=spec["runtime"], params={"runtime": spec["runtime"]})


def _spec() -> dict:
    return json.loads(os.environ[SPEC_VARIABLE])


@contextlib.contextmanager
def _working_directory(path: str):
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _fidelity_dataset(spec: dict, runtime):
    """The fidelity data for this model: images preprocessed as it records, or, when it records
    nothing, as the parent decided for every such model (--preprocess text or another model's spec)."""
    from kit.check.harness import open_model_data
    from kit.core import provenance
    from kit.data.datasets import open_data
    from kit.data.preprocess import Preprocess

    shared, data = spec["preprocess"], spec["fidelity_data"]
    if shared is None or not Path(data).is_dir() or provenance.read(spec["model"]).get("preprocess"):
        return open_model_data(spec["model"], data, runtime)
    defaults = Preprocess.for_input(runtime.inputs[0])
    # Text: key=value changes to this input's defaults. A recorded spec: laid out as this input is.
    steps = defaults.updated(shared) if isinstance(shared, str) else Preprocess.from_dict({**shared,
                                                                                         "layout": defaults.layout})
    return open_data(data, runtime.inputs, steps.to_dict())


def _preprocess_of(spec: dict):
    """The shared image preprocessing for a model that records none (text, or another model's spec)."""
    from kit.data.preprocess import Preprocess

    shared = spec["preprocess"]
    return Preprocess.from_dict(shared) if isinstance(shared, dict) else shared


def _timed(call, *args) -> float:
    started = time.perf_counter()
    call(*args)
    return time.perf_counter() - started


def _memory_mb(field: str) -> float:
    """VmHWM (peak) or VmRSS (now) of this process image, in MB.

    Not ru_maxrss for the peak: the kernel carries that across execve, so a worker
    started from a parent holding torch would report the parent's memory.
    """
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 1024 / (1024 if os.uname().sysname == "Darwin" else 1)
