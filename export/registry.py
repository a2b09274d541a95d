"""Which exporter writes which format: a table of lazy "module:function" strings keyed by format,
with the file suffixes each one writes. Adding a format is one module (a function
``export_FORMAT(source, output, **options) -> ExportResult``) plus one line here; nothing is
imported until that format is asked for."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Callable

from kit.core.errors import InputError
from kit.export.result import ExportResult

# format -> (the suffixes it writes, "module:function")
EXPORTERS: dict[str, tuple[tuple[str, ...], str]] = {
    "onnx": ((".onnx",), "kit.export.onnx:export_onnx"),
    "tflite": ((".tflite",), "kit.export.tflite:export_tflite"),
    "openvino": ((".xml",), "kit.export.openvino:export_openvino"),
}


def formats() -> list[str]:
    return list(EXPORTERS)


def format_for(output: str | os.PathLike, format: str | None = None) -> str:
    """The format named, or the one whose suffix the output has."""
    if format is not None:
        if format not in EXPORTERS:
            raise InputError(f"expected a format among {', '.join(EXPORTERS)}, found {format!r}.",
                             hint="Or leave the format out: the output's suffix picks it.")
        return format
    suffix = Path(output).suffix.lower()
    for name, (suffixes, _) in EXPORTERS.items():
        if suffix in suffixes:
            return name
    known = [s for suffixes, _ in EXPORTERS.values() for s in suffixes]
    raise InputError(f"expected an output path ending in {' or '.join(known)}, found {output}.",
                     hint="The suffix picks the format: e.g. model.onnx, model.tflite or model.xml (OpenVINO IR).")


def exporter(format: str) -> Callable[..., ExportResult]:
    """The export function of a format (imports its module)."""
    module, _, function = EXPORTERS[format_for("", format)][1].partition(":")
    return getattr(importlib.import_module(module), function)


def export(source: Any, output: str | os.PathLike, *, format: str | None = None, **options: Any) -> ExportResult:
    """Export ``source`` (a PyTorch model, file or factory) to ``output`` in ``format`` (default: from
    the output's suffix), validated against PyTorch; ``options`` are the format's own."""
    return exporter(format_for(output, format))(source, output, **options)
