"""PyTorch -> OpenVINO IR (``model.xml`` and its weights ``model.bin``), for users who want
OpenVINO's own files (the openvino runtime also reads .onnx and .tflite directly).

The way there is the kit's ONNX export (validated against PyTorch on ONNX Runtime), then
OpenVINO's converter (``openvino.convert_model``); the IR is validated in turn against that
ONNX model on ONNX Runtime, on the same inputs, and both files move into place together
(the .bin first: a reader never finds the .xml without its weights). Precisions:

- ``fp32``;
- ``fp16``: weights stored in f16 (``save_model(compress_to_fp16=True)``, half the size);
  OpenVINO computes in the plugin's precision (f32 on the kit's CPU runtime);
- ``int8``: the ONNX is quantized by ``kit quantize`` (QDQ, calibrated on ``calib``), which
  OpenVINO reads as FakeQuantize and runs in int8; judged by top-1 agreement and SQNR with
  the QDQ model on ONNX Runtime over calibration samples, not elementwise.

Provenance (preprocessing, task, validation) goes into the IR's ``rt_info`` as
``kit_provenance``, so the .xml carries it as the .onnx and .tflite do.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from kit.check.metrics import compare_outputs, worst
from kit.check.runner import run
from kit.core import provenance
from kit.core.errors import InputError, RuntimeUnavailableError, ValidationError
from kit.core.fileio import atomic_output, check_output_path, model_size
from kit.core.specs import random_feeds
from kit.export.result import FP16_TOLERANCE, ExportResult

PRECISIONS = ("fp32", "fp16", "int8")
INT8_SAMPLES = 64  # calibration samples the int8 IR is judged on
MIN_INT8_AGREEMENT, MIN_INT8_SQNR_DB = 0.97, 25.0  # against the same QDQ model on ONNX Runtime: one graph, two engines


def export_openvino(
    source: Any,
    output: str | os.PathLike,
    *,
    precision: str = "fp32",
    calib: Any = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    progress: Callable[[str], None] | None = None,
    **onnx_options: Any,
) -> ExportResult:
    """Export ``source`` to OpenVINO IR at ``output`` (.xml; its .bin beside it); nothing is
    written unless every check passes. ``onnx_options`` are kit.export.onnx.export_onnx's
    (input_shapes, weights, preprocess, task, static, dynamic, opset, exporter, ...)."""
    from kit.export.onnx import export_onnx

    started = time.perf_counter()
    say = progress or (lambda message: None)
    output = Path(output)
    _check_arguments(output, precision, calib, source, onnx_options.get("weights"))
    openvino = _require_openvino()
    with tempfile.TemporaryDirectory(prefix="kit-openvino.") as scratch:
        onnx_path = Path(scratch) / f"{output.stem}.onnx"
        exported = export_onnx(source, onnx_path, atol=atol, rtol=rtol, progress=say, **onnx_options)
        notes = [*exported.notes, f"the ONNX step matched PyTorch within atol {atol:g}, rtol {rtol:g} "
                                  f"(max abs error {max(d.max_abs for d in exported.validation):.3g})."]
        converted_from = onnx_path
        if precision == "int8":
            from kit.export.quantize import quantize

            say("quantizing the ONNX model to int8 (QDQ)")
            converted_from = Path(scratch) / f"{output.stem}.int8.onnx"
            notes += quantize(onnx_path, converted_from, calib=calib).notes
        say("converting with OpenVINO")
        model = openvino.convert_model(str(converted_from))
        recorded = {**provenance.read(converted_from), "stage": "export", "format": "openvino",
                    "precision": precision}
        for intermediate in ("parent", "parent_sha256"):  # the ONNX in the scratch folder, gone with it
            recorded.pop(intermediate, None)
        with atomic_output(output) as tmp:
            model.set_rt_info(provenance.encode(recorded), provenance.OPENVINO_KEY)
            openvino.save_model(model, str(tmp), compress_to_fp16=precision == "fp16")
            say("validating against the ONNX model on ONNX Runtime")
            validation, inputs, outputs = _validate(tmp, converted_from, precision, calib, atol, rtol, exported)
            recorded["validation"] = {"against": "onnx", "outputs": [d.to_dict() for d in validation]}
            model.set_rt_info(provenance.encode(recorded), provenance.OPENVINO_KEY)
            openvino.save_model(model, str(tmp), compress_to_fp16=precision == "fp16")
    return ExportResult(output, "openvino", inputs, outputs, validation, model_size(output),
                        time.perf_counter() - started, notes, exported.batches, exported.task, precision=precision)


def _check_arguments(output: Path, precision: str, calib, source, weights) -> None:
    if precision not in PRECISIONS:
        raise InputError(f"expected --precision among {', '.join(PRECISIONS)} for OpenVINO, found {precision!r}.",
                         hint="fp32, fp16 (f16 weights) or int8 (with --calib).")
    if output.suffix != ".xml":  # lower case: OpenVINO's save_model accepts no other
        raise InputError(f"expected an output path ending in .xml (OpenVINO IR; its .bin goes beside it), found "
                         f"{output}.", hint="Name it model.xml.")
    if precision == "int8" and calib is None:
        raise InputError("int8 needs calibration data; found no --calib.",
                         hint="Give --calib with a folder of images or an .npy/.npz in the model's layout.")
    sources = [p for p in (source, weights) if isinstance(p, (str, os.PathLike))]
    check_output_path(output, *sources)
    check_output_path(output.with_suffix(".bin"), *sources)  # the weights file is written too


def _require_openvino():
    try:
        import openvino
    except ImportError as exc:
        raise RuntimeUnavailableError(f"OpenVINO export needs OpenVINO ({exc}).",
                                      hint='Install it with: pip install "edge-inference-kit[openvino]"') from exc
    return openvino


def _validate(ir: Path, onnx_path: Path, precision: str, calib, atol: float, rtol: float, exported: ExportResult):
    """The IR on OpenVINO against the ONNX it came from on ONNX Runtime: fp32 within atol/rtol,
    fp16 within FP16_TOLERANCE, int8 by agreement and SQNR on calibration samples."""
    from kit.runtimes.openvino import OpenVinoRuntime
    from kit.runtimes.ort import OnnxRuntime

    with OnnxRuntime(onnx_path, threads=1) as reference, OpenVinoRuntime(ir, threads=1) as candidate:
        results = run([reference, candidate], _feeds(reference, precision, calib, exported), keep=True)
        inputs, outputs = candidate.inputs, candidate.outputs
    tolerance = {"fp32": (atol, rtol), "fp16": FP16_TOLERANCE, "int8": (0.0, 0.0)}[precision]
    diffs = worst(compare_outputs(results.outputs(0), results.outputs(1), atol=tolerance[0], rtol=tolerance[1]))
    if precision == "int8":  # one QDQ graph on two engines: each rounds its own way, so judged as int8 is
        diffs = [replace(d, passed=d.sqnr_db >= MIN_INT8_SQNR_DB or (d.top1 or 0) >= MIN_INT8_AGREEMENT)
                 for d in diffs]
    failing = [d for d in diffs if not d.passed]
    if failing:
        detail = "; ".join(f"'{d.name}' max abs error {d.max_abs:.3g}, SQNR {d.sqnr_db:.1f} dB" for d in failing)
        raise ValidationError(f"the {precision} OpenVINO IR does not match its ONNX model on ONNX Runtime: {detail}.",
                              hint="Report the model to OpenVINO; export ONNX and run it with --runtime openvino "
                                   "to compare. Nothing was written.")
    return diffs, inputs, outputs


def _feeds(reference, precision: str, calib, exported: ExportResult):
    """Random feeds at each validated batch size for float precisions; calibration samples, one
    at a time, for int8 (random inputs say nothing about a quantized model)."""
    if precision != "int8":
        axis = (reference.inputs[0].shape or [None])[0]  # a dynamic batch axis, by its name
        return ((random_feeds(reference.inputs, seed=seed, **({axis: batch} if isinstance(axis, str) else {})), None)
                for seed, batch in enumerate(exported.batches or [1], start=1))
    from kit.data.datasets import open_data

    stored = provenance.read(reference.model_path).get("preprocess")
    return open_data(str(calib), reference.inputs, stored).batches(1, limit=INT8_SAMPLES)
