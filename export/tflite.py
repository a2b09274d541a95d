"""PyTorch -> TFLite (LiteRT) with litert-torch, in four precisions, validated against PyTorch.

- ``fp32``: litert-torch's converter;
- ``int8``: full integer (int8 weights, activations, input and output): ai-edge-quantizer's
  static int8 recipe applied to the fp32 model and calibrated on the user's data, so every op
  computes in int8 (litert-torch's PT2E quantizer left residual adds and squeeze-excitation
  multiplies in float between QUANTIZE/DEQUANTIZE pairs, which ends the Edge TPU's part there);
- ``fp16`` and ``int8-dynamic``: ai-edge-quantizer recipes applied to the fp32 model
  (fp16 weights; int8 weights with float activations quantized at run time).

NHWC input (``layout="nhwc"``, the default for int8, which the Edge TPU needs) wraps the
model with ``litert_torch.to_channel_last_io``; calibration and validation data stay in
the source model's NCHW layout and the kit transposes them. Provenance, including the
layout and the input/output quantization, is stored inside the .tflite (its metadata map)."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
from kit.export.litert import quiet_converters, to_layout
from kit.export.result import FP16_TOLERANCE, ExportResult, task_settings
from kit.export.tflite_int8 import quantize_int8, quantize_recipe

from kit.check.metrics import OutputDiff, compare_outputs
from kit.check.runner import Subject, run
from kit.core import provenance
from kit.core.errors import ExportError, InputError, KitError, RuntimeUnavailableError, ValidationError, root_cause
from kit.core.fileio import atomic_output, check_output_path
from kit.core.specs import TensorSpec, parse_input_shapes, random_feeds
from kit.data.calibration import FeedReader, calibration_feeds
from kit.data.datasets import open_data
from kit.data.preprocess import Preprocess
from kit.data.sources import TorchSource, input_specs, load_torch_source, source_from_module

PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8")


LAYOUTS = ("nchw", "nhwc")


VALIDATION_SAMPLES = 64


MIN_INT8_AGREEMENT = 0.9  # an int8 export fails below this top-1 agreement with PyTorch ...


MIN_INT8_SQNR_DB = 20.0  # ... unless its outputs are this close (near-tied scores flip top-1 without harm)


def export_tflite(
    source: Any,
    output: str | os.PathLike,
    *,
    precision: str = "fp32",
    layout: str | None = None,
    calib: Any = None,
    input_shapes: list[str] | str | None = None,
    weights: str | None = None,
    allow_pickle: bool = False,
    preprocess: str | Preprocess | None = None,
    eval_data: str | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    task: Any = None,
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export ``source`` to a .tflite at ``output``; nothing is written unless validation passes.

    Calibration (``calib``) and ``eval_data`` (labelled: top-1 of PyTorch and of the export is
    reported) are in the source model's layout; image folders use the ``preprocess`` spec.
    """
    started = time.perf_counter()
    say = progress or (lambda message: None)
    task = task_settings(task)  # bad task settings fail before the work
    output = Path(output)
    layout = layout or ("nhwc" if precision == "int8" else "nchw")
    _check_arguments(output, precision, layout, calib, source, weights)
    _require_litert_torch()
    say("loading the PyTorch model")
    if hasattr(source, "forward") and hasattr(source, "state_dict"):
        source = source_from_module(source)
    elif not isinstance(source, TorchSource):
        source = load_torch_source(str(source), weights=weights, allow_pickle=allow_pickle)
    if isinstance(input_shapes, str):
        input_shapes = [input_shapes]
    # TFLite and the Edge TPU want static shapes: the batch stays as given.
    specs, examples = input_specs(source, parse_input_shapes(input_shapes) if input_shapes else None, static=True)
    module = source.program.module() if source.program is not None else source.module
    if not hasattr(module, "named_parameters") or type(module).__name__ == "RecursiveScriptModule":
        raise ExportError(f"{source.reference} is TorchScript; litert-torch converts torch.export programs.",
                          hint="Give a factory (file.py:make_model with --weights) or a .pt2 file.")
    channel_last = [i for i, spec in enumerate(specs) if layout == "nhwc" and len(spec.shape) == 4]
    if layout == "nhwc" and not channel_last:
        raise InputError("--layout nhwc needs a 4-D (N,C,H,W) input; this model has none.",
                         hint="Use --layout nchw.")
    preprocess_spec = _preprocess(specs, preprocess, layout)

    from kit.runtimes.pytorch import TorchRuntime

    reference = TorchRuntime.from_source(source, [TensorSpec(s.name, examples[s.name], s.dtype) for s in specs])
    output_names = [spec.name for spec in reference.outputs]
    # Data sets are in the source model's layout, images included.
    source_preprocess = replace(preprocess_spec, layout="nchw").to_dict() if preprocess_spec else None
    calibration, notes = None, []
    with tempfile.TemporaryDirectory() as scratch, atomic_output(output) as tmp:
        float_model = Path(scratch) / "fp32.tflite"
        say(f"converting with litert-torch ({layout.upper()} input)")
        wrapped = _wrap(module, channel_last)
        args = tuple(to_layout(_example(spec, examples[spec.name]), i in channel_last) for i, spec in enumerate(specs))
        # Read before converting: bad data fails fast; the reader keeps samples to validate on.
        reader = _calibration_reader(calib, specs, examples, source_preprocess) if calib is not None else None
        _convert(wrapped, args, float_model if precision != "fp32" else tmp)
        if precision == "int8":
            say("calibrating full-integer int8 (ai-edge-quantizer)")
            calibration, notes = quantize_int8(float_model, tmp, reader, specs, args, channel_last)
        elif precision != "fp32":
            say(f"applying the {precision} recipe (ai-edge-quantizer)")
            quantize_recipe(float_model, tmp, precision)
        _write_provenance(tmp, source, specs, precision, layout, preprocess_spec, calibration, output_names, task=task)
        say("validating against PyTorch")
        validation, inputs, outputs, integer_io = _validate(tmp, reference, specs, examples, channel_last, precision,
                                                            reader, atol, rtol)
        accuracy = _accuracy(tmp, reference, eval_data, specs, examples, channel_last, source_preprocess) \
            if eval_data else None
        _write_provenance(tmp, source, specs, precision, layout, preprocess_spec, calibration, output_names, inputs,
                       outputs, validation, integer_io, accuracy, task=task)
    size = output.stat().st_size
    return ExportResult(output, "tflite", inputs, outputs, validation, size, time.perf_counter() - started, notes,
                        task=task, precision=precision, layout=layout, calibration=calibration, accuracy=accuracy)


