"""Quantizing to an accuracy budget: static int8 that keeps the fewest, most damaged layers
in float (ranked by the per-layer diagnosis) until top-1 on labelled data holds."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from kit.export.quantize.core import (
    calibration_dataset,
    check_arguments,
    clean_full_disk,
    load_checked,
    model_inputs,
    quantize,
    record,
    stated_preprocess,
)
from kit.export.quantize.passes import prepare, quiet
from kit.export.quantize.result import QuantizeResult

from kit.core import provenance
from kit.core.errors import KitError
from kit.core.fileio import atomic_output


def quantize_to_budget(
    model: str | os.PathLike,
    output: str | os.PathLike,
    *,
    eval_data: str,
    max_drop: float | None = None,
    min_ratio: float | None = None,
    max_steps: int = 8,
    progress: Callable[[str], None] | None = None,
    **options: Any,
) -> QuantizeResult:
    """Static int8 that keeps the fewest, most sensitive layers in float until the accuracy
    budget holds on ``eval_data`` (labelled). Raises, writing nothing, when it cannot.

    Layers are tried in the order of the per-layer diagnosis (accumulated SQNR lost across
    each node, worst first), after the head layers when the task's judge asks for them (a
    detector); each step keeps one more layer, with its input chain, in float.
    """
    from kit.check.accuracy import check_budget
    from kit.check.budgets import judge_for
    from kit.check.layers import head_layers, layer_errors

    started = time.perf_counter()
    say = progress or (lambda message: None)
    model, output = Path(model), Path(output)
    check_arguments(model, output, "int8", options.get("method", "minmax"), options.get("target", "auto"))
    check_budget(np.ones(1), np.ones(1), max_drop=max_drop, min_ratio=min_ratio)  # the rule itself is valid
    load_checked(model)
    inputs = model_inputs(model)
    # Read the calibration data once: every try calibrates again, and a generator is spent after one pass.
    stated = stated_preprocess(options.pop("preprocess", None), provenance.read(model), model, options.get("calib"))
    options["calib"] = calibration_dataset(options.get("calib"), model, inputs, options.get("calib_limit"), stated)
    judge = judge_for(model, eval_data)  # top-1 for a classifier, mAP for a detector (the recorded task)
    say("evaluating the float model")
    with quiet():
        baseline = judge.measure(model)
    excluded = list(options.pop("exclude", None) or [])
    steps: list[dict[str, Any]] = []
    with clean_full_disk(output), tempfile.TemporaryDirectory() as scratch:
        trial = Path(scratch) / "trial.onnx"

        def attempt(extra: list[str]):
            result = quantize(model, trial, exclude=excluded + extra, progress=progress, **options)
            say(f"evaluating int8 with {len(excluded) + len(extra)} nodes in float")
            with quiet():
                candidate = judge.measure(trial)
            check = judge.check(baseline, candidate, max_drop=max_drop, min_ratio=min_ratio)
            steps.append({"kept_in_float": excluded + extra, judge.metric: check.candidate, "passed": check.passed})
            return result, check

        result, check = attempt([])
        ranking = []
        if not check.passed:
            say("ranking layers by quantization damage")
            # Rank on the graph quantize() quantized (pre-processing renames fused nodes), so the
            # names it suggests are names quantize() can exclude.
            prepared = prepare(model, Path(scratch) / "prepared.onnx", QuantizeResult(model, "int8", 0, 0, 0.0),
                                   lambda message: None)
            with quiet():
                layers = layer_errors(prepared, trial, options["calib"], inputs=inputs)
            ranking = [layer.keep_in_float for layer in layers if (layer.drop_db or 0) > 0]
            if judge.heads_first:
                ranking = _heads_first(ranking, head_layers(prepared))
        kept: list[str] = []
        for nodes in ranking[:max_steps]:
            if check.passed:
                break
            new = [n for n in nodes if n not in excluded + kept]
            if new:
                kept += new
                result, check = attempt(kept)
        if not check.passed:
            raise KitError(
                f"the accuracy budget ({check.rule}) cannot be met: with {len(excluded + kept)} nodes in float "
                f"int8 {judge.label} is {check.candidate:.4f} against {check.baseline:.4f} in float "
                f"(tried {len(steps)} configurations). Nothing was written.",
                hint="Give more or better calibration data, try --method entropy/percentile, relax the budget, "
                     "or ship fp16.")
        result.budget = {**check.to_dict(), "kept_in_float": kept, "steps": steps}
        parent = provenance.read(model)
        record(trial, model, {**parent, "preprocess": stated} if stated else parent, result)
        with atomic_output(output) as tmp:
            shutil.copyfile(trial, tmp)
    result.path = output
    result.seconds = time.perf_counter() - started
    return result


def _heads_first(ranking: list[list[str]], heads: list[str]) -> list[list[str]]:
    """The ranked node groups holding a head layer first (in ranking order), then any head the
    ranking did not name, then the rest."""
    first = [nodes for nodes in ranking if set(nodes) & set(heads)]
    covered = {node for nodes in first for node in nodes}
    return first + [[head] for head in heads if head not in covered] + [n for n in ranking if n not in first]
