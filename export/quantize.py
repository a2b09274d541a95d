"""ONNX -> quantized ONNX with ONNX Runtime's quantization tools.

- ``int8``: static QDQ, calibrated on the user's data (streamed), with a hardware preset;
- ``int8-dynamic``: weights int8, activations quantized at run time (for MatMul-heavy models);
- ``fp16``: float16 weights and compute, float32 inputs and outputs kept.

Presets follow what ONNX Runtime documents and what was measured here (../shared/DESIGN.md):
AVX2 without VNNI saturates in its U8S8 kernels, so ``avx2`` uses reduce_range; TensorRT
needs symmetric int8 and float bias. The "Distribution" calibration is not offered: it
breaks uint8 models.
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from kit.check.metrics import OutputDiff, compare_outputs
from kit.core import provenance
from kit.core.errors import (
    DiskFullError,
    InputError,
    KitError,
    KitWarning,
    ModelFileError,
    RuntimeUnavailableError,
    first_line,
    root_cause,
)
from kit.core.fileio import atomic_output, check_output_path, disk_full, disk_full_error, model_size, sha256_of
from kit.data.batching import free_batch
from kit.data.calibration import FeedReader, calibration_data
from kit.data.datasets import Dataset

PRECISIONS = ("int8", "int8-dynamic", "fp16")
METHODS = ("minmax", "entropy", "percentile")
MIN_CALIBRATION = 200  # below this, CNN activation ranges are poorly estimated
FAITHFUL_SQNR_DB = 20.0  # below this (or below 95% top-1 agreement) the int8 model is flagged
FAITHFUL_TOP1 = 0.95
FIDELITY_SAMPLES = 64  # calibration samples kept to check the quantized model against the float one
PER_CHANNEL_OPSET = 13  # DequantizeLinear's axis (per-channel scales) arrived in opset 13
QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul",
                 "MatMulInteger", "ConvInteger", "QGemm", "QLinearAdd"}


@dataclass(frozen=True)
class QuantPreset:
    """How int8 is laid out for one kind of hardware (Optimum-style hardware presets)."""

    name: str
    activation_type: str  # "uint8" or "int8"
    reduce_range: bool = False
    activation_symmetric: bool = False
    weight_symmetric: bool = True
    quantize_bias: bool = True
    why: str = ""

    def extra_options(self) -> dict[str, Any]:
        return {"ActivationSymmetric": self.activation_symmetric, "WeightSymmetric": self.weight_symmetric,
                "QuantizeBias": self.quantize_bias}


PRESETS = {
    "avx2": QuantPreset("avx2", "uint8", reduce_range=True,
                        why="x86-64 without VNNI: U8S8 kernels saturate, so weights use 7 bits"),
    "vnni": QuantPreset("vnni", "uint8", why="x86-64 with AVX-512 VNNI or AVX-VNNI: full-range U8S8"),
    "arm64": QuantPreset("arm64", "int8", why="ARM64: S8S8, ONNX Runtime's default QDQ layout"),
    "tensorrt": QuantPreset("tensorrt", "int8", activation_symmetric=True, quantize_bias=False,
                            why="TensorRT: symmetric int8 and float bias (it rejects int32 bias)"),
}


def detect_target() -> str:
    """The preset for this machine: arm64, vnni when the CPU has VNNI, else avx2."""
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "arm64"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    return "vnni" if ("avx512_vnni" in flags or "avx_vnni" in flags) else "avx2"


@dataclass
class QuantizeResult:
    path: Path
    precision: str
    size_bytes: int
    source_size_bytes: int
    seconds: float
    target: str | None = None
    method: str | None = None
    per_channel: bool | None = None
    excluded: list[str] = field(default_factory=list)
    calibration: dict[str, Any] | None = None
    fidelity: list[OutputDiff] = field(default_factory=list)  # against the source on calibration samples
    budget: dict[str, Any] | None = None  # set by quantize_to_budget
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "precision": self.precision, "size_bytes": self.size_bytes,
                "source_size_bytes": self.source_size_bytes, "seconds": round(self.seconds, 3),
                "target": self.target, "method": self.method, "per_channel": self.per_channel,
                "excluded": self.excluded, "calibration": self.calibration,
                "fidelity": [_metrics(d) for d in self.fidelity], "budget": self.budget,
                "warnings": self.warnings, "notes": self.notes}


def _metrics(diff: OutputDiff) -> dict[str, Any]:
    data = diff.to_dict()
    data.pop("passed")  # fidelity here is measured, not judged: the budget or `kit compare` judges
    return data


def quantize(
    model: str | os.PathLike,
    output: str | os.PathLike,
    *,
    precision: str = "int8",
    calib: Any = None,
    method: str = "minmax",
    target: str = "auto",
    per_channel: bool = True,
    exclude: list[str] | None = None,
    calib_limit: int | None = None,
    preprocess: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> QuantizeResult:
    """Quantize ``model`` (.onnx, float32) to ``output``; nothing is written unless it all succeeds.

    ``calib`` is calibration data in any form kit.data.calibration.calibration_data takes. ``preprocess``
    (``--preprocess`` text) states how calibration images become the input of a model that
    records no preprocessing; the quantized model records it.
    """
    started = time.perf_counter()
    say = progress or (lambda message: None)
    model, output = Path(model), Path(output)
    _check_arguments(model, output, precision, method, target, calib_limit)
    source = _load_checked(model)
    inputs = _inputs(model)  # ONNX Runtime must load the float model, whatever the precision
    parent = provenance.read(model)
    stated = _stated_preprocess(preprocess, parent, model, calib, precision)
    result = QuantizeResult(output, precision, 0, model_size(model), 0.0, excluded=list(exclude or []))
    with _clean_full_disk(output), tempfile.TemporaryDirectory() as scratch, atomic_output(output) as tmp:
        scratch = Path(scratch)
        if precision == "fp16":
            say("converting to float16")
            result.excluded = _resolve_excluded(model, result.excluded)
            _to_fp16(source, tmp, result)
            _check_loadable(tmp, model, precision)
        else:
            prepared = _preprocess(model, scratch / "prepared.onnx", result, say)
            result.excluded = _resolve_excluded(prepared, result.excluded)
            preset = PRESETS[detect_target() if target == "auto" else target]
            result.target, result.per_channel = preset.name, per_channel
            if precision == "int8-dynamic":
                _warn_if_conv_heavy(source, result)
                say("quantizing weights (dynamic int8)")
                _dynamic(prepared, tmp, preset, per_channel, result.excluded)
                _check_loadable(tmp, model, precision)
            else:
                # ORT's histogram calibrators stack per-batch outputs and need equal batches.
                reader = FeedReader(_calibration_dataset(calib, model, inputs, calib_limit, stated), inputs=inputs,
                                    batch_size=16 if method == "minmax" else 1, limit=calib_limit,
                                    keep=FIDELITY_SAMPLES)
                result.method = method
                if per_channel:
                    prepared = _opset_for_per_channel(prepared, scratch / "opset13.onnx", result)
                say(f"calibrating on {reader.description} ({method})")
                _static(prepared, tmp, reader, preset, result.per_channel, method, result.excluded)
                _check_loadable(tmp, model, precision)
                result.calibration = {"source": reader.description, "count": reader.count,
                                      "sha256": reader.sha256(), "synthetic": reader.synthetic}
                _note_dropped(reader, result)
                _warn_about_calibration(result)
                say("checking the quantized model against the float model")
                result.fidelity = _fidelity(model, tmp, reader.kept_arrays(), reader.static_batch)
                _warn_if_unfaithful(result)
        _record(tmp, model, {**parent, "preprocess": stated} if stated else parent, result)
    result.size_bytes = model_size(output)
    result.seconds = time.perf_counter() - started
    return result


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
    each node, worst first); each step keeps one more layer, with its input chain, in float.
    """
    from kit.check.accuracy import check_budget
    from kit.check.harness import evaluate
    from kit.check.layers import layer_errors

    started = time.perf_counter()
    say = progress or (lambda message: None)
    model, output = Path(model), Path(output)
    _check_arguments(model, output, "int8", options.get("method", "minmax"), options.get("target", "auto"))
    check_budget(np.ones(1), np.ones(1), max_drop=max_drop, min_ratio=min_ratio)  # the rule itself is valid
    _load_checked(model)
    inputs = _inputs(model)
    # Read the calibration data once: every try calibrates again, and a generator is spent after one pass.
    stated = _stated_preprocess(options.pop("preprocess", None), provenance.read(model), model, options.get("calib"))
    options["calib"] = _calibration_dataset(options.get("calib"), model, inputs, options.get("calib_limit"), stated)
    say("evaluating the float model")
    with _quiet():
        _, baseline = evaluate(model, eval_data, runtime="onnxruntime")
    excluded = list(options.pop("exclude", None) or [])
    steps: list[dict[str, Any]] = []
    with _clean_full_disk(output), tempfile.TemporaryDirectory() as scratch:
        trial = Path(scratch) / "trial.onnx"

        def attempt(extra: list[str]):
            result = quantize(model, trial, exclude=excluded + extra, progress=progress, **options)
            say(f"evaluating int8 with {len(excluded) + len(extra)} nodes in float")
            with _quiet():
                candidate = evaluate(trial, eval_data, runtime="onnxruntime")[1]
            check = check_budget(baseline, candidate, max_drop=max_drop, min_ratio=min_ratio)
            steps.append({"kept_in_float": excluded + extra, "top1": check.candidate, "passed": check.passed})
            return result, check

        result, check = attempt([])
        ranking = []
        if not check.passed:
            say("ranking layers by quantization damage")
            # Rank on the graph quantize() quantized (pre-processing renames fused nodes), so the
            # names it suggests are names quantize() can exclude.
            prepared = _preprocess(model, Path(scratch) / "prepared.onnx", QuantizeResult(model, "int8", 0, 0, 0.0),
                                   lambda message: None)
            with _quiet():
                layers = layer_errors(prepared, trial, options["calib"], inputs=inputs)
            ranking = [layer for layer in layers if (layer.drop_db or 0) > 0]
        kept: list[str] = []
        for layer in ranking[:max_steps]:
            if check.passed:
                break
            new = [n for n in layer.keep_in_float if n not in excluded + kept]
            if new:
                kept += new
                result, check = attempt(kept)
        if not check.passed:
            raise KitError(
                f"the accuracy budget ({check.rule}) cannot be met: with {len(excluded + kept)} nodes in float "
                f"int8 top-1 is {check.candidate:.4f} against {check.baseline:.4f} in float "
                f"(tried {len(steps)} configurations). Nothing was written.",
                hint="Give more or better calibration data, try --method entropy/percentile, relax the budget, "
                     "or ship fp16.")
        result.budget = {**check.to_dict(), "kept_in_float": kept, "steps": steps}
        parent = provenance.read(model)
        _record(trial, model, {**parent, "preprocess": stated} if stated else parent, result)
        with atomic_output(output) as tmp:
            shutil.copyfile(trial, tmp)
    result.path = output
    result.seconds = time.perf_counter() - started
    return result


