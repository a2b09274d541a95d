"""compare and eval: models over data through the runner (kit.check.runner), judged by the
metrics (kit.check.metrics) and task accuracy (kit.check.accuracy), with golden files and
the per-layer diagnosis. What a comparison keeps is bounded by the memory there is.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from kit.check.accuracy import Accuracy, accuracy, top_k_correct
from kit.check.metrics import Comparator, OutputDiff
from kit.check.runner import Progress, Stored, Subject, run
from kit.core import provenance
from kit.core.errors import InputError, KitNote, KitWarning
from kit.core.formatting import size
from kit.data.batching import as_nchw, available_memory, free_batch, samples_in
from kit.data.datasets import Dataset, from_arrays, open_data
from kit.data.golden import GoldenWriter, check_golden_path, load_golden
from kit.data.preprocess import Preprocess
from kit.data.sources import is_factory_reference
from kit.runtimes.base import Runtime
from kit.tasks.classify import Classify
from kit.runtimes.registry import load


def run_dataset(runtime: Runtime, dataset: Dataset, *, batch_size: int = 64, limit: int | None = None,
                progress: Progress | None = None) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Every output over the dataset, concatenated along axis 0, and the labels if it has them."""
    total = dataset.count if limit is None else min(limit, dataset.count)
    results = run([runtime], dataset.batches(batch_size, limit, pad=False), keep=True, total=total,
                  progress=progress)
    return results.outputs(0) if results.samples else {}, results.labels


def scores_of(outputs: dict[str, np.ndarray], output: str | None = None) -> np.ndarray:
    """The classification scores among a model's outputs: the named one, or the only 2-D one."""
    return Classify(output=output).scores(outputs)


def open_model_data(model: str | os.PathLike, data: str, runtime: Runtime,
                    preprocess: str | Preprocess | None = None) -> Dataset:
    """Open ``data`` for ``runtime``'s inputs, preprocessing images as the model records (or as
    ``preprocess``, ``--preprocess`` text, says) and moving arrays to the model's layout (a
    channel-last TFLite export takes NHWC)."""
    stored = provenance.read(model)
    return open_data(data, runtime.inputs, stored.get("preprocess"), _layout(stored), user_preprocess=preprocess,
                     model=str(model))


def _layout(stored: dict) -> str | None:
    """"nhwc" when the model's inputs are channel-last and the source model's were not."""
    return "nhwc" if stored.get("layout") == "nhwc" and stored.get("source_layout", "nchw") == "nchw" else None


def evaluate(model: str | os.PathLike, data: str, *, runtime: str | None = None, output: str | None = None,
             batch_size: int = 64, preprocess: str | Preprocess | None = None,
             **options: Any) -> tuple[Accuracy, np.ndarray]:
    """Top-1/top-5 on labelled data, and the per-sample top-1 correctness (for paired comparisons).

    Only the scored output is kept, batch by batch; ``preprocess`` (``--preprocess`` text)
    states the image preprocessing of a model that records none.
    """
    scores, labels = [], []

    def keep_scores(feeds, batch_labels, outputs):
        scores.append(scores_of(outputs[0], output))
        labels.append(batch_labels)

    with load(model, runtime, **options) as rt, open_model_data(model, data, rt, preprocess) as dataset:
        if not dataset.has_labels:
            raise InputError(f"{data} has no labels to evaluate against.",
                             hint="Give an .npz with x and y arrays, or an image folder with one subfolder per class.")
        run([rt], dataset.batches(batch_size, pad=False), consumers=[keep_scores])
    scores, labels = np.concatenate(scores), np.concatenate(labels)
    return replace(accuracy(scores, labels), classes=dataset.classes), top_k_correct(scores, labels, 1)


