"""ONNX quantization with ONNX Runtime's tools: static INT8 (QDQ) calibrated on the user's
data with a hardware preset, dynamic INT8, FP16, and INT8 to an accuracy budget.

presets.py: the hardware presets and the recipe recorded with the result; core.py: quantize()
(checks, calibration, fidelity, provenance); passes.py: the calls into onnxruntime.quantization;
budget.py: quantize_to_budget(); result.py: what both return."""

from kit.export.quantize.budget import quantize_to_budget
from kit.export.quantize.core import quantize
from kit.export.quantize.presets import METHODS, PRECISIONS, PRESETS, QuantPreset, detect_target
from kit.export.quantize.result import QuantizeResult

__all__ = ["METHODS", "PRECISIONS", "PRESETS", "QuantPreset", "QuantizeResult", "detect_target", "quantize",
           "quantize_to_budget"]
