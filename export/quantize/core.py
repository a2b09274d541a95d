"""ONNX -> quantized ONNX with ONNX Runtime's quantization tools.

- ``int8``: static QDQ, calibrated on the user's data (streamed), with a hardware preset;
- ``int8-dynamic``: weights int8, activations quantized at run time (for MatMul-heavy models);
- ``fp16``: float16 weights and compute, float32 inputs and outputs kept.

Presets follow what ONNX Runtime documents and what was measured here (../shared/DESIGN.md):
AVX2 without VNNI saturates in its U8S8 kernels, so ``avx2`` uses reduce_range; TensorRT
needs symmetric int8 and float bias. The "Distribution" calibration is not offered: it
breaks uint8 models."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
from kit.export.quantize.joins import mixed_range_joins
from kit.export.quantize.passes import (
    check_loadable,
    dynamic_int8,
    opset_for_per_channel,
    ort_runtime,
    prepare,
    quiet,
    static_int8,
    to_fp16,
)
from kit.export.quantize.presets import METHODS, PRECISIONS, PRESETS, Recipe, detect_target
from kit.export.quantize.result import QuantizeResult

from kit.check.metrics import OutputDiff, compare_outputs
from kit.core import provenance
from kit.core.errors import DiskFullError, InputError, KitWarning, ModelFileError, RuntimeUnavailableError, root_cause
from kit.core.fileio import atomic_output, check_output_path, disk_full, disk_full_error, model_size, sha256_of
from kit.core.onnx_ops import QUANTIZED_OPS
from kit.data.batching import free_batch
from kit.data.calibration import FeedReader, calibration_data
from kit.data.datasets import Dataset

MIN_CALIBRATION = 200  # below this, CNN activation ranges are poorly estimated


FAITHFUL_SQNR_DB = 20.0  # below this (or below 95% top-1 agreement) the int8 model is flagged


FAITHFUL_TOP1 = 0.95


FIDELITY_SAMPLES = 64  # calibration samples kept to check the quantized model against the float one




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
    keep_mixed_joins: bool = True,
    progress: Callable[[str], None] | None = None,
) -> QuantizeResult:
    """Quantize ``model`` (.onnx, float32) to ``output``; nothing is written unless it all succeeds.

    ``calib`` is calibration data in any form kit.data.calibration.calibration_data takes. ``preprocess``
    (``--preprocess`` text) states how calibration images become the input of a model that
    records no preprocessing; the quantized model records it. ``keep_mixed_joins`` keeps in
    float each Concat that joins tensors of very different ranges (a detector's boxes and
    scores; see kit.export.quantize.joins), which static int8 would otherwise wreck.
    """
    started = time.perf_counter()
    say = progress or (lambda message: None)
    model, output = Path(model), Path(output)
    check_arguments(model, output, precision, method, target, calib_limit)
    source = load_checked(model)
    inputs = model_inputs(model)  # ONNX Runtime must load the float model, whatever the precision
    parent = provenance.read(model)
    stated = stated_preprocess(preprocess, parent, model, calib, precision)
    result = QuantizeResult(output, precision, 0, model_size(model), 0.0, excluded=list(exclude or []))
    with clean_full_disk(output), tempfile.TemporaryDirectory() as scratch, atomic_output(output) as tmp:
        scratch = Path(scratch)
        if precision == "fp16":
            say("converting to float16")
            result.excluded = _resolve_excluded(model, result.excluded)
            to_fp16(source, tmp, result)
            check_loadable(tmp, model, precision)
        else:
            prepared = prepare(model, scratch / "prepared.onnx", result, say)
            graph_nms = _graph_nms(prepared, result.excluded)
            result.excluded = _resolve_excluded(prepared, result.excluded) + graph_nms
            preset = PRESETS[detect_target() if target == "auto" else target]
            result.target, result.per_channel = preset.name, per_channel
            if precision == "int8-dynamic":
                _warn_if_conv_heavy(source, result)
                say("quantizing weights (dynamic int8)")
                dynamic_int8(prepared, tmp, preset, per_channel, result.excluded)
                check_loadable(tmp, model, precision)
            else:
                dataset = calibration_dataset(calib, model, inputs, calib_limit, stated)
                # ORT's histogram calibrators stack per-batch outputs and need equal batches.
                reader = FeedReader(dataset, inputs=inputs, batch_size=16 if method == "minmax" else 1,
                                    limit=calib_limit, keep=FIDELITY_SAMPLES)
                result.method = method
                if per_channel:
                    prepared = opset_for_per_channel(prepared, scratch / "opset13.onnx", result)
                if keep_mixed_joins:
                    _keep_mixed_joins(prepared, dataset, inputs, result)
                say(f"calibrating on {reader.description} ({method})")
                static_int8(prepared, tmp, reader, preset, result.per_channel, method, result.excluded)
                check_loadable(tmp, model, precision)
                result.calibration = {"source": reader.description, "count": reader.count,
                                      "sha256": reader.sha256(), "synthetic": reader.synthetic}
                _note_dropped(reader, result)
                _warn_about_calibration(result)
                if graph_nms:  # its outputs are detections, as many as each model finds: nothing to pair
                    result.notes.append("NMS is in the graph, so the outputs are not compared with the float "
                                        "model's; compare detections with kit eval --baseline.")
                else:
                    say("checking the quantized model against the float model")
                    result.fidelity = _fidelity(model, tmp, reader.kept_arrays(), reader.static_batch)
                    _warn_if_unfaithful(result)
        record(tmp, model, {**parent, "preprocess": stated} if stated else parent, result)
    result.size_bytes = model_size(output)
    result.seconds = time.perf_counter() - started
    return result


def check_arguments(model: Path, output: Path, precision: str, method: str, target: str,
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


def load_checked(model: Path):
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


def calibration_dataset(calib, model: Path, inputs, limit: int | None, stated: dict | None) -> Dataset:
    """The calibration data in any form kit.data.calibration.calibration_data takes, for this model's inputs;
    images preprocessed as the model records, or as ``stated`` with --preprocess."""
    if calib is None:
        raise InputError("static int8 needs calibration data; found no --calib.",
                         hint="Give --calib with a folder of images or an .npy/.npz of inputs "
                              "(random:N only to try the pipeline: its ranges are not your data's).")
    return calibration_data(calib, inputs, stated or provenance.read(model).get("preprocess"), limit=limit)


def stated_preprocess(text: str | None, parent: dict, model: Path, calib, precision: str = "int8") -> dict | None:
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
    return Preprocess.for_input(model_inputs(model)[0], text).to_dict()


def model_inputs(model: Path):
    with quiet(), ort_runtime(model) as rt:
        return rt.inputs


def _graph_nms(graph_path: Path, excluded: list[str]) -> list[str]:
    """The nodes of NMS appended at export (kit.export.nms): selection and indexing, kept in float."""
    import onnx

    from kit.export.nms import graph_nms_nodes

    return [name for name in graph_nms_nodes(onnx.load(str(graph_path), load_external_data=False))
            if name not in excluded]


def _keep_mixed_joins(prepared: Path, dataset: Dataset, inputs, result: QuantizeResult) -> None:
    for join in mixed_range_joins(prepared, dataset, inputs):
        if join.node not in result.excluded:
            result.excluded.append(join.node)
            result.notes.append(f"kept in float: {join.describe()}. --quantize-mixed-joins quantizes it anyway.")


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


def _fidelity(model: Path, quantized: Path, samples: dict[str, np.ndarray],
              static_batch: int | None) -> list[OutputDiff]:
    """Outputs of the quantized model against the float model on the first calibration samples
    (whole batches when the batch axis is fixed)."""
    from kit.runtimes.ort import OnnxRuntime

    from kit.check.runner import run
    from kit.data.datasets import from_arrays

    runtimes = [OnnxRuntime(path, threads=1) for path in (model, quantized)]
    with contextlib.ExitStack() as stack:
        for rt in runtimes:
            with quiet():
                rt.load()
            stack.callback(rt.close)
        data = from_arrays(samples, [free_batch(spec) for spec in runtimes[0].inputs], "calibration samples")
        results = run(runtimes, data.batches(static_batch or 64, pad=False), keep=True)
    return compare_outputs(results.outputs(0), results.outputs(1), atol=0.0, rtol=0.0, stat="mean")


def record(path: Path, source: Path, parent: dict[str, Any], result: QuantizeResult) -> None:
    import onnx

    proto = onnx.load(str(path))
    inherited = {k: parent[k] for k in ("source", "source_kind", "source_sha256", "weights_sha256", "inputs",
                                        "outputs", "preprocess", "task") if k in parent}
    provenance.attach_to_onnx(proto, provenance.new(
        **inherited, stage="quantize", format="onnx", precision=result.precision, parent=str(source),
        parent_sha256=sha256_of(source), target=result.target, method=result.method,
        per_channel=result.per_channel, excluded=result.excluded, calibration=result.calibration,
        budget=result.budget, fidelity=result.to_dict()["fidelity"],
        recipe=recipe_of(result).to_dict()))
    onnx.save(proto, str(path))


def recipe_of(result: QuantizeResult) -> Recipe:
    return Recipe(result.precision, PRESETS.get(result.target), result.method, result.per_channel,
                  tuple(result.excluded))


@contextlib.contextmanager
def clean_full_disk(output: Path):
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