@dataclass
class Comparison:
    reference: str
    candidate: str | None  # None when one model's outputs were only saved to a golden file
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
    candidate: str | None,
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
    preprocess: str | Preprocess | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
) -> Comparison:
    """Run ``reference`` and ``candidate`` on the same inputs (the first ``limit`` samples of
    ``data``, all without it) and compare their outputs.

    Both models run batch by batch on the same stream of inputs; nothing of the data set is
    held but the errors the medians need (refused up front when they would not fit in
    memory). With ``golden``, the reference is the outputs stored in that file and its inputs
    are fed to the candidate. With ``save_golden_to``, the reference's inputs and outputs are
    saved (written as they come); ``candidate`` may then be None to only save them.
    ``preprocess`` (``--preprocess`` text) states the image preprocessing of models that
    record none.
    """
    comparator = Comparator(atol=atol, rtol=rtol, stat=stat)
    if golden is not None:
        if layers or save_golden_to:
            raise InputError("--golden checks one model against a golden file; --layers and --save-golden need "
                             "two models.", hint="Give both models instead of --golden.")
        if candidate is None:
            raise InputError("expected a model to check against the golden file; found none.",
                             hint="kit compare MODEL --golden golden.npz")
        return _compare_with_golden(candidate, golden, comparator, runtimes[1], options[1], batch_size, progress)
    if reference is None:
        raise InputError("expected a reference model or --golden FILE; found neither.",
                         hint="kit compare FP32.onnx INT8.onnx, or kit compare INT8.onnx --golden golden.npz")
    if candidate is None and not save_golden_to:
        raise InputError("expected a candidate model to compare with; found only the reference.",
                         hint="kit compare FP32.onnx INT8.onnx, or kit compare MODEL --save-golden golden.npz")
    if save_golden_to:
        check_golden_path(save_golden_to, data, reference, candidate)
    if layers:
        if candidate is None:
            raise InputError("--layers compares two models; found one.", hint="Give the float and the QDQ model.")
        _check_layer_comparison(reference, candidate)
    models = [model for model in (reference, candidate) if model is not None]
    _warn_if_untrained_factory(models, options)
    layouts = [_layout(provenance.read(model)) for model in models]
    images = _image_preprocessing(models, data)
    with contextlib.ExitStack() as stack:
        loaded = [stack.enter_context(load(model, runtimes[i], **options[i])) for i, model in enumerate(models)]
        # Data is read in the reference's source layout (its batch axis free); each model gets
        # it moved to its own layout and batch. Images follow the recorded preprocessing, laid
        # out as that source input is.
        specs = [free_batch(as_nchw(spec) if layouts[0] == "nhwc" else spec) for spec in loaded[0].inputs]
        if images and len(specs) == 1 and specs[0].shape and len(specs[0].shape) == 4:
            images = replace(images, layout=Preprocess.for_input(specs[0]).layout)
        dataset = stack.enter_context(open_data(data, specs, images, user_preprocess=preprocess, model=models[0]))
        quantized = [model for model, rt in zip(models, loaded) if _is_quantized(model, rt)]
        _warn_if_random(dataset.synthetic, quantized)
        count = dataset.count if limit is None else min(limit, dataset.count)
        writer = stack.enter_context(GoldenWriter(save_golden_to, count, {
            "model": str(reference), "runtime": loaded[0].info, "data": dataset.description})) \
            if save_golden_to else None
        consumers = []
        if candidate is not None:
            consumers.append(_comparing(comparator, dataset))
        if writer:
            consumers.append(lambda feeds, labels, outputs: writer.add(feeds, outputs[0]))
        run([Subject(rt, layout) for rt, layout in zip(loaded, layouts)],
            dataset.batches(batch_size, limit, pad=False), consumers=consumers, total=count, progress=progress)
    result = Comparison(str(reference), str(candidate) if candidate else None, count, comparator.result())
    _note_if_elementwise_fails(result, stat, quantized)
    if layers:
        from kit.check.layers import layer_errors

        with load(reference, "onnxruntime") as rt, open_data(
                data, rt.inputs, images, user_preprocess=preprocess if Path(data).is_dir() else None,
                model=reference) as float_inputs:
            result.layers = layer_errors(reference, candidate, float_inputs)
    return result


def _compare_with_golden(candidate: str, golden: str, comparator: Comparator, runtime: str | None,
                         options: Mapping[str, Any], batch_size: int, progress: Progress | None) -> Comparison:
    stored = load_golden(golden)
    try:
        layout = _layout(provenance.read(candidate))
        with load(candidate, runtime, **options) as rt:
            specs = [free_batch(as_nchw(spec) if layout == "nhwc" else spec) for spec in rt.inputs]
            dataset = from_arrays(stored.inputs, specs, str(golden))
            if any(len(array) != dataset.count for array in stored.outputs.values()):
                raise InputError(f"{golden} holds {dataset.count} input samples but outputs of other lengths.",
                                 hint="Write the golden file again with kit compare MODEL --save-golden.")
            quantized = [candidate] if _is_quantized(candidate, rt) else []
            _warn_if_random(str(stored.meta.get("data", "")).startswith("random:"), quantized)
            done = run([Stored(stored.outputs, specs), Subject(rt, layout)], dataset.batches(batch_size, pad=False),
                       consumers=[_comparing(comparator, dataset)], total=dataset.count, progress=progress).samples
    finally:
        stored.close()
    result = Comparison(f"{golden} ({stored.meta.get('model')})", candidate, done, comparator.result())
    _note_if_elementwise_fails(result, comparator.stat, quantized)
    return result