# ----- checks ---------------------------------------------------------------------------


def _check_arguments(model: Path, output: Path, precision: str, method: str, target: str,
                     calib_limit: int | None = None) -> None:
    if calib_limit is not None and calib_limit < 1:
        raise InputError(f"expected --calib-limit >= 1, found {calib_limit}.", hint="Leave it out to use all samples.")
    if precision not in PRECISIONS:
        raise InputError(f"expected --precision among {', '.join(PRECISIONS)}, found {precision!r}.",
                         hint="int8 (static, calibrated), int8-dynamic or fp16.")
    if method not in METHODS:
        raise InputError(f"expected --method among {', '.join(METHODS)}, found {method!r}.",
                         hint="minmax is the usual start; entropy or percentile clip outliers.")
    if target != "auto" and target not in PRESETS:
        raise InputError(f"expected --target among auto, {', '.join(PRESETS)}, found {target!r}.",
                         hint="auto picks the preset for this machine.")
    for path, role in ((model, "input model"), (output, "output")):
        if path.suffix.lower() != ".onnx":
            raise InputError(f"expected the {role} to be an .onnx file, found {path}.", hint="Name it model.onnx.")
    if not model.is_file():
        raise ModelFileError(f"model file {model} does not exist.", hint="Check the path.")
    check_output_path(output, model)


