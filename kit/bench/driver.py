"""``kit bench``: latency, memory, size and accuracy of each model on each runtime.

pytest-benchmark is the timing engine: each (model, runtime) variant runs in its own
process (kit/bench/worker.py under pytest), and its JSON is merged into one report in
pytest-benchmark's own format, with the kit's fields under ``extra_info["kit"]``, so
``pytest-benchmark compare`` and its histograms work on it. Percentiles and the median's
confidence interval are computed here from the raw per-round timings."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.bench.stats import latency_stats
from kit.check.accuracy import accuracy, top_k_correct
from kit.check.harness import scores_of
from kit.check.metrics import compare_outputs
from kit.check.detection import DetectionRun, is_detection_data, paired_delta
from kit.check.runner import RunResults
from kit.core import provenance
from kit.core.errors import InputError, KitWarning, RunError, RuntimeUnavailableError
from kit.core.fileio import atomic_output, check_output_path, model_size
from kit.data.sources import is_factory_reference

GROUP = "kit bench"


WORKER_SECONDS = 300  # start-up, load and the fidelity pass; the timing rounds add 20x --max-time


# The raw timings go into the JSON and stay in the worker's memory (and so in its peak RSS):
# 20,000 rounds keep both small. A fast model reaches the cap before --max-time runs out; the
# report says so (rounds_capped).
MAX_ROUNDS = 20000
DETECTIONS = ".detections.json"  # beside a worker's outputs: its boxes and the ground truth


MAX_TIME_LIMIT = 3600.0  # seconds of rounds per variant: beyond an hour a run measures the machine's drift
SUSTAINED_ROUNDS = 2_000_000  # --sustained: 16 MB of timings, minutes of a fast model
POWER_INTERVAL = 0.1  # seconds between power and temperature readings
DRIFT_ROUNDS = 100  # fewer rounds than this: no drift reported (a tenth would be under 10)


@dataclass
class Variant:
    model: str
    runtime: str
    options: dict[str, Any] = field(default_factory=dict)
    baseline: bool = False
    label: str = ""  # the model as shown: its file name, or its path where two names collide
    target: str = ""  # onnxruntime:TARGET (a provider), openvino:TARGET (a device); its options are in options
    skipped: tuple[str, str] | None = None  # why the target cannot run here, and what it needs

    @property
    def name(self) -> str:
        return f"{self.label or self.model}[{self.runtime}{':' + self.target if self.target else ''}]"


def plan(models: list[str], runtimes: list[str] | None = None, baseline: str | None = None,
         options: dict[str, Any] | None = None) -> list[Variant]:
    """Every requested model on every requested usable runtime that opens it (baseline first).

    A runtime may name a target (``onnxruntime:XNNPACK``, ``openvino:GPU``): one variant each,
    in the order given; a target this machine lacks is a variant marked ``skipped`` (why, and
    what it needs), not a failure."""
    from kit.runtimes.registry import candidates, get, parse

    if not models:
        raise InputError("expected at least one model to benchmark.", hint="kit bench model.onnx [more models]")
    models = [path for model in models for path in _bundled(model)]
    # An unknown runtime or target fails here, with the list of known ones.
    requested = [parse(text) for text in runtimes or []]
    variants: list[Variant] = []
    for model, is_baseline in [(baseline, True)] * bool(baseline) + [(m, False) for m in models]:
        if not (Path(model).exists() or is_factory_reference(model)):
            raise InputError(f"model {model} does not exist.",
                             hint="Check the path." + (" (--json is a switch; the report file is --save-json FILE.)"
                                                       if str(model).endswith(".json") else ""))
        named = runtimes is not None and not is_baseline  # the baseline runs on the file's default
        opening = [r for r in candidates(model, named) if get(r).availability().usable]
        if named:
            chosen = [(name, target, stands_for) for name, target, stands_for in requested if name in opening]
        else:
            chosen = [(r, "", {}) for r in opening][:1 if is_baseline else None]
        if not chosen:
            wanted = f" among {', '.join(runtimes)}" if runtimes else ""
            raise InputError(f"no usable runtime{wanted} opens {model} (usable here: {', '.join(opening) or 'none'}).",
                             hint="Run `kit runtimes` to see what is installed and how to add more.")
        for runtime, target, stands_for in chosen:
            if any(v.model == model and v.runtime == runtime and v.target == target for v in variants):
                continue  # the baseline listed again among the models
            accepted = get(runtime).accepted_options
            chosen_options = {k: v for k, v in (options or {}).items() if k in accepted} | stands_for
            variants.append(Variant(model, runtime, chosen_options, is_baseline, target=target,
                                    skipped=get(runtime).target_problem(target) if target else None))
    short = {v.model: Path(v.model).name if Path(v.model).is_file() else v.model for v in variants}
    for variant in variants:
        clashes = {m for m, name in short.items() if name == short[variant.model]}
        variant.label = short[variant.model] if len(clashes) == 1 else variant.model
    return variants


def _bundled(model: str) -> list[str]:
    """A bundle stands for every model in it this device can run, and each engine built here
    (in the bundle's order, an engine after its ONNX)."""
    from kit.deploy.bundle import is_bundle, open_folder
    from kit.deploy.choose import runnable

    if not is_bundle(model):
        return [model]
    bundle = open_folder(model)
    choices = runnable(bundle)
    if not choices:
        raise InputError(f"no model in the bundle {model} runs on this device.",
                         hint="kit doctor shows what each model needs and what this device has.")
    order = {m.name: index for index, m in enumerate(bundle.models)}
    return [str(c.path) for c in sorted(choices, key=lambda c: (order[c.model.name], c.runtime == "tensorrt"))]


@dataclass
class BenchReport:
    """pytest-benchmark's JSON document, with the kit's analysis in each benchmark's extra_info."""

    document: dict[str, Any]

    @property
    def benchmarks(self) -> list[dict[str, Any]]:
        return self.document["benchmarks"]

    def rows(self) -> list[dict[str, Any]]:
        """The model calls' results, one per variant."""
        return [b["extra_info"]["kit"] | {"name": b["name"]} for b in self.benchmarks
                if "pipeline" not in b["extra_info"]["kit"]]

    def pipeline_rows(self) -> list[dict[str, Any]]:
        """With --pipeline: each variant's whole frame loop, its stages and the share outside the model."""
        return [b["extra_info"]["kit"] | {"name": b["name"]} for b in self.benchmarks
                if "pipeline" in b["extra_info"]["kit"]]


def bench(
    models: list[str],
    *,
    runtimes: list[str] | None = None,
    baseline: str | None = None,
    data: str | None = None,
    preprocess: str | None = None,
    batch: int = 1,
    threads: int | None = None,
    max_time: float = 2.0,
    max_rounds: int = MAX_ROUNDS,
    options: dict[str, Any] | None = None,
    output_name: str | None = None,
    pipeline: str | None = None,
    power: bool = False,
    power_command: str | None = None,
    sustained: float | None = None,
    streams: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> BenchReport:
    """Measure every variant, each in its own process, and analyse them against the baseline.

    The baseline is ``baseline`` (on its first usable runtime) or else the first variant.
    Fidelity (outputs against the baseline's) is always measured, on ``data`` or 16 random
    inputs (which say little about a quantized model: give real data); task accuracy too
    when ``data`` has labels, scored on ``output_name`` (or the model's only 2-D output).
    Images in a ``data`` folder are preprocessed as each model records; a model that records
    nothing takes ``preprocess`` (``key=value,...``), else what the other models record, else
    its input's defaults, so every variant sees the same pixels.
    Each variant times single calls for ``max_time`` seconds, at least 10 and at most
    ``max_rounds`` of them (``rounds_capped`` in its fields says the cap stopped it first).
    With ``pipeline`` (a video file or image folder), each variant also times whole frames
    through kit run --source's loop, stage by stage (BenchReport.pipeline_rows).
    With ``power`` (or a ``power_command`` printing an external meter's watts), power,
    temperatures and clocks are read while the rounds run (kit.bench.samplers). ``sustained``
    seconds of rounds per variant (up to SUSTAINED_ROUNDS of them) reach thermal steady state;
    every variant reports its latency drift, the last tenth of its rounds against the first.
    With ``streams``, each variant is also driven by that many concurrent callers for as long
    (kit.bench.throughput): calls per second beside the single-stream figure.
    """
    require_pytest_benchmark()
    if sustained is not None:
        max_time, max_rounds = sustained, max(max_rounds, SUSTAINED_ROUNDS)
    if max_rounds < 1:
        raise InputError(f"expected max_rounds >= 1, found {max_rounds}.", hint="Leave it at its default.")
    if batch < 1:
        raise InputError(f"expected --batch >= 1, found {batch}.", hint="Use --batch 1.")
    if streams is not None:
        from kit.runtimes.base import check_threads

        check_threads(streams, "streams", minimum=1)  # bounded as threads are: each stream is one
    if not 0 <= max_time <= MAX_TIME_LIMIT:  # also refuses NaN
        flag = "--sustained" if sustained is not None else "--max-time"
        raise InputError(f"expected {flag} from 0 to {MAX_TIME_LIMIT:.0f} seconds per variant, found {max_time:g}.",
                         hint="A few seconds give thousands of rounds; repeat runs to see run-to-run variation.")
    if pipeline is not None:
        if not Path(pipeline).exists():
            raise InputError(f"--pipeline {pipeline} does not exist.", hint="Give a video file or a folder of images.")
        if batch != 1:
            raise InputError(f"--pipeline runs frames one at a time; found --batch {batch}.", hint="Drop --batch.")
        from kit.deploy.sources import open_source

        open_source(pipeline).close()  # a video OpenCV cannot read is said now, not after the model's rounds
    if data is not None and not (re.fullmatch(r"random:\d+", data) or Path(data).exists()):
        raise InputError(f"data {data} does not exist.", hint="Give an image folder, an .npy/.npz file, or random:N.")
    open_options = dict(options or {})
    if threads is not None:
        open_options["threads"] = threads
    planned = plan(models, runtimes, baseline, open_options)
    variants = [variant for variant in planned if not variant.skipped]
    if not variants:
        reasons = "; ".join(f"{v.name}: {v.skipped[0]}" for v in planned)
        raise InputError(f"no variant can run here ({reasons}).",
                         hint=" ".join(dict.fromkeys(v.skipped[1] for v in planned)))
    fidelity_data = data or "random:16"
    # What every worker gets besides its variant (paths absolute: workers run in a scratch folder).
    settings = {"batch": batch, "group": GROUP, "fidelity_data": _absolute(fidelity_data),
                "preprocess": _image_preprocessing([v.model for v in variants], fidelity_data, preprocess),
                "max_time": max_time, "max_rounds": max_rounds, "threads": threads, "user_cwd": os.getcwd(),
                "detect": _detection_task([v.model for v in variants], fidelity_data),
                "pipeline": _absolute(pipeline) if pipeline else None,
                "power": power or power_command is not None, "power_command": power_command,
                "power_interval": POWER_INTERVAL, "sustained": sustained is not None, "streams": streams}
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for index, variant in enumerate(variants):
            if progress:
                progress(variant.name, index, len(variants))
            results.append(_run_variant(variant, Path(scratch), index, settings))
        if progress:
            progress("done", len(variants), len(variants))
        document = _merge(results)
        _analyse(document, variants, output_name)
    document["kit_skipped"] = [{"name": v.name, "reason": v.skipped[0], "needs": v.skipped[1]}
                               for v in planned if v.skipped]
    return BenchReport(document)


def _detection_task(models: list[str], data: str) -> dict | None:
    """The detect task a model records, when the data is detection data: then every variant
    (the PyTorch one too, which records nothing) is scored on mAP with the same settings."""

    if not is_detection_data(data):
        return None
    recorded = [provenance.read(model).get("task") for model in models if Path(model).is_file()]
    task = next((task for task in recorded if task and task.get("name") == "detect"), None)
    if task is None:
        raise InputError(f"{data} is detection data, and no model here records the detect task.",
                         hint="Export the model with --task detect --labels FILE.")
    return task


def _image_preprocessing(models: list[str], data: str, text: str | None) -> str | dict | None:
    """How images become inputs for the models that record no preprocessing: the --preprocess
    text, else what the other models record (they must agree), else None (each input's defaults)."""

    images = Path(data).is_dir() or is_detection_data(data)
    if text is not None:
        from kit.data.preprocess import Preprocess

        Preprocess(size=(1, 1)).updated(text)  # a typo fails now, not in every worker
        if not images:
            raise InputError(f"--preprocess says how images become inputs; --data {data} is not an image folder.",
                             hint="Drop --preprocess, or give --data a folder of images.")
    if not images:
        return None
    recorded = {model: provenance.read(model).get("preprocess") for model in dict.fromkeys(models)}
    recorded = {model: steps for model, steps in recorded.items() if steps}
    # Layout aside: each model takes images laid out as its own input is.
    kinds = {json.dumps({**steps, "layout": None}, sort_keys=True) for steps in recorded.values()}
    if len(kinds) > 1:
        listed = "; ".join(f"{model}: {steps}" for model, steps in recorded.items())
        raise InputError(f"the models record different preprocessing ({listed}).",
                         hint="Benchmark them on arrays (.npy/.npz) instead of images, or re-export with one spec.")
    if text is not None and recorded:
        warnings.warn(f"--preprocess applies to models that record no preprocessing; {', '.join(recorded)} keep "
                      "their own.", KitWarning, stacklevel=3)
    return text if text is not None else next(iter(recorded.values()), None)


def _run_variant(variant: Variant, scratch: Path, index: int, settings: dict[str, Any]) -> dict[str, Any]:
    outputs_file = scratch / f"outputs-{index}.npz"
    report = scratch / f"bench-{index}.json"
    # The worker runs in the scratch folder: every path it gets must be absolute.
    options = {k: _absolute(v) if k == "weights" else v for k, v in variant.options.items()}
    spec = {**settings, "model": _absolute(variant.model), "runtime": variant.runtime, "options": options,
            "outputs_file": str(outputs_file), "name": variant.name, "display_model": variant.model}
    (scratch / "pytest.ini").write_text("[pytest]\n")  # keep the user's pytest configuration out
    command = [sys.executable, "-m", "pytest", str(Path(__file__).with_name("worker.py")), "-q",
               "-p", "pytest_benchmark.plugin", "-p", "kit.bench.worker", "-p", "no:cacheprovider",
               "-c", str(scratch / "pytest.ini"), "--rootdir", str(scratch), f"--benchmark-json={report}",
               "--benchmark-sort=name"]
    env = {key: value for key, value in os.environ.items() if key != "PYTEST_ADDOPTS"}
    env |= {"KIT_BENCH_SPEC": json.dumps(spec), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    limit = WORKER_SECONDS + 20 * settings["max_time"]
    try:  # cwd: pytest-benchmark's .benchmarks folder lands in the scratch folder, not the user's
        finished = subprocess.run(command, capture_output=True, text=True, env=env, cwd=scratch, timeout=limit)
    except subprocess.TimeoutExpired:
        raise RunError(f"benchmarking {variant.name} took more than {limit:.0f} s and was stopped.",
                       hint="Lower --max-time, or check that the model runs with `kit run MODEL --random`.") from None
    if finished.returncode != 0 or not report.exists():
        raise RunError(f"benchmarking {variant.name} failed: {_worker_error(finished.stdout + finished.stderr)}",
                       hint="Run the model once with `kit run MODEL --random --runtime "
                            f"{variant.runtime}` to see the problem alone.")
    return json.loads(report.read_text())


def _absolute(reference: str) -> str:
    """A file path made absolute; a factory's file part too; anything else (random:N, a module) unchanged."""
    if is_factory_reference(reference):
        target, _, function = reference.rpartition(":")
        return f"{Path(target).resolve()}:{function}" if target.endswith(".py") else reference
    return str(Path(reference).resolve()) if Path(reference).exists() else reference


def _worker_error(text: str) -> str:
    """The error message from a failed worker's pytest output, without pytest's decoration."""
    lines = [line.strip()[1:].strip() for line in text.splitlines() if line.strip().startswith("E ")]
    errors = [line for line in lines if re.match(r"[\w.]+(Error|Exception): ", line)]
    message = errors[0] if errors else lines[-1] if lines else (text.strip().splitlines() or ["no output"])[-1]
    return re.sub(r"^kit\.[\w.]+: ", "", message)  # kit.core.errors.InputError: ...


def _merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One pytest-benchmark document from the workers' (each already named through its hooks)."""
    document = {key: value for key, value in results[0].items() if key != "benchmarks"}
    document["benchmarks"] = [entry for result in results for entry in result["benchmarks"]]
    return document


def _analyse(document: dict[str, Any], variants: list[Variant], output_name: str | None) -> None:
    """Latency statistics from raw timings, size, fidelity and accuracy against the baseline."""
    for entry in document["benchmarks"]:
        if "pipeline" in entry["extra_info"]["kit"]:  # frames per second: one frame per round
            stats = latency_stats(entry["stats"]["data"])
            entry["extra_info"]["kit"].update(latency_s=stats.to_dict(), throughput_per_s=1 / stats.mean)
    models = [entry for entry in document["benchmarks"] if "pipeline" not in entry["extra_info"]["kit"]]
    baseline_outputs, baseline_correct, baseline_run = None, None, None
    for entry, variant in zip(models, variants):
        info = entry["extra_info"]["kit"]
        stats = latency_stats(entry["stats"]["data"])
        info["baseline"] = variant.baseline or baseline_outputs is None
        info["latency_s"] = stats.to_dict()
        info["latency_drift"] = _drift(entry["stats"]["data"])
        # Sustained rate: the mean includes every stall the median hides.
        info["throughput_per_s"] = (info["batch"] or 1) / stats.mean
        info["size_bytes"] = _size(variant.model) or _size(variant.options.get("weights") or "")
        detections_file = info["outputs_file"] + DETECTIONS
        results = RunResults.load(info.pop("outputs_file"), variant.name)
        outputs, labels = results.outputs(), results.labels
        if baseline_outputs is None:
            baseline_outputs = outputs
        # Outputs pair up when both models give the same ones (not a detector with NMS in its graph).
        paired = outputs and outputs.keys() == baseline_outputs.keys()
        info["fidelity"] = [_fidelity(d) for d in compare_outputs(baseline_outputs, outputs, atol=0.0, rtol=0.0)
                            ] if paired else []
        if Path(detections_file).is_file():
            found = DetectionRun.load(detections_file)
            baseline_run = baseline_run or found
            info["detection"] = {**found.score().to_dict(), **_against(baseline_run, found, info["baseline"])}
            continue
        if labels is not None:
            try:
                scores = scores_of(outputs, output_name)
            except InputError as error:
                info["accuracy_skipped"] = str(error)
                continue
            result = accuracy(scores, labels)
            correct = top_k_correct(scores, labels, 1)
            baseline_correct = correct if baseline_correct is None else baseline_correct
            info["accuracy"] = {**result.to_dict(), "delta": result.top1 - float(baseline_correct.mean())}


def _drift(timings: list[float]) -> float | None:
    """The median of the last tenth of the rounds over that of the first, less one: + is slower
    at the end (heat, throttling, another process)."""
    import numpy as np

    if len(timings) < DRIFT_ROUNDS:
        return None
    tenth = len(timings) // 10
    return float(np.median(timings[-tenth:]) / np.median(timings[:tenth]) - 1)


def _against(baseline: DetectionRun, candidate: DetectionRun, is_baseline: bool) -> dict[str, Any]:
    """mAP's paired difference from the baseline (on the same image resamples)."""
    if is_baseline:
        return {}
    delta, delta_ci = paired_delta(baseline, candidate)
    return {"delta": delta, "delta_ci": list(delta_ci)}


def _fidelity(diff) -> dict[str, Any]:
    data = diff.to_dict()
    data.pop("passed")  # measured, not judged
    return data


def _size(model: str) -> int | None:
    return model_size(model) if Path(model).is_file() else None


def write_json(report: BenchReport, path: str | os.PathLike) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(report.document, indent=2))


def check_outputs(outputs: list[str | None], inputs: list[str | None]) -> None:
    """Fail before any measuring when an output cannot be written or would overwrite an input."""
    for path in filter(None, outputs):
        check_output_path(path, *filter(None, inputs))


def require_pytest_benchmark() -> None:
    """kit bench's timing engine is pytest with pytest-benchmark: name the extra that brings them."""
    try:
        import pytest  # noqa: F401
        import pytest_benchmark  # noqa: F401
    except ImportError as exc:
        raise RuntimeUnavailableError(f"kit bench needs pytest and pytest-benchmark (its timing engine); "
                                      f"{exc.name} is not installed.",
                                      hint='Install them with: pip install "edge-inference-kit[bench]"') from None