def _check_arguments(output: Path, precision: str, layout: str, calib, source, weights) -> None:
    if precision not in PRECISIONS:
        raise InputError(f"expected --precision among {', '.join(PRECISIONS)} for TFLite, found {precision!r}.",
                         hint="fp32, fp16, int8-dynamic or int8 (full integer).")
    if layout not in LAYOUTS:
        raise InputError(f"expected --layout nhwc or nchw, found {layout!r}.", hint="nhwc is what the Edge TPU needs.")
    if output.suffix.lower() != ".tflite":
        raise InputError(f"expected an output path ending in .tflite, found {output}.", hint="Name it model.tflite.")
    if precision == "int8" and calib is None:
        raise InputError("full-integer int8 needs calibration data; found no --calib.",
                         hint="Give --calib with a folder of images or an .npy/.npz in the source model's layout "
                              "(random:N only to try the pipeline).")
    check_output_path(output, *[p for p in (source, weights) if isinstance(p, (str, os.PathLike))])


def _require_litert_torch() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the converter's C++ INFO lines say nothing to users
    try:
        with quiet_converters():
            import ai_edge_quantizer  # noqa: F401
            import litert_torch  # noqa: F401
    except ImportError as exc:
        raise RuntimeUnavailableError(f"TFLite export needs litert-torch ({exc}).",
                                      hint='Install it with: pip install "edge-inference-kit[tflite-export]"') from exc