def _load_checked(model: Path):
    """The float32 model, refusing files that are already quantized or float16."""
    try:
        import onnx
        import onnxruntime.quantization  # noqa: F401
    except ImportError as exc:
        raise RuntimeUnavailableError(f"quantization needs onnx and onnxruntime ({exc}).",
                                      hint='Install them with: pip install "edge-inference-kit[quantize]"') from exc

    try:
        proto = onnx.load(str(model))
    except Exception as exc:
        raise ModelFileError(f"{model} is not a readable ONNX model ({root_cause(exc)}).",
                             hint="Re-export it with kit export.") from exc
    if not proto.graph.node:  # an empty file, or bytes that happen to parse as an empty ModelProto
        raise ModelFileError(f"{model} holds no ONNX graph (it is empty or not an ONNX model).",
                             hint="Give the .onnx file kit export (or your exporter) wrote.")
    quantized = sorted({node.op_type for node in proto.graph.node} & QUANTIZED_OPS)
    if quantized:
        raise InputError(f"{model} is already quantized (it has {', '.join(quantized)} nodes).",
                         hint="Quantize the float32 model the export produced, not a quantized one.")
    float16 = onnx.TensorProto.FLOAT16
    if any(t.data_type == float16 for t in proto.graph.initializer) or any(
            v.type.tensor_type.elem_type == float16 for v in proto.graph.input):
        raise InputError(f"{model} is already float16.", hint="Quantize the float32 model the export produced.")
    return proto


