"""PyTorch -> TFLite (LiteRT) with litert-torch, in four precisions, validated against PyTorch.

- ``fp32``: litert-torch's converter;
- ``int8``: full integer (int8 weights, activations, input and output) through litert-torch's
  PT2E quantizer (torchao), calibrated on the user's data;
- ``fp16`` and ``int8-dynamic``: ai-edge-quantizer recipes applied to the fp32 model
  (fp16 weights; int8 weights with float activations quantized at run time).

NHWC input (``layout="nhwc"``, the default for int8, which the Edge TPU needs) wraps the
model with ``litert_torch.to_channel_last_io``; calibration and validation data stay in
the source model's NCHW layout and the kit transposes them. Provenance, including the
layout and the input/output quantization, is stored inside the .tflite (its metadata map).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from kit import provenance
from kit.compare import OutputDiff, compare_outputs
from kit.data import FeedReader, calibration_feeds, open_data
from kit.errors import ExportError, InputError, KitError, RuntimeUnavailableError, ValidationError, root_cause
from kit.fileio import atomic_output, check_output_path
from kit.preprocess import Preprocess
from kit.quiet import silenced
from kit.sources import TorchSource, input_specs, load_torch_source, source_from_module
from kit.specs import TensorSpec, parse_input_shapes, random_feeds

PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8")
LAYOUTS = ("nchw", "nhwc")
VALIDATION_SAMPLES = 64
MIN_INT8_AGREEMENT = 0.9  # an int8 export fails below this top-1 agreement with PyTorch ...
MIN_INT8_SQNR_DB = 20.0  # ... unless its outputs are this close (near-tied scores flip top-1 without harm)
FP16_TOLERANCE = (1e-2, 1e-2)  # atol, rtol for fp16 weights


@dataclass
class TFLiteResult:
    path: Path
    precision: str
    layout: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    validation: list[OutputDiff]
    size_bytes: int
    seconds: float
    calibration: dict[str, Any] | None = None
    accuracy: dict[str, Any] | None = None  # top-1 of PyTorch and of the TFLite model on --eval data
    notes: list[str] = field(default_factory=list)  # what the user should know about this export

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": "tflite", "precision": self.precision, "layout": self.layout,
                "inputs": [s.to_dict() for s in self.inputs], "outputs": [s.to_dict() for s in self.outputs],
                "validation": {"outputs": [d.to_dict() for d in self.validation]}, "size_bytes": self.size_bytes,
                "seconds": round(self.seconds, 3), "calibration": self.calibration, "accuracy": self.accuracy,
                "notes": list(self.notes)}


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
    progress: Callable[[str], None] | None = None,
) -> TFLiteResult:
    """Export ``source`` to a .tflite at ``output``; nothing is written unless validation passes.

    Calibration (``calib``) and ``eval_data`` (labelled: top-1 of PyTorch and of the export is
    reported) are in the source model's layout; image folders use the ``preprocess`` spec.
    """
    started = time.perf_counter()
    say = progress or (lambda message: None)
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
    calibration = None
    with tempfile.TemporaryDirectory() as scratch, atomic_output(output) as tmp:
        float_model = Path(scratch) / "fp32.tflite"
        say(f"converting with litert-torch ({layout.upper()} input)")
        wrapped = _wrap(module, channel_last)
        args = tuple(_to_layout(_example(spec, examples[spec.name]), i in channel_last) for i, spec in enumerate(specs))
        if precision == "int8":
            say("calibrating full-integer int8 (PT2E)")
            reader = _calibration_reader(calib, specs, examples, source_preprocess)
            calibration = _convert_int8(wrapped, args, reader, channel_last, tmp)
        else:
            _convert(wrapped, args, float_model if precision != "fp32" else tmp)
            if precision != "fp32":
                say(f"applying the {precision} recipe (ai-edge-quantizer)")
                _recipe(float_model, tmp, precision)
        _write_sidecar(tmp, source, specs, precision, layout, preprocess_spec, calibration, output_names)
        say("validating against PyTorch")
        validation, inputs, outputs, integer_io = _validate(tmp, reference, specs, examples, channel_last, precision,
                                                            calib, source_preprocess, atol, rtol)
        accuracy = _accuracy(tmp, reference, eval_data, specs, examples, channel_last, source_preprocess) \
            if eval_data else None
        _write_sidecar(tmp, source, specs, precision, layout, preprocess_spec, calibration, output_names, inputs,
                       outputs, validation, integer_io, accuracy)
    size = output.stat().st_size
    return TFLiteResult(output, precision, layout, inputs, outputs, validation, size, time.perf_counter() - started,
                        calibration, accuracy)


# ----- checks and helpers -----------------------------------------------------------------


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
        with _quiet():  # torchao prints "Failed to load" lines for GPU kernels it cannot use on this machine
            import litert_torch  # noqa: F401
            import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401
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


def _to_layout(tensor_or_array, channel_last: bool):
    """NCHW -> NHWC for an input the model takes channel-last (torch tensors and numpy arrays)."""
    if not channel_last:
        return tensor_or_array
    return tensor_or_array.permute(0, 2, 3, 1) if hasattr(tensor_or_array, "permute") else \
        np.ascontiguousarray(tensor_or_array.transpose(0, 2, 3, 1))


def _wrap(module, channel_last: list[int]):
    import litert_torch

    if not channel_last:
        return module
    return litert_torch.to_channel_last_io(module, args=channel_last).eval()  # a new wrapper starts in training mode


def _quiet():
    """The converters' own chatter (warnings, progress, log lines) says nothing to our users."""
    return silenced("absl", "torch.export", "torch._dynamo", "litert_torch")


