"""TFLite / LiteRT backend: ai-edge-litert's Interpreter (tflite_runtime when only that is installed).

XNNPACK runs float and int8 kernels (ai-edge-litert applies it by default). Integer
inputs and outputs of a fully quantized model are quantized from, and dequantized to,
float32 transparently, with the model's own scale and zero point; ``raw=True`` exposes
the integer tensors instead. Interpreters are not thread-safe: the base class serializes calls.
A quantized model (any tensor with scales: full int8, or int8 weights with activations quantized
on the fly) refuses NaN and Inf in its float inputs, which it would turn into ordinary integers
and answer with confidence.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import numpy as np
from kit.runtimes.base import Availability, Runtime, check_flag

from kit.core.errors import ModelFileError
from kit.core.specs import TensorSpec, dequantize, quantize

# The interpreter packages, preferred first: tflite_runtime 2.14 needs numpy<2, does not
# delegate int8 to XNNPACK and rejects newer op versions.
INTERPRETERS = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")


class TFLiteRuntime(Runtime):
    """Options: ``threads`` (interpreter threads; 0 or None: the interpreter's default), ``raw`` (feed
    and return integer tensors as stored)."""

    name = "tflite"
    priority = 100
    suffixes = (".tflite",)
    extra = "tflite"
    modules = ("ai_edge_litert",)
    accepted_options = ("threads", "raw")

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        options = super().check_options(options)
        if options.get("raw") is not None:
            options["raw"] = check_flag("raw", options["raw"])
        return options

    @classmethod
    def availability(cls) -> Availability:
        errors = []
        for module in INTERPRETERS:
            try:
                importlib.import_module(module)
                return Availability(True, cls.version(), cls.describe_backend())
            except Exception as exc:
                errors.append(f"{module}: {type(exc).__name__}")
        return Availability(False, None, "; ".join(errors), cls.install_command())

    @classmethod
    def interpreter_module(cls):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the interpreter's C++ INFO lines say nothing to users
        for module in INTERPRETERS:
            try:
                return importlib.import_module(module)
            except ImportError:
                continue
        raise ImportError("neither ai_edge_litert nor tflite_runtime is installed")

    @classmethod
    def version(cls) -> str | None:
        from importlib.metadata import PackageNotFoundError, version

        for distribution in ("ai-edge-litert", "tflite-runtime"):
            try:
                return version(distribution)
            except PackageNotFoundError:
                continue
        return None

    @classmethod
    def describe_backend(cls) -> str:
        return f"interpreter from {cls.interpreter_module().__name__.split('.')[0]}, XNNPACK"

    @classmethod
    def can_open(cls, path: str, named: bool = False) -> bool:
        # A compiled *_edgetpu.tflite needs the Edge TPU delegate: plain TFLite cannot run its custom op.
        return super().can_open(path, named) and not str(path).lower().endswith("_edgetpu.tflite")

    def _delegates(self) -> list:
        """Delegates to attach (the Edge TPU subclass adds its own)."""
        return []

    def _load(self):
        module = self.interpreter_module()
        self._interpreter = module.Interpreter(model_path=self.model_path,
                                               num_threads=self.options.get("threads") or None,
                                               experimental_delegates=self._delegates() or None)
        self._interpreter.allocate_tensors()
        names = _io_names(self.model_path)
        raw = self._raw = bool(self.options.get("raw"))
        self._in = self._interpreter.get_input_details()
        self._out = self._interpreter.get_output_details()
        inputs = [_spec(d, names["inputs"], i, raw) for i, d in enumerate(self._in)]
        outputs = [_spec(d, names["outputs"], i, raw) for i, d in enumerate(self._out)]
        self._shapes = [tuple(d["shape"]) for d in self._in]
        if any(_quantized(d) for d in self._interpreter.get_tensor_details()):
            self._finite_only = frozenset(spec.name for spec in inputs if spec.dtype.startswith("float"))
        return inputs, outputs

    def _run(self, feeds):
        raw = self._raw
        for index, (detail, spec) in enumerate(zip(self._in, self._inputs)):
            array = feeds[spec.name]
            if array.shape != self._shapes[index]:  # a dynamic axis took a new size
                self._interpreter.resize_tensor_input(detail["index"], array.shape)
                self._interpreter.allocate_tensors()
                self._shapes[index] = array.shape
            self._interpreter.set_tensor(detail["index"], array if raw else _quantize(array, detail))
        self._interpreter.invoke()
        return {spec.name: self._interpreter.get_tensor(detail["index"]) if raw
                else _dequantize(self._interpreter.get_tensor(detail["index"]), detail)
                for detail, spec in zip(self._out, self._outputs)}

    def _close(self):
        self._interpreter = None

    def _info(self) -> dict[str, Any]:
        return {"device": "cpu", "threads": self.options.get("threads"), "delegates": ["XNNPACK"],
                "raw_integer_io": bool(self.options.get("raw"))}


def _io_names(path: str) -> dict[str, list[str]]:
    """The kit's input and output names, recorded at export (TFLite's own are args_0, output_0)."""
    from kit.core import provenance

    stored = provenance.read(path)
    names = {}
    for key in ("inputs", "outputs"):
        specs = stored.get(key) or []
        if not (isinstance(specs, list) and all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in specs)):
            raise ModelFileError(f"the kit provenance of {path} lists its {key} as {str(specs)[:80]}; expected a list "
                                 "of {\"name\": ...} entries.", hint="Re-export the model, or fix or delete its "
                                                                    "sidecar .kit.json if it has one.")
        names[key] = [spec["name"] for spec in specs]
    return names


def _spec(detail: dict, names: list[str], index: int, raw: bool) -> TensorSpec:
    signature = detail.get("shape_signature", detail["shape"])
    shape = tuple(int(d) if d >= 0 else ("batch" if i == 0 else f"dim{i}") for i, d in enumerate(signature))
    dtype = np.dtype(detail["dtype"]).name
    scale, zero_point = detail.get("quantization", (0.0, 0))
    name = names[index] if index < len(names) else detail["name"]
    if dtype in ("int8", "uint8", "int16") and scale:
        if raw:
            return TensorSpec(name, shape, dtype, float(scale), int(zero_point))
        dtype = "float32"  # fed and returned as real values; quantized inside
    return TensorSpec(name, shape, dtype)


def _quantized(detail: dict) -> bool:
    """Does the tensor hold quantized values (per-tensor or per-channel scales: int8 weights included)?"""
    return len(detail.get("quantization_parameters", {}).get("scales", ())) > 0


def _quantize(array: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    target = np.dtype(detail["dtype"])
    if not scale or target.kind == "f" or array.dtype == target:
        return array
    return quantize(array, scale, zero_point, target.name)


def _dequantize(array: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if not scale or array.dtype.kind == "f":
        return array
    return dequantize(array, scale, zero_point)