def _resolve_excluded(graph_path: Path, excluded: list[str]) -> list[str]:
    """The graph's node names for the user's: ONNX Runtime's pre-processing renames the nodes it
    fuses to ``original/Fusion``, so a name from the float model matches those too."""
    if not excluded:
        return []
    import onnx

    names = [node.name for node in onnx.load(str(graph_path), load_external_data=False).graph.node]
    resolved, unknown = [], []
    for wanted in excluded:
        matches = [name for name in names if name == wanted or name.startswith(wanted + "/")]
        resolved += [name for name in matches if name not in resolved]
        if not matches:
            unknown.append(wanted)
    if unknown:
        named = [name for name in names if name]
        has = (f"it has {', '.join(named[:12])}{' ...' if len(named) > 12 else ''}" if named else
               "its nodes have no names")
        raise InputError(f"--exclude names {', '.join(unknown)}, which the graph does not have ({has}).",
                         hint="Take node names from `kit inspect --nodes MODEL` or from the per-layer report.")
    return resolved


def _calibration_dataset(calib, model: Path, inputs, limit: int | None, stated: dict | None) -> Dataset:
    """The calibration data in any form kit.data.calibration.calibration_data takes, for this model's inputs;
    images preprocessed as the model records, or as ``stated`` with --preprocess."""
    if calib is None:
        raise InputError("static int8 needs calibration data; found no --calib.",
                         hint="Give --calib with a folder of images or an .npy/.npz of inputs "
                              "(random:N only to try the pipeline: its ranges are not your data's).")
    return calibration_data(calib, inputs, stated or provenance.read(model).get("preprocess"), limit=limit)


