"""Artifact-in, artifact-out stages: PyTorch -> ONNX or TFLite (the exporter registry picks the
format), and ONNX quantization."""

from kit.export.onnx import export_onnx
from kit.export.registry import export
from kit.export.result import ExportResult

__all__ = ["ExportResult", "export", "export_onnx"]