def _preprocess(specs: list[TensorSpec], preprocess, layout: str) -> Preprocess | None:
    if preprocess is None:
        return None
    steps = preprocess if isinstance(preprocess, Preprocess) else Preprocess.for_input(specs[0], preprocess)
    return replace(steps, layout=layout)  # images for this model are laid out as its input is


def _example(spec: TensorSpec, shape: tuple[int, ...]):
    import torch

    return torch.from_numpy(random_feeds([TensorSpec(spec.name, shape, spec.dtype)], seed=0)[spec.name])


def _wrap(module, channel_last: list[int]):
    import litert_torch

    if not channel_last:
        return module
    return litert_torch.to_channel_last_io(module, args=channel_last).eval()  # a new wrapper starts in training mode


def _convert(module, args, path: Path) -> None:
    import litert_torch

    try:
        with quiet_converters():
            litert_torch.convert(module, args).export(str(path))
    except KitError:
        raise
    except Exception as exc:
        raise ExportError(f"litert-torch could not convert the model: {root_cause(exc)}",
                          hint="The model must export with torch.export; check forward() for data-dependent "
                               "control flow.") from exc


def _calibration_reader(calib, specs, examples, preprocess: dict | None) -> FeedReader:
    """Calibration feeds in the source model's layout, any batch size (regrouped to the model's
    static batch later). The reader keeps the first samples: the export is validated on them,
    whatever form the data came in (a data string, a reader or Python feed dicts)."""
    batched = [TensorSpec(s.name, ("batch", *examples[s.name][1:]), s.dtype) for s in specs]
    return calibration_feeds(calib, batched, preprocess, batch_size=16, keep=VALIDATION_SAMPLES)


def _write_provenance(path: Path, source: TorchSource, specs, precision, layout, preprocess, calibration, output_names,
                   inputs=None, outputs=None, validation=None, integer_io=None, accuracy=None, task=None) -> None:
    """Provenance inside the .tflite (its metadata; the file is rewritten, so call this after the model
    is final). Written twice: names first (the runtime reads them to load the model for validation),
    then with what validation found."""
    named = inputs or [TensorSpec(s.name, _layout_shape(s.shape, layout), s.dtype) for s in specs]
    provenance.write_tflite(path, provenance.new(
        **source.provenance(), stage="export", format="tflite", precision=precision, layout=layout,
        source_layout="nchw", inputs=[s.to_dict() for s in named],
        outputs=[s.to_dict() for s in outputs] if outputs else [{"name": name} for name in output_names],
        preprocess=preprocess.to_dict() if preprocess else None, calibration=calibration,
        validation={"outputs": [d.to_dict() for d in validation]} if validation else None,
        integer_io=[spec.to_dict() for spec in integer_io or []], accuracy=accuracy, task=task_settings(task)))


def _layout_shape(shape, layout: str):
    return (shape[0], shape[2], shape[3], shape[1]) if layout == "nhwc" and len(shape) == 4 else shape


def _unfaithful(diff: OutputDiff) -> bool:
    agreement_low = diff.top1 is not None and diff.top1 < MIN_INT8_AGREEMENT
    return diff.sqnr_db < MIN_INT8_SQNR_DB and (agreement_low or diff.top1 is None)


