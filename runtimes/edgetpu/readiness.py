"""Edge TPU readiness: read a .tflite flatbuffer and list what edgetpu_compiler would refuse or
leave on the CPU, before anyone runs the compiler (it runs only on x86-64 Linux).

The compiler maps ops to the TPU in execution order and stops at the first op it cannot
map: everything after runs on the CPU. So each blocker is reported with the op index
where the TPU part would end.

The op list and version limits follow Coral's documentation of compiler 16 (the last
release, 2021) and the op versions the TensorFlow Lite converter of that time wrote. They
were not checked against the compiler itself, which cannot be installed here.
"""

from __future__ import annotations

import os
import shlex
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kit.runtimes.edgetpu.compiler import compile_model, compiler_command

from kit.core.errors import InputError, ModelFileError, root_cause

COMPILER_VERSION = 16
# Builtin op -> the newest op version compiler 16 accepts: the versions the TensorFlow Lite of
# its time (2.5) defined. Approximate: taken from TFLite's op-version history, not from the
# compiler, which cannot be installed here. Later versions (int16 and int4 kernels, newer
# attributes) appeared after it. The ops are those of Coral's supported-operations list, which
# has no HardSwish: the compiler leaves HARD_SWISH on the CPU (google-coral/edgetpu#272, #353).
SUPPORTED_OPS = {
    "ADD": 4, "AVERAGE_POOL_2D": 3, "CONCATENATION": 3, "CONV_2D": 5, "DEPTHWISE_CONV_2D": 6,
    "DEQUANTIZE": 4, "EXPAND_DIMS": 1, "FULLY_CONNECTED": 9, "L2_NORMALIZATION": 2,
    "LOGISTIC": 3, "LSTM": 4, "MAXIMUM": 4, "MAX_POOL_2D": 3, "MEAN": 3, "MINIMUM": 4, "MUL": 4, "PACK": 3,
    "PAD": 3, "PRELU": 1, "QUANTIZE": 2, "REDUCE_MAX": 2, "REDUCE_MIN": 2, "RELU": 2, "RELU6": 3,
    "RELU_N1_TO_1": 2, "RESHAPE": 1, "RESIZE_BILINEAR": 3, "RESIZE_NEAREST_NEIGHBOR": 3, "RSQRT": 2,
    "SLICE": 4, "SOFTMAX": 3, "SPACE_TO_DEPTH": 2, "SPLIT": 4, "SQUARED_DIFFERENCE": 2, "SQUEEZE": 1,
    "STRIDED_SLICE": 5, "SUB": 5, "SUM": 2, "TANH": 3, "TRANSPOSE_CONV": 3,
}
WHY_UNSUPPORTED = {
    "TRANSPOSE": "layout transposes (an NCHW model's I/O, or a flatten of NHWC features in NCHW order) do not map "
                 "to the Edge TPU: export with --layout nhwc and end the network with global pooling",
    "HARD_SWISH": "hard-swish is not among the Edge TPU's ops (Coral's MobileNetV3 for the TPU uses ReLU: "
                  "make_mobilenet_v3_small(minimalistic=True) in kit.models)",
    "PADV2": "padding with a value other than zero (a padded max-pool pads with -inf) does not map to the Edge TPU: "
             "after a ReLU, pad with zeros (nn.ZeroPad2d, then an unpadded max-pool), which is the same function",
}


@dataclass
class Blocker:
    kind: str  # float-io, float-tensor, dynamic-shape, batch, subgraphs, op, op-version, custom-op
    message: str
    op_index: int | None = None  # where the TPU part would end, for op-level blockers


@dataclass
class Readiness:
    path: str
    ready: bool
    blockers: list[Blocker]
    ops: list[dict[str, Any]]
    tpu_ops_before_first_blocker: int
    compiler_command: str
    compiler: dict[str, Any] | None = None  # what edgetpu_compiler said, when it is installed
    compiled: str | None = None  # the NAME_edgetpu.tflite this check wrote
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "blockers": [asdict(b) for b in self.blockers]}


