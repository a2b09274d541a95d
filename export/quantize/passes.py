"""The calls into ONNX Runtime's quantization tools (pre-processing, the opset step that
per-channel scales need, static and dynamic int8, fp16) with their log noise kept off the
terminal, and the check that ONNX Runtime can load what they wrote."""

from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
from pathlib import Path

from kit.export.quantize.presets import QuantPreset
from kit.export.quantize.result import QuantizeResult

from kit.core.errors import KitError, KitWarning, first_line, root_cause
from kit.core.fileio import disk_full
from kit.data.calibration import FeedReader

PER_CHANNEL_OPSET = 13  # DequantizeLinear's axis (per-channel scales) arrived in opset 13


def prepare(model: Path, prepared: Path, result: QuantizeResult, say) -> Path:
    """ORT's quant_pre_process (shape inference, optimization); on third-party graphs whose
    symbolic shape inference fails, again without it; failing that, the model as it is.

    It runs in the scratch folder: symbolic shape inference that gives up saves
    ``sym_shape_infer_temp.onnx`` into the current folder (a user's file of that name would be
    overwritten), and ONNX Runtime's quantizer writes ``NAME-inferred.onnx`` beside the graph
    it is given, so even the unprocessed model is quantized from a copy there."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    say("pre-processing (shape inference, graph optimization)")
    model, prepared = model.resolve(), prepared.resolve()
    with _working_folder(prepared.parent):
        for skip_symbolic in (False, True):
            try:
                with quiet():
                    quant_pre_process(str(model), str(prepared), skip_symbolic_shape=skip_symbolic)
                if skip_symbolic:
                    result.notes.append("pre-processing ran without symbolic shape inference, which failed on this "
                                        "graph.")
                return prepared
            except Exception as exc:
                if disk_full(exc):
                    raise
                failure = root_cause(exc)
    result.notes.append(f"pre-processing failed ({failure}); quantized the model as exported.")
    onnx.save(onnx.load(str(model)), str(prepared))
    return prepared


@contextlib.contextmanager
def _working_folder(folder: Path):
    """The block runs in ``folder`` (the process's working folder: the CLI runs one command at a time)."""
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def opset_for_per_channel(prepared: Path, converted: Path, result: QuantizeResult) -> Path:
    """Per-channel scales need DequantizeLinear's ``axis`` (opset 13). ONNX Runtime's quantizer
    keeps an older opset as it is and writes a graph ONNX Runtime refuses to load (third-party
    opset-11 CNNs), so the graph is converted with onnx's version converter first, or, when
    that fails, quantized per-tensor."""
    import onnx

    proto = onnx.load(str(prepared))
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), PER_CHANNEL_OPSET)
    if opset >= PER_CHANNEL_OPSET:
        return prepared
    try:
        with quiet():
            onnx.save(onnx.version_converter.convert_version(proto, PER_CHANNEL_OPSET), str(converted))
    except Exception as exc:
        result.per_channel = False
        result.notes.append(f"quantized per-tensor: per-channel int8 needs opset {PER_CHANNEL_OPSET} "
                            f"(DequantizeLinear's axis), and converting this opset-{opset} graph failed "
                            f"({root_cause(exc)}).")
        return prepared
    result.notes.append(f"converted the graph from opset {opset} to {PER_CHANNEL_OPSET}: per-channel int8 needs "
                        "DequantizeLinear's axis, and ONNX Runtime's quantizer would otherwise write a graph it "
                        "cannot load.")
    return converted