def _convert(module, args, path: Path) -> None:
    import litert_torch

    try:
        with _quiet():
            litert_torch.convert(module, args).export(str(path))
    except KitError:
        raise
    except Exception as exc:
        raise ExportError(f"litert-torch could not convert the model: {root_cause(exc)}",
                          hint="The model must export with torch.export; check forward() for data-dependent "
                               "control flow.") from exc


def _calibration_reader(calib, specs, examples, preprocess: dict | None) -> FeedReader:
    """Calibration feeds in the source model's layout, any batch size (split to single samples later)."""
    batched = [TensorSpec(s.name, ("batch", *examples[s.name][1:]), s.dtype) for s in specs]
    return calibration_feeds(calib, batched, preprocess, batch_size=16)


def _convert_int8(module, args, reader: FeedReader, channel_last: list[int], path: Path) -> dict[str, Any]:
    import litert_torch
    import torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    try:
        with _quiet():
            prepared = prepare_pt2e(torch.export.export(module, args).module(), quantizer)
            names = None
            for feeds in reader:
                names = names or list(feeds)
                batch = [torch.from_numpy(_to_layout(feeds[name], i in channel_last)) for i, name in enumerate(names)]
                for row in range(len(batch[0])):  # the exported program has a static batch of one
                    prepared(*(tensor[row:row + 1] for tensor in batch))
            if reader.count == 0:
                raise InputError("the calibration set is empty.", hint="Give a few hundred representative samples.")
            converted = convert_pt2e(prepared, fold_quantize=False)
            litert_torch.convert(converted, args, quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(path))
    except KitError:
        raise
    except Exception as exc:
        raise ExportError(f"full-integer int8 conversion failed: {root_cause(exc)}",
                          hint="Try --precision int8-dynamic, or check the model exports with torch.export.") from exc
    return {"count": reader.count, "sha256": reader.sha256()}


def _recipe(float_model: Path, output: Path, precision: str) -> None:
    from ai_edge_quantizer import qtyping, quantizer, recipe

    try:
        with _quiet():
            engine = quantizer.Quantizer(str(float_model))
            if precision == "int8-dynamic":
                engine.load_quantization_recipe(recipe.dynamic_wi8_afp32())
            else:  # fp16 weights, float compute
                engine.update_quantization_recipe(
                    regex=".*", algorithm_key=quantizer.AlgorithmName.FLOAT_CASTING,
                    operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                    op_config=qtyping.OpQuantizationConfig(
                        weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=16,
                                                                              dtype=qtyping.TensorDataType.FLOAT),
                        compute_precision=qtyping.ComputePrecision.FLOAT, explicit_dequantize=True))
            engine.quantize().export_model(str(output), overwrite=True)
    except Exception as exc:
        raise ExportError(f"ai-edge-quantizer could not apply {precision}: {root_cause(exc)}",
                          hint="Try another --precision.") from exc