def _validate(path, reference, specs, examples, channel_last, precision, reader, atol, rtol):
    """TFLite (through the kit's runtime, real-valued I/O) against PyTorch on the same inputs:
    samples of the calibration data (kept by its reader, whatever form it came in), or random
    inputs when there is none."""
    from kit.runtimes.tflite import TFLiteRuntime

    feeds_list = _validation_feeds(reader, specs, examples)
    with TFLiteRuntime(path) as candidate:
        results = run([reference, Subject(candidate, "nhwc" if channel_last else None)],
                      ((feeds, None) for feeds in feeds_list), keep=True)
        inputs, outputs = candidate.inputs, candidate.outputs
    with TFLiteRuntime(path, raw=True) as raw:  # the integer tensors as stored, with scale and zero point
        integer_io = [spec for spec in raw.inputs + raw.outputs if spec.scale is not None]
    if precision == "fp32":
        tolerance = (atol, rtol)
    elif precision == "fp16":
        tolerance = FP16_TOLERANCE
    else:
        tolerance = (0.0, 0.0)  # int8 is judged on agreement and SQNR instead of elementwise error
    diffs = compare_outputs(results.outputs(0), results.outputs(1), atol=tolerance[0], rtol=tolerance[1])
    if precision.startswith("int8"):
        diffs = [replace(d, passed=not _unfaithful(d)) for d in diffs]
    failing = [d for d in diffs if not d.passed]
    if failing:
        detail = "; ".join(f"'{d.name}' max abs error {d.max_abs:.3g}" + (f", top-1 agreement {d.top1:.1%}"
                           if d.top1 is not None else "") for d in failing)
        hint = ("Give more representative calibration data." if precision.startswith("int8") else
                "Check forward() for data-dependent behaviour; raise --atol/--rtol only if the difference is "
                "acceptable.")
        raise ValidationError(f"the {precision} TFLite model does not match PyTorch: {detail}.",
                              hint=hint + " Nothing was written.")
    return diffs, inputs, outputs, integer_io


def _validation_feeds(reader: FeedReader | None, specs, examples) -> list[dict[str, np.ndarray]]:
    """Feed dicts of the model's static batch: the reader's kept samples (read now if the
    export did not read them), or 8 random ones."""
    static = [TensorSpec(s.name, examples[s.name], s.dtype) for s in specs]
    if reader is None:
        return [random_feeds(static, seed=i) for i in range(8)]
    for _ in reader:  # only what was not read yet: fp32/fp16 exports read their --calib here
        if reader.count >= VALIDATION_SAMPLES:
            break
    kept, batch = reader.kept_arrays(), static[0].shape[0]
    samples = len(kept[static[0].name]) if kept else 0
    if samples < batch:
        raise InputError(f"the calibration data holds {samples} samples; the model's static batch is {batch}.",
                         hint=f"Give at least {batch} samples (a few hundred for int8).")
    return [{spec.name: kept[spec.name][start:start + batch] for spec in static}
            for start in range(0, samples - batch + 1, batch)]


def _accuracy(path, reference, eval_data, specs, examples, channel_last, preprocess) -> dict[str, Any]:
    """Top-1 of PyTorch and of the export on labelled data, sample by sample (TFLite shapes are static)."""
    from kit.runtimes.tflite import TFLiteRuntime

    from kit.check.accuracy import accuracy as score

    data = open_data(str(eval_data), [TensorSpec(s.name, examples[s.name], s.dtype) for s in specs], preprocess)
    if not data.has_labels:
        raise InputError(f"{eval_data} has no labels to measure accuracy on.",
                         hint="Give an .npz with x and y, or an image folder with one subfolder per class.")
    with TFLiteRuntime(path) as candidate:  # sample by sample: TFLite shapes are static
        results = run([reference, Subject(candidate, "nhwc" if channel_last else None)], data.batches(1), keep=True)
    first = lambda outputs: next(iter(outputs.values()))  # noqa: E731 - the classification output
    torch_result, tflite_result = (score(first(results.outputs(i)), results.labels) for i in (0, 1))
    return {"data": str(eval_data), "count": tflite_result.count, "pytorch_top1": torch_result.top1,
            "tflite_top1": tflite_result.top1, "delta": tflite_result.top1 - torch_result.top1}