def _stated_preprocess(text: str | None, parent: dict, model: Path, calib, precision: str = "int8") -> dict | None:
    """``--preprocess`` text as a preprocessing spec, for image-folder calibration of a model that
    records none (the quantized model then records it)."""
    if text is None:
        return None
    from kit.data.preprocess import Preprocess

    if parent.get("preprocess"):
        raise InputError(f"{model} records its own preprocessing; --preprocess is for models that record none.",
                         hint="Drop --preprocess: the recorded steps are the ones the model was exported with.")
    if precision != "int8":
        raise InputError(f"--preprocess describes how calibration images become the model's input, and "
                         f"--precision {precision} calibrates on nothing.",
                         hint="Drop --preprocess: it applies to static int8 calibrated on a folder of images.")
    if not isinstance(calib, (str, os.PathLike)) or not Path(calib).is_dir():
        raise InputError(f"--preprocess describes how calibration images become the model's input; {calib} is not "
                         "a folder of images (arrays are fed as they are).",
                         hint="Drop --preprocess, or give a folder of images.")
    return Preprocess.for_input(_inputs(model)[0], text).to_dict()


def _inputs(model: Path):
    with _quiet(), _ort(model) as rt:
        return rt.inputs


def _note_dropped(reader: FeedReader, result: QuantizeResult) -> None:
    if reader.dropped:
        result.notes.append(f"the model's batch axis is fixed at {reader.static_batch}: calibrated on "
                            f"{reader.count} samples, leaving out the last {reader.dropped} that do not fill a batch.")


def _warn_about_calibration(result: QuantizeResult) -> None:
    calibration = result.calibration
    if calibration["synthetic"]:
        _warn(result, f"calibrated on synthetic data ({calibration['source']}): activation ranges will not match "
                      "real inputs and accuracy may collapse. Use real samples for anything you ship.")
    elif calibration["count"] < MIN_CALIBRATION:
        _warn(result, f"only {calibration['count']} calibration samples; a CNN wants a few hundred representative "
                      f"ones (at least {MIN_CALIBRATION}).")


def _warn_if_conv_heavy(model, result: QuantizeResult) -> None:
    ops = [node.op_type for node in model.graph.node]
    convs, matmuls = ops.count("Conv"), ops.count("MatMul") + ops.count("Gemm")
    if convs > matmuls:
        _warn(result, f"dynamic int8 on a conv-heavy model ({convs} Conv, {matmuls} MatMul/Gemm) is usually slower "
                      "than FP32 on CPU; use static int8 with --calib.")


def _warn_if_unfaithful(result: QuantizeResult) -> None:
    """Int8 that quietly lost accuracy is the failure users report most: say it at once."""
    for diff in result.fidelity:
        if diff.sqnr_db < FAITHFUL_SQNR_DB or (diff.top1 is not None and diff.top1 < FAITHFUL_TOP1):
            agreement = f", top-1 agreement {diff.top1:.1%}" if diff.top1 is not None else ""
            _warn(result, f"int8 output '{diff.name}' is far from float on calibration samples (SQNR "
                          f"{diff.sqnr_db:.1f} dB{agreement}). Find the layers with `kit compare FLOAT INT8 --layers`, "
                          "or let `kit quantize --max-drop X --eval DATA` keep them in float.")


def _warn(result: QuantizeResult, message: str) -> None:
    result.warnings.append(message)
    warnings.warn(message, KitWarning, stacklevel=3)


# ----- the ONNX Runtime calls -------------------------------------------------------------


def _preprocess(model: Path, prepared: Path, result: QuantizeResult, say) -> Path:
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
                with _quiet():
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


def _opset_for_per_channel(prepared: Path, converted: Path, result: QuantizeResult) -> Path:
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
        with _quiet():
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


def _check_loadable(quantized: Path, model: Path, precision: str) -> None:
    """ONNX Runtime's quantization tools can write a graph ONNX Runtime refuses: name the node
    and the user's model in the error, never the temporary file."""
    import onnx
    import onnxruntime

    try:
        with _quiet():
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


