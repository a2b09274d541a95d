"""TFLite quantization with Google's ai-edge-quantizer: full integer int8 (static weights and
activations, int8 input and output) calibrated on the kit's data in the model's own batches,
and the fp16 and int8-dynamic recipes; what stays in float is said in a note."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
from kit.export.litert import quiet_converters, to_layout
from kit.export.quantize.joins import MixedJoin

from kit.core.errors import ExportError, InputError, KitError, KitWarning, root_cause
from kit.data.calibration import FeedReader


def quantize_int8(float_model: Path, path: Path, reader: FeedReader, specs, args, channel_last: list[int]):
    """Full integer with ai-edge-quantizer's static int8 recipe (int8 per-channel weights, int8
    activations, input and output), calibrated by running the fp32 TFLite on the user's data.

    Activation ranges are the minimum and maximum over all samples: the library's default,
    a moving average of each sample's range, clips what only some samples reach (measured on
    MobileNetV2: 11 dB SQNR against 28 dB). Returns the calibration record and notes."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import calibrator, quantizer, recipe, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    try:
        with quiet_converters():
            manager = recipe_manager.RecipeManager()
            manager.load_quantization_recipe(recipe.static_wi8_ai8())
            signature, signature_inputs = _signature(Interpreter(model_path=str(float_model)))
            calibration = calibrator.Calibrator(str(float_model), num_threads=os.cpu_count() or 1,
                                                qsv_update_func=qsv_utils.min_max_update)
            batch = len(args[0])
            names = dict(zip((spec.name for spec in specs), signature_inputs))
            for chunk in _chunks(_model_batches(reader, names, channel_last, batch), 16):
                calibration.calibrate({signature: chunk}, manager)
            if reader.count == 0:
                raise InputError("the calibration set is empty.", hint="Give a few hundred representative samples.")
            ranges = calibration.get_model_qsvs()
            kept = _keep_mixed_joins(float_model, ranges, manager)
            quantized = quantizer.Quantizer(str(float_model), manager.get_quantization_recipe()).quantize(
                ranges, enable_progress_report=False).quantized_model
            path.write_bytes(_with_op_versions(bytes(quantized)))
    except KitError:
        raise
    except Exception as exc:
        raise ExportError(f"full-integer int8 quantization failed: {root_cause(exc)}",
                          hint="Try --precision int8-dynamic, or check the model exports with torch.export.") from exc
    return {"count": reader.count, "sha256": reader.sha256()}, kept + _float_ops_note(path)


def _keep_mixed_joins(float_model: Path, ranges: dict, manager) -> list[str]:
    """Each CONCATENATION joining very different calibrated ranges (a detector's pixel boxes and
    0-1 scores; see kit.export.quantize.joins) left in float, with the graph output it writes
    (requantizing it would put the scores under the boxes' scale again). Notes saying so."""
    from ai_edge_quantizer import qtyping, quantizer

    notes = []
    for name, inputs, outputs in operators(float_model.read_bytes()):
        if name != "CONCATENATION" or not outputs:
            continue
        magnitude = {tensor: max(float(np.max(np.abs(ranges[tensor]["min"]))),
                                 float(np.max(np.abs(ranges[tensor]["max"])))) for tensor in inputs if tensor in ranges}
        join = MixedJoin.of(f"the CONCATENATION writing {outputs[0]}", magnitude) if len(magnitude) > 1 else None
        if join is None:
            continue
        # ai-edge-quantizer matches an op's "scope": its output tensor names, each followed by ";"
        scope = f"^{re.escape(outputs[0])};"
        for operation in (qtyping.TFLOperationName.CONCATENATION, qtyping.TFLOperationName.OUTPUT):
            manager.add_quantization_config(regex=scope, operation_name=operation,
                                            algorithm_key=quantizer.AlgorithmName.NO_QUANTIZE)
        notes.append(f"kept in float: {join.describe()}; an output it writes stays float32.")
    return notes


def named_operators(model: bytes) -> tuple[object, list[tuple[str, object]]]:
    """The first subgraph of a .tflite flatbuffer, and its operators each with its op name."""
    from ai_edge_litert import schema_py_generated as schema

    flat = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model, 0))
    op_names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    codes = flat.operatorCodes
    graph = flat.subgraphs[0]
    return graph, [(op_names.get(max(codes[op.opcodeIndex].builtinCode, codes[op.opcodeIndex].deprecatedBuiltinCode),
                                 "?"), op) for op in graph.operators]


def operators(model: bytes) -> list[tuple[str, list[str], list[str]]]:
    """The first subgraph's operators: name, input tensor names, output tensor names."""
    graph, ops = named_operators(model)
    tensor = lambda index: graph.tensors[index].name.decode()  # noqa: E731
    return [(name, [tensor(i) for i in op.inputs if i >= 0], [tensor(i) for i in op.outputs if i >= 0])
            for name, op in ops]


def _signature(interpreter) -> tuple[str, list[str]]:
    """The converted model's signature and its input names in forward()'s order (args_0, args_1, ...)."""
    (key, signature), = interpreter.get_signature_list().items()
    names = signature["inputs"]
    ordered = sorted(names, key=lambda name: int(name.rsplit("_", 1)[1])) \
        if all(re.fullmatch(r"args_\d+", name) for name in names) else names
    return key, ordered


def _model_batches(reader: FeedReader, names: dict[str, str], channel_last: list[int], batch: int):
    """Feeds for the converted model (its signature's names, its layout, its static batch) from
    the reader's batches (the kit's input names, the source layout, any batch size)."""
    pending: list[np.ndarray] | None = None
    for feeds in reader:
        arrays = [to_layout(feeds[name], i in channel_last) for i, name in enumerate(names)]
        pending = arrays if pending is None else [np.concatenate(pair) for pair in zip(pending, arrays)]
        while len(pending[0]) >= batch:
            yield dict(zip(names.values(), (array[:batch] for array in pending)))
            pending = [array[batch:] for array in pending]


def _chunks(items, size: int):
    """Lists of up to ``size`` items: ai-edge-quantizer reads each calibration set twice, so
    it gets a short list at a time and the data set is never held whole."""
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _with_op_versions(model: bytes) -> bytes:
    """The model re-serialised by LiteRT's own flatbuffer writer, which sets each op's version
    from its tensor types. ai-edge-quantizer keeps the float model's versions (an int8 CONV_2D
    stays v1, which declares float kernels); runtimes and the Edge TPU compiler read versions."""
    from litert_converter.tools import model_utils

    module, context = model_utils.read_flatbuffer(content=model)
    return model_utils.write_flatbuffer(module, ir_context=context)


def _float_ops_note(path: Path) -> list[str]:
    """A note (and a warning) naming the ops the quantizer left in float, if any."""
    from ai_edge_litert import schema_py_generated as schema

    graph, ops = named_operators(path.read_bytes())
    floats = (schema.TensorType.FLOAT32, schema.TensorType.FLOAT16)
    left = sorted({name for name, op in ops if name not in ("QUANTIZE", "DEQUANTIZE")
                   and any(graph.tensors[i].type in floats for i in [*op.inputs, *op.outputs] if i >= 0)})
    if not left:
        return []
    note = (f"not every op is int8: ai-edge-quantizer left {', '.join(left)} in float, between QUANTIZE and "
            "DEQUANTIZE; the Edge TPU and integer-only accelerators stop at the first of them.")
    warnings.warn(note, KitWarning)
    return [note]


def quantize_recipe(float_model: Path, output: Path, precision: str) -> None:
    from ai_edge_quantizer import qtyping, quantizer, recipe

    try:
        with quiet_converters():
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
