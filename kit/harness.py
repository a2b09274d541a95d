"""Run models over data: the one loop behind calibration checks, compare, eval and the demo."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from kit import provenance
from kit.accuracy import Accuracy, accuracy, top_k_correct
from kit.compare import OutputDiff, compare_outputs
from kit.data import Dataset, from_arrays, open_data
from kit.errors import InputError
from kit.golden import Golden, check_golden_path, load_golden, save_golden
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
    """Open ``data`` for ``runtime``'s inputs, preprocessing images as the model records and
    moving arrays to the model's layout (a channel-last TFLite export takes NHWC)."""
    stored = provenance.read(model)
    return open_data(data, runtime.inputs, stored.get("preprocess"), _layout(stored))


def _layout(stored: dict) -> str | None:
    """"nhwc" when the model's inputs are channel-last and the source model's were not."""
    return "nhwc" if stored.get("layout") == "nhwc" and stored.get("source_layout", "nchw") == "nchw" else None


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
    return replace(accuracy(scores, labels), classes=dataset.classes), top_k_correct(scores, labels, 1)


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
        if layers:
            raise InputError("--layers compares a float graph with its QDQ graph; with --golden there is one model.",
                             hint="Give both models instead of --golden.")
        stored = load_golden(golden)
        with load(candidate, runtimes[1], **options[1]) as rt:
            got, _ = run_dataset(rt, from_arrays(stored.inputs, rt.inputs, str(golden), _layout(provenance.read(
                candidate))), batch_size=batch_size)
        return Comparison(f"{golden} ({stored.meta.get('model')})", candidate, _count(stored.inputs),
                          compare_outputs(stored.outputs, got, atol=atol, rtol=rtol, stat=stat))
    if reference is None:
        raise InputError("expected a reference model or --golden FILE; found neither.",
                         hint="kit compare FP32.onnx INT8.onnx, or kit compare INT8.onnx --golden golden.npz")
    if save_golden_to:
        check_golden_path(save_golden_to, data, reference, candidate)
    if layers:
        _check_layer_comparison(reference, candidate)
    preprocess = _shared_preprocess(reference, candidate)
    layouts = [_layout(provenance.read(model)) for model in (reference, candidate)]
    with load(reference, runtimes[0], **options[0]) as rt:
        # In the source model's layout: each model gets them moved to its own.
        # Data is read in the reference's source layout; each model gets it moved to its own. Images
        # follow the recorded preprocessing, laid out as that source input is.
        specs = [_source_spec(spec, layouts[0]) for spec in rt.inputs]
        if preprocess and len(specs) == 1 and specs[0].shape and len(specs[0].shape) == 4:
            from kit.preprocess import Preprocess

            preprocess = {**preprocess, "layout": Preprocess.for_input(specs[0]).layout}
        dataset = open_data(data, specs, preprocess)
        # Gathered once: the candidate sees the very arrays the reference saw, and a golden file keeps them.
        inputs = {name: np.concatenate(parts) for name, parts in _columns(dataset, batch_size).items()}
        expected, _ = run_dataset(rt, from_arrays(inputs, rt.inputs, dataset.description, layouts[0]),
                                  batch_size=batch_size)
        info = rt.info
    with load(candidate, runtimes[1], **options[1]) as rt:
        got, _ = run_dataset(rt, from_arrays(inputs, rt.inputs, dataset.description, layouts[1]),
                             batch_size=batch_size)
    result = Comparison(str(reference), str(candidate), _count(inputs),
                        compare_outputs(expected, got, atol=atol, rtol=rtol, stat=stat))
    if save_golden_to:
        save_golden(save_golden_to, Golden(inputs, expected, {"model": str(reference), "runtime": info,
                                                              "data": dataset.description}))
    if layers:
        from kit.export.layers import layer_errors

        with load(reference, "onnxruntime") as rt:
            result.layers = layer_errors(reference, candidate, from_arrays(inputs, rt.inputs, dataset.description))
    return result


def _source_spec(spec, layout: str | None):
    from kit.data import as_nchw

    return as_nchw(spec) if layout == "nhwc" else spec


def _columns(dataset: Dataset, batch_size: int) -> dict[str, list[np.ndarray]]:
    parts: dict[str, list[np.ndarray]] = {}
    for feeds, _ in dataset.batches(batch_size):
        for name, array in feeds.items():
            parts.setdefault(name, []).append(np.asarray(array))
    return parts


def _check_layer_comparison(reference: str, candidate: str) -> None:
    import onnx

    for path in (reference, candidate):
        if not str(path).endswith(".onnx"):
            raise InputError(f"--layers compares ONNX graphs; {path} is not an .onnx file.",
                             hint="Compare the float .onnx export with its quantized .onnx.")
    ops = {node.op_type for node in onnx.load(str(candidate), load_external_data=False).graph.node}
    if "DequantizeLinear" not in ops:
        raise InputError(f"--layers needs a QDQ-quantized candidate; {candidate} has no DequantizeLinear nodes.",
                         hint="Quantize it with kit quantize --precision int8 first.")


def _shared_preprocess(reference: str, candidate: str) -> dict | None:
    """The image preprocessing both models record (either's, when only one records any)."""
    ours, theirs = provenance.read(reference).get("preprocess"), provenance.read(candidate).get("preprocess")
    if ours and theirs and {**ours, "layout": None} != {**theirs, "layout": None}:  # layout: each its own
        raise InputError(f"{reference} and {candidate} record different preprocessing ({ours} vs {theirs}).",
                         hint="Compare on arrays (.npy/.npz) instead of images, or re-export with one spec.")
    return ours or theirs


def _count(inputs: Mapping[str, np.ndarray]) -> int:
    return len(next(iter(inputs.values())))
