"""Run models over data: the one loop behind calibration checks, compare, eval and the demo."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kit import provenance
from kit.accuracy import Accuracy, accuracy, top_k_correct
from kit.compare import OutputDiff, compare_outputs
from kit.data import Dataset, open_data
from kit.errors import InputError
from kit.golden import Golden, load_golden, save_golden
from kit.runtimes.base import Runtime
from kit.runtimes.registry import load


def run_dataset(runtime: Runtime, dataset: Dataset, *, batch_size: int = 64, limit: int | None = None,
                progress: Callable[[int, int], None] | None = None) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Every output over the dataset, concatenated along axis 0, and the labels if it has them."""
    outputs: dict[str, list[np.ndarray]] = {}
    labels: list[np.ndarray] = []
    total = dataset.count if limit is None else min(limit, dataset.count)
    done = 0
    for feeds, batch_labels in dataset.batches(batch_size, limit):
        for name, array in runtime.run(feeds).items():
            outputs.setdefault(name, []).append(array)
        if batch_labels is not None:
            labels.append(batch_labels)
        done += len(next(iter(feeds.values())))
        if progress:
            progress(done, total)
    return ({name: np.concatenate(parts) for name, parts in outputs.items()},
            np.concatenate(labels) if labels else None)


def scores_of(outputs: dict[str, np.ndarray], output: str | None = None) -> np.ndarray:
    """The classification scores among a model's outputs: the named one, or the only 2-D one."""
    if output is not None:
        if output not in outputs:
            raise InputError(f"expected an output named {output!r}; the model has {', '.join(outputs)}.",
                             hint="Name one of the model's outputs with --output.")
        return outputs[output]
    candidates = [name for name, array in outputs.items() if array.ndim == 2]
    if len(candidates) != 1:
        raise InputError(f"expected one (samples, classes) output to score; found {len(candidates)} among "
                         f"{', '.join(f'{n}{list(a.shape)}' for n, a in outputs.items())}.",
                         hint="Name the classification output with --output.")
    return outputs[candidates[0]]


def open_model_data(model: str | os.PathLike, data: str, runtime: Runtime) -> Dataset:
    """Open ``data`` for ``runtime``'s inputs, preprocessing images as the model records."""
    return open_data(data, runtime.inputs, provenance.read(model).get("preprocess"))


def evaluate(model: str | os.PathLike, data: str, *, runtime: str | None = None, output: str | None = None,
             batch_size: int = 64, **options: Any) -> tuple[Accuracy, np.ndarray]:
    """Top-1/top-5 on labelled data, and the per-sample top-1 correctness (for paired comparisons)."""
    with load(model, runtime, **options) as rt:
        dataset = open_model_data(model, data, rt)
        if not dataset.has_labels:
            raise InputError(f"{data} has no labels to evaluate against.",
                             hint="Give an .npz with x and y arrays, or an image folder with one subfolder per class.")
        outputs, labels = run_dataset(rt, dataset, batch_size=batch_size)
    scores = scores_of(outputs, output)
    return accuracy(scores, labels), top_k_correct(scores, labels, 1)


@dataclass
class Comparison:
    reference: str
    candidate: str
    samples: int
    outputs: list[OutputDiff]
    layers: list[Any] = field(default_factory=list)  # export.layers.LayerError, with --layers

    @property
    def passed(self) -> bool:
        return all(diff.passed for diff in self.outputs)

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "candidate": self.candidate, "samples": self.samples,
                "passed": self.passed, "outputs": [d.to_dict() for d in self.outputs],
                "layers": [layer.to_dict() for layer in self.layers]}


def compare_models(
    reference: str | None,
    candidate: str,
    *,
    data: str = "random:16",
    golden: str | None = None,
    save_golden_to: str | None = None,
    runtimes: tuple[str | None, str | None] = (None, None),
    options: tuple[Mapping[str, Any], Mapping[str, Any]] = ({}, {}),
    atol: float | Mapping[str, float] = 1e-4,
    rtol: float | Mapping[str, float] = 1e-3,
    stat: str = "elementwise",
    layers: bool = False,
    batch_size: int = 64,
) -> Comparison:
    """Run ``reference`` and ``candidate`` on the same inputs and compare their outputs.

    With ``golden``, the reference is the outputs stored in that file and its inputs are
    fed to the candidate. With ``save_golden_to``, the reference's inputs and outputs are saved.
    """
    if golden is not None:
        stored = load_golden(golden)
        with load(candidate, runtimes[1], **options[1]) as rt:
            got = _run_arrays(rt, stored.inputs, batch_size)
        return Comparison(f"{golden} ({stored.meta.get('model')})", candidate, _count(stored.inputs),
                          compare_outputs(stored.outputs, got, atol=atol, rtol=rtol, stat=stat))
    if reference is None:
        raise InputError("expected a reference model or --golden FILE; found neither.",
                         hint="kit compare FP32.onnx INT8.onnx, or kit compare INT8.onnx --golden golden.npz")
    with load(reference, runtimes[0], **options[0]) as rt:
        dataset = open_model_data(reference, data, rt)
        inputs = _gather_inputs(dataset, batch_size)
        expected = _run_arrays(rt, inputs, batch_size)
        info = rt.info
    if save_golden_to:
        save_golden(save_golden_to, Golden(inputs, expected, {"model": str(reference), "runtime": info,
                                                              "data": dataset.description}))
    with load(candidate, runtimes[1], **options[1]) as rt:
        got = _run_arrays(rt, inputs, batch_size)
    result = Comparison(str(reference), str(candidate), _count(inputs),
                        compare_outputs(expected, got, atol=atol, rtol=rtol, stat=stat))
    if layers:
        from kit.export.layers import layer_errors

        result.layers = layer_errors(reference, candidate, dataset)
    return result


def _gather_inputs(dataset: Dataset, batch_size: int) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {}
    for feeds, _ in dataset.batches(batch_size):
        for name, array in feeds.items():
            parts.setdefault(name, []).append(np.asarray(array))
    return {name: np.concatenate(arrays) for name, arrays in parts.items()}


def _run_arrays(runtime: Runtime, inputs: dict[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
    """Run stacked inputs through a runtime in batches (one sample at a time if its batch is fixed)."""
    fixed = not all(spec.dynamic_batch for spec in runtime.inputs)
    step = 1 if fixed else batch_size
    outputs: dict[str, list[np.ndarray]] = {}
    for start in range(0, _count(inputs), step):
        for name, array in runtime.run({k: v[start:start + step] for k, v in inputs.items()}).items():
            outputs.setdefault(name, []).append(array)
    return {name: np.concatenate(parts) for name, parts in outputs.items()}


def _count(inputs: Mapping[str, np.ndarray]) -> int:
    return len(next(iter(inputs.values())))