def _static(prepared: Path, output: Path, reader: FeedReader, preset: QuantPreset, per_channel: bool,
            method: str, excluded: list[str]) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    extra = preset.extra_options()
    # Not "CalibMaxIntermediateOutputs": in ONNX Runtime 1.32 it discards the batches it
    # collected instead of folding them into the ranges, so only the last ones count.
    # Calibration therefore holds every batch's activations until the end.
    if method == "percentile":
        extra["CalibPercentile"] = 99.999
    try:
        with _quiet():  # the histogram calibrators print progress
            quantize_static(
                str(prepared), str(output), reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                reduce_range=preset.reduce_range,
                activation_type=QuantType.QUInt8 if preset.activation_type == "uint8" else QuantType.QInt8,
                weight_type=QuantType.QInt8, nodes_to_exclude=excluded or None,
                calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                                  "percentile": CalibrationMethod.Percentile}[method],
                extra_options=extra)
    except KitError:
        raise
    except Exception as exc:
        raise KitError(f"ONNX Runtime's static quantization failed: {root_cause(exc)}",
                       hint="Try --exclude for the node it names, or int8-dynamic / fp16.") from exc


def _dynamic(prepared: Path, output: Path, preset: QuantPreset, per_channel: bool, excluded: list[str]) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        with _quiet():
            quantize_dynamic(str(prepared), str(output), per_channel=per_channel, reduce_range=preset.reduce_range,
                         weight_type=QuantType.QInt8, nodes_to_exclude=excluded or None)
    except Exception as exc:
        raise KitError(f"ONNX Runtime's dynamic quantization failed: {root_cause(exc)}",
                       hint="Try static int8 with --calib, or fp16.") from exc


def _to_fp16(model, output: Path, result: QuantizeResult) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with _quiet():
        half = convert_float_to_float16(model, keep_io_types=True, node_block_list=result.excluded or None)
    onnx.save(half, str(output))
    result.notes.append("fp16 halves the size; ONNX Runtime's CPU provider computes it no faster than fp32 "
                        "(it casts). Inputs and outputs stay float32.")


def _fidelity(model: Path, quantized: Path, samples: dict[str, np.ndarray],
              static_batch: int | None) -> list[OutputDiff]:
    """Outputs of the quantized model against the float model on the first calibration samples
    (whole batches when the batch axis is fixed)."""
    from kit.runtimes.ort import OnnxRuntime

    from kit.check.harness import run_dataset
    from kit.data.datasets import from_arrays

    outputs = []
    for path in (model, quantized):
        rt = OnnxRuntime(path, threads=1)
        with _quiet():
            rt.load()
        with rt:
            data = from_arrays(samples, [free_batch(spec) for spec in rt.inputs], "calibration samples")
            outputs.append(run_dataset(rt, data, batch_size=static_batch or 64)[0])
    return compare_outputs(*outputs, atol=0.0, rtol=0.0, stat="mean")


def _record(path: Path, source: Path, parent: dict[str, Any], result: QuantizeResult) -> None:
    import onnx

    proto = onnx.load(str(path))
    inherited = {k: parent[k] for k in ("source", "source_kind", "source_sha256", "weights_sha256", "inputs",
                                        "outputs", "preprocess") if k in parent}
    provenance.attach_to_onnx(proto, provenance.new(
        **inherited, stage="quantize", format="onnx", precision=result.precision, parent=str(source),
        parent_sha256=sha256_of(source), target=result.target, method=result.method,
        per_channel=result.per_channel, excluded=result.excluded, calibration=result.calibration,
        budget=result.budget))
    onnx.save(proto, str(path))


def _ort(model: Path):
    from kit.runtimes.ort import OnnxRuntime

    return OnnxRuntime(model)


@contextlib.contextmanager
def _quiet():
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


@contextlib.contextmanager
def _clean_full_disk(output: Path):
    """A full disk (or quota) anywhere in the work, ONNX Runtime's own files included, is one line
    naming the disk that filled up, with nothing left behind."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        if not disk_full(exc):
            raise
        raise disk_full_error(output) from exc