def _comparing(comparator: Comparator, dataset: Dataset):
    """A runner consumer: the first model is the reference, the second the candidate; the
    comparison stops, clearly, before what it keeps outgrows the memory there is."""
    done = 0

    def consume(feeds, labels, outputs):
        nonlocal done
        comparator.add(outputs[0], outputs[1])
        done += samples_in(feeds)
        _check_memory(comparator, done, dataset)

    return consume


def _check_memory(comparator: Comparator, done: int, dataset: Dataset) -> None:
    """Refuse, after the first batch, a comparison whose kept errors would not fit in memory."""
    if comparator.batches != 1 or done >= dataset.count:
        return
    needed = comparator.kept_bytes() * dataset.count // done
    free = available_memory()
    if free is not None and needed > free // 2:
        raise InputError(f"comparing {dataset.count:,} samples of {dataset.description} would keep {size(needed)} of "
                         f"output errors in memory; {size(free)} is available here.",
                         hint="Compare on fewer samples (a smaller --data or --random N).")


def _warn_if_untrained_factory(models: list[str], options) -> None:
    """A factory without weights runs with the weights it builds; compared with a model exported
    from trained weights (its provenance says which), that comparison measures nothing."""
    for index, model in enumerate(models):
        if not is_factory_reference(str(model)) or options[index].get("weights"):
            continue
        for other in models[:index] + models[index + 1:]:
            recorded = provenance.read(other)
            if recorded.get("weights_sha256"):
                weights = recorded.get("weights") or f"sha256 {recorded['weights_sha256'][:12]}"
                warnings.warn(f"{model} runs without weights, but {other} was exported from trained weights "
                              f"({weights}): pass them with --weights to compare the same model.", KitWarning,
                              stacklevel=3)


def _warn_if_random(synthetic: bool, quantized: list[str]) -> None:
    if synthetic and quantized:
        warnings.warn(f"random inputs say little about a quantized model ({', '.join(quantized)}): its ranges were "
                      "calibrated on real data and random values fall outside them. Give --data with real samples "
                      "to judge it.", KitWarning, stacklevel=3)


def _note_if_elementwise_fails(result: Comparison, stat: str, quantized: list[str]) -> None:
    if quantized and stat == "elementwise" and not result.passed:
        warnings.warn("a quantized model is rarely within elementwise tolerances of a float one: judge it on real "
                      "data by a statistic (e.g. --stat mean --atol 0.1, sized from a run you trust) and by the "
                      "top-1 agreement and SQNR columns.", KitNote, stacklevel=3)


def _is_quantized(model: str, runtime: Runtime) -> bool:
    precision = str(provenance.read(model).get("precision", ""))
    return precision.startswith("int8") or any(spec.scale is not None for spec in runtime.inputs + runtime.outputs)


def _image_preprocessing(models: list[str], data: str) -> Preprocess | None:
    """The image preprocessing the models record (either's, when only one records any); read
    only for an image folder, so a damaged record does not stop a comparison on arrays."""
    if not Path(data).is_dir():
        return None
    stored = [(model, provenance.read(model).get("preprocess")) for model in models]
    steps = [(model, Preprocess.from_dict(spec, source=f"the preprocessing stored with {model}"))
             for model, spec in stored if spec]
    if len(steps) == 2 and replace(steps[0][1], layout="nchw") != replace(steps[1][1], layout="nchw"):
        (a, ours), (b, theirs) = steps  # layout: each model its own
        raise InputError(f"{a} and {b} record different preprocessing ({ours.to_text()} vs {theirs.to_text()}).",
                         hint="Compare on arrays (.npy/.npz) instead of images, or re-export with one spec.")
    return steps[0][1] if steps else None


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
