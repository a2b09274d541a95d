"""What a model file holds: I/O specs, opsets, op counts, size and provenance."""

from __future__ import annotations

import collections
import os
import warnings
from pathlib import Path
from typing import Any

from kit.core import provenance
from kit.core.errors import KitNote, ModelFileError, RuntimeUnavailableError, first_line
from kit.core.fileio import external_data_files

# What reading an ONNX graph needs without PyTorch: onnx (and onnxruntime), not the [export] extra.
ONNX_INSTALL = 'pip install "edge-inference-kit[quantize]"'


def inspect_model(path: str | os.PathLike, runtime: str | None = None, *, nodes: bool = False,
                  **options: Any) -> dict[str, Any]:
    path = Path(path)
    if path.suffix.lower() == ".onnx" and runtime is None and not options:
        return _inspect_onnx(path, nodes)
    if path.suffix.lower() == ".tflite" and runtime is None and not options:
        return _inspect_tflite(path, nodes)
    return _inspect_with_runtime(path, runtime, **options)


def _inspect_with_runtime(path: Path, runtime: str | None, **options: Any) -> dict[str, Any]:
    from kit.runtimes.registry import load

    with load(path, runtime, **options) as rt:
        return {"path": str(path), "format": path.suffix.lstrip(".") or "factory",
                "size_bytes": path.stat().st_size if path.is_file() else None,
                "inputs": [s.to_dict() for s in rt.inputs], "outputs": [s.to_dict() for s in rt.outputs],
                "runtime": rt.info, "metadata": provenance.read(path)}


def _inspect_onnx(path: Path, nodes: bool = False) -> dict[str, Any]:
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist.", hint="Check the path.")
    try:
        import onnx
    except ImportError:
        return _inspect_onnx_on_a_device(path, nodes)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelFileError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {first_line(exc)}).",
                             hint="Re-export it; the file may be truncated or not ONNX at all.") from exc
    if not model.graph.node and not model.graph.output:
        raise ModelFileError(f"{path} parses as ONNX but holds no graph.", hint="Re-export it.")
    initializers = {t.name for t in model.graph.initializer}
    ops = collections.Counter(node.op_type for node in model.graph.node)
    parameters = sum(_numel(t.dims) for t in model.graph.initializer)
    return {
        "path": str(path), "format": "onnx",
        "size_bytes": path.stat().st_size + sum(p.stat().st_size for p in external_data_files(model, path)),
        "ir_version": model.ir_version, "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "inputs": [_value_info(v) for v in model.graph.input if v.name not in initializers],
        "outputs": [_value_info(v) for v in model.graph.output],
        "nodes": len(model.graph.node), "parameters": parameters,
        "ops": dict(ops.most_common()),
        "metadata": provenance.read(path),
        **({"node_list": [{"name": n.name, "op": n.op_type} for n in model.graph.node]} if nodes else {}),
    }


def _inspect_onnx_on_a_device(path: Path, nodes: bool) -> dict[str, Any]:
    """Without the onnx package (a device with ONNX Runtime only): what the runtime reports."""
    from kit.runtimes.ort import OnnxRuntime

    if not OnnxRuntime.availability().usable:
        raise RuntimeUnavailableError("inspecting ONNX models needs the onnx package or ONNX Runtime; neither is "
                                      "installed.", hint=f"Install them (no PyTorch) with: {ONNX_INSTALL}")
    warnings.warn(f"the onnx package is not installed, so opsets, op counts{' and nodes' if nodes else ''} are not "
                  f"shown (inputs and outputs come from ONNX Runtime); for them: {ONNX_INSTALL}", KitNote,
                  stacklevel=3)
    return _inspect_with_runtime(path, "onnxruntime")


def _inspect_tflite(path: Path, nodes: bool = False) -> dict[str, Any]:
    """Integer I/O as stored (scale, zero point), op counts and versions, and Edge TPU readiness."""
    from kit.runtimes.edgetpu.readiness import check_edgetpu
    from kit.runtimes.tflite import TFLiteRuntime

    readiness = check_edgetpu(path, run_compiler=False)
    with TFLiteRuntime(path, raw=True) as runtime:
        inputs, outputs, info = runtime.inputs, runtime.outputs, runtime.info
    ops = collections.Counter(f"{op['op']} v{op['version']}" for op in readiness.ops)
    return {
        "path": str(path), "format": "tflite", "size_bytes": path.stat().st_size,
        "inputs": [s.to_dict() for s in inputs], "outputs": [s.to_dict() for s in outputs],
        "nodes": len(readiness.ops), "ops": dict(ops.most_common()), "runtime": info,
        "edgetpu_ready": readiness.ready, "metadata": provenance.read(path),
        **({"node_list": [{"name": f"#{op['index']}", "op": op["op"]} for op in readiness.ops]} if nodes else {}),
    }


def _numel(dims) -> int:
    count = 1
    for d in dims:
        count *= d
    return count


def _value_info(value) -> dict[str, Any]:
    import onnx

    tensor = value.type.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name if tensor.elem_type else "?"
    return {"name": value.name, "shape": shape, "dtype": dtype}