def check_loadable(quantized: Path, model: Path, precision: str) -> None:
    """ONNX Runtime's quantization tools can write a graph ONNX Runtime refuses: name the node
    and the user's model in the error, never the temporary file."""
    import onnx
    import onnxruntime

    try:
        with quiet():
            onnxruntime.InferenceSession(str(quantized), providers=["CPUExecutionProvider"])
        return
    except Exception as exc:
        message = first_line(exc, limit=2000)
    node = re.search(r'In Node, \("([^"]*)", (\w+)', message)
    reason = re.search(r", Error (.*)", message)
    detail = reason[1] if reason else re.sub(r"Load model from .* failed:", "", message).strip()
    wrote = f"ONNX Runtime's tools wrote an {precision} graph of {model} that ONNX Runtime cannot load"
    if node is None:
        raise KitError(f"{wrote}: {detail}", hint="Try another --precision, or --per-tensor. Nothing was written.")
    graph = onnx.load(str(quantized), load_external_data=False).graph
    writer = next(n for n in graph.node if n.name == node[1])
    readers = [n.name for n in graph.node if set(n.input) & set(writer.output) and n.name]
    raise KitError(f"{wrote}: node {node[1]!r} ({node[2]}): {detail}",
                   hint=(f"Keep {', '.join(readers)} in float with --exclude, or try " if readers else "Try ")
                   + "--per-tensor or another --precision. Nothing was written.")


def static_int8(prepared: Path, output: Path, reader: FeedReader, preset: QuantPreset, per_channel: bool,
            method: str, excluded: list[str]) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    extra = preset.extra_options()
    # Not "CalibMaxIntermediateOutputs": in ONNX Runtime 1.32 it discards the batches it
    # collected instead of folding them into the ranges, so only the last ones count.
    # Calibration therefore holds every batch's activations until the end.
    if method == "percentile":
        extra["CalibPercentile"] = 99.999
    try:
        with quiet():  # the histogram calibrators print progress
            quantize_static(
                str(prepared), str(output), reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                reduce_range=preset.reduce_range,
                activation_type=QuantType.QUInt8 if preset.activation_type == "uint8" else QuantType.QInt8,
                weight_type=QuantType.QInt8, nodes_to_exclude=excluded or None,
                op_types_to_quantize=list(preset.op_types) if preset.op_types else None,
                calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                                  "percentile": CalibrationMethod.Percentile}[method],
                extra_options=extra)
    except KitError:
        raise
    except Exception as exc:
        raise KitError(f"ONNX Runtime's static quantization failed: {root_cause(exc)}",
                       hint="Try --exclude for the node it names, or int8-dynamic / fp16.") from exc


def dynamic_int8(prepared: Path, output: Path, preset: QuantPreset, per_channel: bool, excluded: list[str]) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        with quiet():
            quantize_dynamic(str(prepared), str(output), per_channel=per_channel, reduce_range=preset.reduce_range,
                         weight_type=QuantType.QInt8, nodes_to_exclude=excluded or None)
    except Exception as exc:
        raise KitError(f"ONNX Runtime's dynamic quantization failed: {root_cause(exc)}",
                       hint="Try static int8 with --calib, or fp16.") from exc


def to_fp16(model, output: Path, result: QuantizeResult) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with quiet():
        half = convert_float_to_float16(model, keep_io_types=True, node_block_list=result.excluded or None)
    onnx.save(half, str(output))
    result.notes.append("fp16 halves the size; ONNX Runtime's CPU provider computes it no faster than fp32 "
                        "(it casts). Inputs and outputs stay float32.")


def ort_runtime(model: Path):
    from kit.runtimes.ort import OnnxRuntime

    return OnnxRuntime(model)


@contextlib.contextmanager
def quiet():
    """ONNX Runtime's quantization tools talk to the terminal through Python's logging (advice,
    and tracebacks of failures they recover from), print() (calibration progress) and the C++
    logger (graph warnings such as unused initializers). The kit reports progress, notes and
    errors itself, so around each library call only the kit's own words remain."""
    import onnxruntime

    onnxruntime.set_default_logger_severity(4)  # C++: fatal only; the kit turns errors into its own
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):  # logging's last-resort handler writes to sys.stderr
            warnings.simplefilter("ignore")
            warnings.simplefilter("always", KitWarning)  # the kit's own still reach the caller
            yield
    finally:
        onnxruntime.set_default_logger_severity(2)  # ONNX Runtime's default (warnings)