def check_edgetpu(path: str | os.PathLike, *, run_compiler: bool = True) -> Readiness:
    """Read the flatbuffer and list the blockers; compile it too when edgetpu_compiler is installed
    (into NAME_edgetpu.tflite beside it, never over an existing file)."""
    path = Path(path)
    model = _read(path)
    _check_structure(model, path)
    from ai_edge_litert import schema_py_generated as schema

    op_names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    type_names = {value: name for name, value in vars(schema.TensorType).items() if not name.startswith("_")}
    blockers: list[Blocker] = []
    if len(model.subgraphs) != 1:
        blockers.append(Blocker("subgraphs", f"{len(model.subgraphs)} subgraphs; the Edge TPU compiles exactly one "
                                             "(no control flow, no multiple signatures)."))
    graph = model.subgraphs[0]
    tensors = graph.tensors
    for role, indices in (("input", graph.inputs), ("output", graph.outputs)):
        for index in _indices(indices):
            tensor = tensors[index]
            name = (tensor.name or b"").decode(errors="replace")
            kind = type_names.get(tensor.type, "?")
            if kind not in ("INT8", "UINT8"):
                blockers.append(Blocker("float-io", f"{role} {name!r} is {kind}; the Edge TPU needs int8/uint8 "
                                                    "inputs and outputs (export with --precision int8)."))
            shape = [int(d) for d in tensor.shape] if tensor.shape is not None else []
            signature = [int(d) for d in tensor.shapeSignature] if tensor.shapeSignature is not None else shape
            if any(d < 0 for d in signature):
                blockers.append(Blocker("dynamic-shape", f"{role} {name!r} has a dynamic shape {signature}; the "
                                                         "Edge TPU needs static shapes."))
            if role == "input" and shape and shape[0] != 1:
                blockers.append(Blocker("batch", f"input {name!r} has batch {shape[0]}; the Edge TPU runs batch 1."))
    ops = []
    # Float inputs need a quantize step the TPU cannot take: nothing maps before it.
    first_blocked = 0 if any(b.kind in ("float-io", "dynamic-shape", "subgraphs") for b in blockers) else None
    for index, op in enumerate(graph.operators or []):
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        name = op_names.get(builtin, str(builtin))
        custom = code.customCode.decode() if code.customCode else None
        problem = _op_problem(name, code.version, custom, [tensors[i] for i in _indices(op.inputs) if i >= 0] +
                              [tensors[i] for i in _indices(op.outputs)], type_names)
        ops.append({"index": index, "op": custom or name, "version": code.version, "tpu": problem is None})
        if problem:
            blockers.append(Blocker(problem[0], f"op #{index} {custom or name} (v{code.version}): {problem[1]}", index))
            first_blocked = index if first_blocked is None else first_blocked
    ready = not blockers
    mapped = len(ops) if first_blocked is None else first_blocked
    result = Readiness(str(path), ready, blockers, ops, mapped, shlex.join(compiler_command(path, path.parent)))
    if run_compiler and shutil.which("edgetpu_compiler"):
        compiled = compile_model(path)
        result.compiler, result.compiled, result.notes = compiled.compiler, compiled.path, compiled.notes
        if compiled.failure:
            result.ready = False
            result.blockers.append(Blocker("compiler", compiled.failure))
    elif not shutil.which("edgetpu_compiler"):
        result.notes.append("edgetpu_compiler is not on PATH (Coral's apt package edgetpu-compiler, x86-64 Linux "
                            "only); run the command above where it is installed.")
    return result


def _read(path: Path):
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist.", hint="Check the path.")
    if path.suffix.lower() != ".tflite":
        raise InputError(f"expected a .tflite model, found {path}.", hint="Export one with kit export --format tflite.")
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError as exc:
        from kit.core.errors import RuntimeUnavailableError

        raise RuntimeUnavailableError("reading .tflite files needs ai-edge-litert.",
                                      hint='Install it with: pip install "edge-inference-kit[tflite]"') from exc
    data = path.read_bytes()
    try:
        if not schema.Model.ModelBufferHasIdentifier(data, 0):
            raise ValueError("no TFL3 identifier")
        return schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
    except Exception as exc:
        raise ModelFileError(f"{path} is not a readable TFLite flatbuffer ({root_cause(exc)}).",
                             hint="Re-export it; the file may be truncated or not TFLite at all.") from exc


def _check_structure(model, path: Path) -> None:
    """Every index the check follows must exist: a damaged or hand-made flatbuffer is a clean error."""
    def damaged(what: str) -> ModelFileError:
        return ModelFileError(f"{path} is a damaged TFLite model: {what}.",
                              hint="Re-export it; the file was not written whole by a TFLite converter.")

    if not model.subgraphs:
        raise damaged("it has no subgraph (no operators, inputs or outputs)")
    codes = len(model.operatorCodes or [])
    for number, graph in enumerate(model.subgraphs):
        tensors = len(graph.tensors or [])
        for role, indices in (("input", graph.inputs), ("output", graph.outputs)):
            bad = [i for i in _indices(indices) if not 0 <= i < tensors]
            if bad:
                raise damaged(f"subgraph {number} names {role} tensor {bad[0]}, but it has {tensors} tensors")
        for index, op in enumerate(graph.operators or []):
            if not 0 <= op.opcodeIndex < codes:
                raise damaged(f"op #{index} of subgraph {number} uses operator code {op.opcodeIndex}, but the model "
                              f"has {codes}")
            bad = [i for i in _indices(op.inputs) + _indices(op.outputs) if not -1 <= i < tensors]  # -1: optional
            if bad:
                raise damaged(f"op #{index} of subgraph {number} uses tensor {bad[0]}, but it has {tensors} tensors")


def _indices(values) -> list[int]:
    """A flatbuffer index vector (a numpy array, a list, or None when absent) as ints."""
    return [] if values is None else [int(value) for value in values]


def _op_problem(name: str, version: int, custom: str | None, tensors, type_names) -> tuple[str, str] | None:
    if custom == "edgetpu-custom-op":
        return None  # already compiled for the TPU
    if custom:
        kind = "Flex (TensorFlow) op" if custom.startswith("Flex") else "custom op"
        return "custom-op", f"a {kind}; the Edge TPU runs builtin ops only."
    if name not in SUPPORTED_OPS:
        return "op", WHY_UNSUPPORTED.get(name, "not an op the Edge TPU supports.")
    if version > SUPPORTED_OPS[name]:
        return "op-version", (f"version {version} is newer than compiler {COMPILER_VERSION} accepts "
                              f"(up to v{SUPPORTED_OPS[name]}).")
    floats = {type_names.get(t.type) for t in tensors} & {"FLOAT32", "FLOAT16"}
    # QUANTIZE/DEQUANTIZE between float32 and int8 at the model's edges are fine; any fp16 is not.
    if floats and (name not in ("QUANTIZE", "DEQUANTIZE") or "FLOAT16" in floats):
        return "float-tensor", "computes in float; the Edge TPU needs every tensor int8 (full-integer quantization)."
    return None
