"""Artifact-in, artifact-out stages: PyTorch -> ONNX (and, later, quantized and other formats)."""

from kit.export.onnx import ExportResult, export_onnx

__all__ = ["ExportResult", "export_onnx"]
