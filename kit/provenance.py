"""Provenance carried by every artifact, so later stages and the device need not ask again.

ONNX models keep it as JSON in the metadata property ``kit.provenance``. It is read with
the ``onnx`` package when present, else with ONNX Runtime (a device may have only that).
Formats without a metadata slot the kit writes into (.tflite) keep it in a sidecar file,
``MODEL.kit.json``, written and moved together with the model.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

from kit._version import __version__

KEY = "kit.provenance"


def new(**fields: Any) -> dict[str, Any]:
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"kit_version": __version__, "created": created, **fields}


def attach_to_onnx(model, provenance: dict[str, Any]) -> None:
    """Set ``kit.provenance`` on an onnx.ModelProto, replacing an older entry."""
    for prop in list(model.metadata_props):
        if prop.key == KEY:
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key, entry.value = KEY, json.dumps(provenance, sort_keys=True)


def sidecar(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".kit.json")


def write_sidecar(path: str | os.PathLike, provenance: dict[str, Any]) -> None:
    sidecar(path).write_text(json.dumps(provenance, indent=2, sort_keys=True))


def read(path: str | os.PathLike) -> dict[str, Any]:
    """The provenance stored with a model file, or {} when it has none."""
    path = Path(path)
    # edgetpu_compiler writes NAME_edgetpu.tflite beside NAME.tflite: the original's sidecar describes both.
    for candidate in (path, path.with_name(path.name.replace("_edgetpu.tflite", ".tflite"))):
        if sidecar(candidate).is_file():
            return json.loads(sidecar(candidate).read_text())
    if path.suffix.lower() != ".onnx" or not path.is_file():
        return {}  # a factory, another format, or a missing file (loading it reports that)
    try:
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    except ImportError:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        props = session.get_modelmeta().custom_metadata_map
    return json.loads(props[KEY]) if KEY in props else {}
