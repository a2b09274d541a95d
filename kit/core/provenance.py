"""Provenance carried by every artifact, so later stages and the device need not ask again.

It travels inside the model file wherever the format has a place for it, so a model copied
alone to a device keeps its input/output names and preprocessing:

- ONNX: JSON in the metadata property ``kit.provenance`` (``attach_to_onnx``);
- TFLite: JSON in a buffer named by the flatbuffer's metadata entry ``kit.provenance``
  (``write_tflite``; the way TFLite's own metadata is stored; the interpreter ignores it);
- OpenVINO IR: JSON in the model's ``rt_info`` entry ``kit_provenance`` (the exporter sets it
  with ``Model.set_rt_info``; the .xml holds it, read here with the standard XML parser);
- formats without metadata (TensorRT engines): a sidecar ``MODEL.kit.json`` moved together
  with the model (``write_sidecar``).

``read`` reads all four, and the sidecars of .tflite models exported by older kits.
edgetpu_compiler drops a model's metadata, so ``NAME_edgetpu.tflite`` falls back to its
original ``NAME.tflite`` (``kit check edgetpu`` copies the provenance into what it compiles).

Nothing here reads or writes outside the model's folder: sidecars are found by name beside
the model and must not lead elsewhere through a link.
"""

from __future__ import annotations

import datetime
import json
import os
import warnings
from pathlib import Path
from typing import Any

from kit._version import __version__
from kit.core.errors import KitWarning, ModelFileError, first_line, root_cause
from kit.core.fileio import atomic_output

KEY = "kit.provenance"
OPENVINO_KEY = "kit_provenance"  # an rt_info entry's name is an XML tag: no dot
TFLITE_IDENTIFIER = b"TFL3"
_JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def new(**fields: Any) -> dict[str, Any]:
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"kit_version": __version__, "created": created, **fields}


# ----- writers, one per format ---------------------------------------------------------------


def attach_to_onnx(model, provenance: dict[str, Any]) -> None:
    """Set ``kit.provenance`` on an onnx.ModelProto (the exporter saves it), replacing an older entry."""
    for prop in list(model.metadata_props):
        if prop.key == KEY:
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key, entry.value = KEY, encode(provenance)


def write_tflite(path: str | os.PathLike, provenance: dict[str, Any]) -> None:
    """Store ``provenance`` inside the .tflite at ``path`` (rewritten in place, atomically).

    The flatbuffer gets one more buffer and a metadata entry naming it (or its earlier kit
    entry is replaced); operators, tensors, weights and the other metadata stay as they
    were. A model whose weights live after the flatbuffer (buffer offsets, used above 2 GB)
    cannot be repacked this way: it gets a sidecar instead.
    """
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    path = Path(path)
    model = flatbuffer_utils.convert_bytearray_to_object(path.read_bytes())
    if _uses_offsets(model):
        write_sidecar(path, provenance)
        return
    payload = schema.BufferT(data=np.frombuffer(encode(provenance).encode(), dtype=np.uint8))
    model.metadata = model.metadata or []
    model.buffers = model.buffers or [schema.BufferT()]  # buffer 0 is the empty sentinel
    entry = next((m for m in model.metadata if m.name and m.name.decode() == KEY), None)
    if entry is None:
        entry = schema.MetadataT()
        entry.name, entry.buffer = KEY.encode(), len(model.buffers)
        model.buffers.append(payload)
        model.metadata.append(entry)
    else:
        model.buffers[entry.buffer] = payload
    _replace_file(path, bytes(flatbuffer_utils.convert_object_to_bytearray(model)))


def write_sidecar(path: str | os.PathLike, provenance: dict[str, Any]) -> None:
    """``MODEL.kit.json`` beside the model, written through a temporary file (never through a link)."""
    _replace_file(sidecar(path), json.dumps(provenance, indent=2, sort_keys=True).encode())


def sidecar(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".kit.json")


# ----- the reader ----------------------------------------------------------------------------


def read(path: str | os.PathLike) -> dict[str, Any]:
    """The provenance stored with a model file, or {} when it has none.

    A file that is not what its suffix says, corrupt provenance, or a sidecar that leads out
    of the model's folder is a ModelFileError naming the file at fault.
    """
    path = Path(path)
    if not path.is_file():
        return {}  # a factory reference or a missing file (loading it reports that)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return _from_onnx(path)
    if suffix == ".tflite":
        stored = _from_tflite(path) or _from_sidecar(path)
        original = path.with_name(path.name[:-len("_edgetpu.tflite")] + ".tflite")
        if not stored and path.name.lower().endswith("_edgetpu.tflite") and original.is_file():
            _require_inside(path, original)
            stored = _from_tflite(original) or _from_sidecar(original)
        return stored
    if suffix == ".xml":
        return _from_openvino_ir(path) or _from_sidecar(path)
    return _from_sidecar(path)


def _from_onnx(path: Path) -> dict[str, Any]:
    try:
        import onnx
    except ImportError:  # a device with ONNX Runtime only
        return _from_onnx_runtime(path)
    try:
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    except Exception as exc:
        raise ModelFileError(f"{path} is not a readable ONNX model ({root_cause(exc)}).",
                             hint="Re-export it; the file may be truncated or not ONNX at all.") from exc
    return _decode(props.get(KEY), path, f"its metadata property {KEY}")