def _write_sidecar(path: Path, source: TorchSource, specs, precision, layout, preprocess, calibration, output_names,
                   inputs=None, outputs=None, validation=None, integer_io=None, accuracy=None) -> None:
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
        integer_io=[spec.to_dict() for spec in integer_io or []], accuracy=accuracy))


def _layout_shape(shape, layout: str):
    return (shape[0], shape[2], shape[3], shape[1]) if layout == "nhwc" and len(shape) == 4 else shape


def _unfaithful(diff: OutputDiff) -> bool:
    agreement_low = diff.top1 is not None and diff.top1 < MIN_INT8_AGREEMENT
    return diff.sqnr_db < MIN_INT8_SQNR_DB and (agreement_low or diff.top1 is None)


def _validate(path, reference, specs, examples, channel_last, precision, calib, preprocess, atol, rtol):
    """TFLite (through the kit's runtime, real-valued I/O) against PyTorch on the same inputs."""
    from kit.runtimes.tflite import TFLiteRuntime

    if calib is not None and isinstance(calib, (str, os.PathLike)):
        data = open_data(str(calib), [TensorSpec(s.name, examples[s.name], s.dtype) for s in specs], preprocess)
        feeds_list = [feeds for feeds, _ in data.batches(1, VALIDATION_SAMPLES)]
    else:
        feeds_list = [random_feeds([TensorSpec(s.name, examples[s.name], s.dtype) for s in specs], seed=i)
                      for i in range(8)]
    expected, got = [], []
    with TFLiteRuntime(path) as candidate:
        for feeds in feeds_list:
            expected.append(reference.run(feeds))
            got.append(candidate.run({spec.name: _to_layout(feeds[spec.name], i in channel_last)
                                      for i, spec in enumerate(candidate.inputs)}))
        inputs, outputs = candidate.inputs, candidate.outputs
    with TFLiteRuntime(path, raw=True) as raw:  # the integer tensors as stored, with scale and zero point
        integer_io = [spec for spec in raw.inputs + raw.outputs if spec.scale is not None]
    stack = lambda runs: {name: np.concatenate([run[name] for run in runs]) for name in runs[0]}  # noqa: E731
    if precision == "fp32":
        tolerance = (atol, rtol)
    elif precision == "fp16":
        tolerance = FP16_TOLERANCE
    else:
        tolerance = (0.0, 0.0)  # int8 is judged on agreement and SQNR instead of elementwise error
    diffs = compare_outputs(stack(expected), stack(got), atol=tolerance[0], rtol=tolerance[1])
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


def _accuracy(path, reference, eval_data, specs, examples, channel_last, preprocess) -> dict[str, Any]:
    """Top-1 of PyTorch and of the export on labelled data, sample by sample (TFLite shapes are static)."""
    from kit.accuracy import accuracy as score
    from kit.runtimes.tflite import TFLiteRuntime

    data = open_data(str(eval_data), [TensorSpec(s.name, examples[s.name], s.dtype) for s in specs], preprocess)
    if not data.has_labels:
        raise InputError(f"{eval_data} has no labels to measure accuracy on.",
                         hint="Give an .npz with x and y, or an image folder with one subfolder per class.")
    expected, got, labels = [], [], []
    with TFLiteRuntime(path) as candidate:
        for feeds, batch_labels in data.batches(1):
            expected.append(next(iter(reference.run(feeds).values())))
            got.append(next(iter(candidate.run({spec.name: _to_layout(feeds[spec.name], i in channel_last)
                                                for i, spec in enumerate(candidate.inputs)}).values())))
            labels.append(batch_labels)
    labels = np.concatenate(labels)
    torch_result, tflite_result = score(np.concatenate(expected), labels), score(np.concatenate(got), labels)
    return {"data": str(eval_data), "count": tflite_result.count, "pytorch_top1": torch_result.top1,
            "tflite_top1": tflite_result.top1, "delta": tflite_result.top1 - torch_result.top1}