def _from_openvino_ir(path: Path) -> dict[str, Any]:
    """The rt_info entry of an OpenVINO IR .xml (the topology only: its weights are in the .bin)."""
    import xml.etree.ElementTree as ElementTree

    try:
        for _, element in ElementTree.iterparse(path):
            if element.tag == OPENVINO_KEY:
                return _decode(element.get("value"), path, f"its rt_info entry {OPENVINO_KEY}")
    except ElementTree.ParseError as exc:
        raise ModelFileError(f"{path} is not a readable OpenVINO IR ({exc}).",
                             hint="Re-export it; the file may be truncated or not OpenVINO IR.") from exc
    return {}


def _from_onnx_runtime(path: Path) -> dict[str, Any]:
    try:
        import onnxruntime
    except ImportError:
        return {}  # nothing here can read it; loading the model reports the missing runtime
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelFileError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {first_line(exc)}).",
                             hint="Re-export it; the file may be truncated or not ONNX at all.") from exc
    return _decode(session.get_modelmeta().custom_metadata_map.get(KEY), path, f"its metadata property {KEY}")


def _from_tflite(path: Path) -> dict[str, Any]:
    """The JSON in the buffer that the metadata entry ``kit.provenance`` names, read in place."""
    data = path.read_bytes()
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        if KEY.encode() in data:
            warnings.warn(f"{path} holds kit provenance that only ai-edge-litert can read; default input names and "
                          'preprocessing apply. Install it: pip install "edge-inference-kit[tflite]"', KitWarning,
                          stacklevel=4)
        return {}
    if len(data) < 8 or not schema.Model.ModelBufferHasIdentifier(data, 0):
        raise ModelFileError(f"{path} is not a TFLite flatbuffer (no {TFLITE_IDENTIFIER.decode()} identifier).",
                             hint="Re-export it; the file may be truncated or not TFLite at all.")
    try:
        model = schema.Model.GetRootAs(data, 0)
        for index in range(model.MetadataLength()):
            entry = model.Metadata(index)
            if entry.Name() == KEY.encode():
                return _decode(_buffer_bytes(model, entry.Buffer(), data).decode(), path,
                               f"its metadata entry {KEY}")
    except ModelFileError:
        raise
    except Exception as exc:  # offsets that lead nowhere in a damaged file
        raise ModelFileError(f"{path} is a damaged TFLite flatbuffer ({root_cause(exc)}).",
                             hint="Re-export it; the file may be truncated.") from exc
    return {}


def _buffer_bytes(model, index: int, data: bytes) -> bytes:
    if not 0 <= index < model.BuffersLength():
        raise ValueError(f"metadata names buffer {index} of {model.BuffersLength()}")
    buffer = model.Buffers(index)
    if buffer.Offset():  # stored after the flatbuffer (large models)
        return data[buffer.Offset():buffer.Offset() + buffer.Size()]
    return b"" if buffer.DataIsNone() else buffer.DataAsNumpy().tobytes()


def _from_sidecar(path: Path) -> dict[str, Any]:
    file = sidecar(path)
    if not file.is_file():
        return {}
    _require_inside(path, file)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"cannot read the provenance file {file} ({type(exc).__name__}: {first_line(exc)}).",
                             hint=f"Fix or delete it; it describes {path.name}.") from exc
    return _decode(text, file, "it")


def _decode(text: str | None, where: Path, what: str) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        value, problem = None, f"not valid JSON: {first_line(exc)}"
    else:
        problem = None if isinstance(value, dict) else f"a JSON {_JSON_KINDS.get(type(value), 'value')}, not an object"
    if problem:
        fix = ("Delete or fix this file (it describes the model beside it), or re-export the model."
               if where.name.endswith(".kit.json") else
               f"Re-export the model with the kit, or remove {what} to use it as a plain model.")
        raise ModelFileError(f"the kit provenance in {where} is corrupt ({what} is {problem}).", hint=fix)
    return value


def _require_inside(model: Path, file: Path) -> None:
    """A sidecar or companion must resolve into the model's own folder (not through a link elsewhere)."""
    folder = model.parent.resolve()
    if file.resolve().parent != folder:
        raise ModelFileError(f"{file} leads outside the model's folder {model.parent or '.'}; the kit does not "
                             "follow it.", hint="Replace the link with the file itself, or delete it.")


# ----- helpers -------------------------------------------------------------------------------


def encode(provenance: dict[str, Any]) -> str:
    return json.dumps(provenance, sort_keys=True)


def _uses_offsets(model) -> bool:
    large_options = any(op.largeCustomOptionsOffset for graph in model.subgraphs or []
                        for op in graph.operators or [])
    return large_options or any(buffer.offset for buffer in model.buffers or [])


def _replace_file(path: Path, content: bytes) -> None:
    """Write a new file and rename it over ``path``: a reader never sees half a file, and a link
    at ``path`` is replaced, never followed."""
    with atomic_output(path) as temporary:
        temporary.write_bytes(content)
