"""OpenVINO backend: ONNX, TFLite and OpenVINO IR (.xml beside its .bin) through OpenVINO's own
readers, on its CPU, GPU or NPU plugin, or AUTO.

- ``device``: CPU (default), GPU, NPU, AUTO, or a plugin's full name (GPU.1, AUTO:GPU,CPU);
  one that is absent here is a clear error listing what is.
- ``hint``: OpenVINO's performance hint, ``latency`` (default: one request as fast as it goes)
  or ``throughput`` (several streams for concurrent requests).
- ``threads`` (INFERENCE_NUM_THREADS; 0 = OpenVINO's choice) and ``streams`` (NUM_STREAMS; at
  most one per thread: OpenVINO lowers it to fit, and ``info`` says what it took).
- ``precision``: the float precision it computes in, ``f32`` unless asked, on every device but
  an NPU (which picks its own). OpenVINO's CPU plugin otherwise picks bf16 where the CPU has it
  (AVX512_BF16, AMX), and AUTO and GPU f16, so one model's outputs would differ by machine;
  ``bf16`` and ``f16`` take that speed-up knowingly.

A QDQ model (the kit's int8 ONNX) runs in int8: OpenVINO reads the QuantizeLinear and
DequantizeLinear pairs and computes the quantized ops in low precision itself. NaN and Inf
inputs are refused for every model (see ``_load``): OpenVINO would answer them with finite
scores.

Concurrent calls each take an inference request of their own from a pool (an InferRequest
serves one call at a time; the compiled model is shared), so ``run`` is thread-safe and a
throughput measurement keeps the plugin's streams busy.
"""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

from kit.runtimes.base import Runtime, check_choice, check_threads

from kit.core import provenance
from kit.core.errors import InputError, ModelFileError
from kit.core.specs import TensorSpec, dequantize, quantize

HINTS = ("latency", "throughput")
PRECISIONS = ("f32", "bf16", "f16")
DEVICES = ("CPU", "GPU", "NPU", "AUTO", "HETERO", "MULTI")  # plugins, optionally with .N or :list


class OpenVinoRuntime(Runtime):
    """Options: ``device``, ``hint``, ``threads``, ``streams``, ``precision`` (see the module)."""

    name = "openvino"
    priority = 50
    suffixes = (".xml",)
    named_suffixes = (".onnx", ".tflite")  # when asked for: ONNX Runtime and LiteRT stay their default
    extra = "openvino"
    modules = ("openvino",)
    accepted_options = ("device", "hint", "threads", "streams", "precision")
    thread_safe = True  # a request per concurrent call, from a pool

    @classmethod
    def can_open(cls, path: str, named: bool = False) -> bool:
        return super().can_open(path, named) and not path.lower().endswith("_edgetpu.tflite")  # Edge TPU ops

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        options = super().check_options(options)
        if options.get("device") is not None:
            options["device"] = _device(options["device"])
        for option, choices in (("hint", HINTS), ("precision", PRECISIONS)):
            if options.get(option) is not None:
                check_choice(option, options[option], choices)
        if options.get("streams") is not None:
            options["streams"] = check_threads(options["streams"], "streams", minimum=1)  # at most a thread each
        return options

    @classmethod
    def target_options(cls, target: str) -> dict[str, Any]:
        """``openvino:GPU``: the device."""
        return {"device": _device(target)}

    @classmethod
    def concurrent_options(cls, streams: int) -> dict[str, Any]:
        return {"hint": "throughput", "streams": streams}

    @classmethod
    def target_problem(cls, target: str) -> tuple[str, str] | None:
        import openvino

        return _absent(target.upper(), openvino.Core().available_devices)

    @classmethod
    def version(cls) -> str | None:
        import openvino

        return openvino.__version__.split("-")[0]  # 2026.4.1, without the build tag

    @classmethod
    def describe_backend(cls) -> str:
        import openvino

        return "devices: " + ", ".join(openvino.Core().available_devices)

    def _load(self):
        import openvino

        core = openvino.Core()
        device = self.options.get("device") or "CPU"
        absent = _absent(device, core.available_devices)
        if absent:
            raise InputError(f"{absent[0]}.", hint=f"Use --runtime openvino:CPU (device='CPU' in Python). "
                                                 f"{absent[1]}")
        plugin = device.split(":")[0]
        config = {"PERFORMANCE_HINT": (self.options.get("hint") or "latency").upper()}
        if self.options.get("threads"):
            config["INFERENCE_NUM_THREADS"] = self.options["threads"]
        if self.options.get("streams"):
            config["NUM_STREAMS"] = self.options["streams"]
        if plugin != "NPU" or self.options.get("precision"):  # AUTO and GPU too: they would pick bf16/f16
            config["INFERENCE_PRECISION_HINT"] = self.options.get("precision") or "f32"
        if self.model_path.lower().endswith(".xml") and not Path(self.model_path).with_suffix(".bin").is_file():
            raise ModelFileError(f"{self.model_path} is OpenVINO IR, whose weights are missing: expected "
                                 f"{Path(self.model_path).with_suffix('.bin').name} beside it.",
                                 hint="Copy the .xml and its .bin together.")
        try:
            model = core.read_model(self.model_path)
            self._compiled = core.compile_model(model, device, config)
        except RuntimeError as exc:  # OpenVINO's first line names its source file; the cause comes last
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            raise ModelFileError(f"OpenVINO could not load {self.model_path} on {device}: "
                                 f"{lines[-1] if lines else type(exc).__name__}",
                                 hint="Check that the file is whole (an IR needs its .bin), or try device CPU.") \
                from exc
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._output_ports = list(self._compiled.outputs)
        recorded = provenance.read(self.model_path)
        inputs, self._in_quantized = _specs(self._compiled.inputs, recorded, "inputs", self.model_path)
        outputs, self._out_quantized = _specs(self._compiled.outputs, recorded, "outputs", self.model_path)
        self._input_names, self._output_names = [spec.name for spec in inputs], [spec.name for spec in outputs]
        # NaN and Inf are refused for every model: OpenVINO reads QDQ pairs and TFLite quantization
        # as FakeQuantize (integers cannot hold them), and its CPU kernels do not carry them through
        # a float model either (the digits CNN answered finite scores for an input with a NaN).
        self._finite_only = frozenset(spec.name for spec in inputs if spec.dtype.startswith("float"))
        if not any(op.get_type_name() == "FakeQuantize" for op in model.get_ordered_ops()):
            self._finite_reason = "OpenVINO's kernels do not carry them through every operation"
        return inputs, outputs

    def _run(self, feeds):
        try:
            request = self._requests.get_nowait()
        except queue.Empty:
            request = self._compiled.create_infer_request()
        try:
            arrays = {index: quantize(feeds[name], *quantized) if quantized else feeds[name]
                      for index, (name, quantized) in enumerate(zip(self._input_names, self._in_quantized))}
            # share_outputs=False: the results are copies, not views of the request's reused buffers;
            # share_inputs: no copy of the feeds, which the call only reads before it returns.
            results = request.infer(arrays, share_inputs=True, share_outputs=False)  # a synchronous call
            return {name: dequantize(results[port], *quantized[:2]) if quantized else results[port]
                    for name, port, quantized in zip(self._output_names, self._output_ports, self._out_quantized)}
        finally:
            self._requests.put(request)

    def _close(self):
        self._compiled = self._requests = None

    def _info(self) -> dict[str, Any]:
        compiled = self._compiled
        return {"device": self.options.get("device") or "CPU",
                "hint": (self.options.get("hint") or "latency"),
                "threads": _property(compiled, "INFERENCE_NUM_THREADS"),
                "streams": _property(compiled, "NUM_STREAMS"),
                "precision": _property(compiled, "INFERENCE_PRECISION_HINT"),
                "optimal_requests": _property(compiled, "OPTIMAL_NUMBER_OF_INFER_REQUESTS")}


def _device(device: Any) -> str:
    """A device name as OpenVINO spells it (upper case), or an InputError listing the kinds."""
    if not isinstance(device, str) or device.split(":")[0].split(".")[0].upper() not in DEVICES:
        raise InputError(f"expected an OpenVINO device among {', '.join(DEVICES[:4])} (or one of several, "
                         f"GPU.1), found {device!r}.", hint="E.g. --runtime openvino:CPU (device='CPU' in Python).")
    return device.upper()


def _absent(device: str, available: list[str]) -> tuple[str, str] | None:
    """Why OpenVINO cannot use ``device`` here, and what would make it; None when it can (AUTO
    and the other virtual devices pick among what is there)."""
    plugin = device.split(":")[0]
    if plugin in ("AUTO", "HETERO", "MULTI") or plugin in available or \
            any(name.startswith(plugin + ".") for name in available):
        return None
    needs = {"GPU": "An Intel GPU needs Intel's GPU driver (intel-opencl-icd).",
             "NPU": "An Intel NPU needs Intel's NPU driver (linux-npu-driver)."}
    return (f"OpenVINO has no {device} device here (available: {', '.join(available)})",
            needs.get(plugin.split(".")[0], "Install the device's OpenVINO plugin and driver."))


def _property(compiled, name: str):
    """A compiled model's property, or None where its plugin does not have it (AUTO, GPU)."""
    try:
        value = compiled.get_property(name)
    except RuntimeError:
        return None
    return value if isinstance(value, (int, str)) else value.get_type_name()  # an element type: f32, bf16


def _specs(ports, recorded: dict, key: str, path: str) -> tuple[list[TensorSpec], list[tuple | None]]:
    """The kit's specs of OpenVINO's ports, and per port the (scale, zero point, dtype) the kit
    quantizes through, or None.

    What the kit recorded with the model (its provenance) fills in what OpenVINO drops: the name
    of a dynamic axis ("batch"), and for a .tflite the kit's tensor names (TFLite's own are
    serving_default_args_0, ...) and the integer inputs and outputs of a full-int8 export, which
    the kit feeds and returns as real values, as its TFLite runtime does."""
    listed = [spec for spec in recorded.get(key) or [] if isinstance(spec, dict) and "name" in spec]
    tflite = path.lower().endswith(".tflite")
    integer = {spec["name"]: spec for spec in recorded.get("integer_io") or [] if isinstance(spec, dict)}
    specs, quantized = [], []
    for index, port in enumerate(ports):
        name = port.get_any_name() if port.get_names() else f"output{index}"
        if tflite and index < len(listed):
            name = listed[index]["name"]
        known = next((spec.get("shape") or [] for spec in listed if spec["name"] == name), [])
        shape = tuple(dim.get_length() if dim.is_static else
                      known[axis] if axis < len(known) and isinstance(known[axis], str) else f"unk{axis}"
                      for axis, dim in enumerate(port.get_partial_shape())) \
            if port.get_partial_shape().rank.is_static else None
        element = port.get_element_type()
        try:
            dtype = element.to_dtype().name
        except (RuntimeError, TypeError):  # bf16 and types numpy lacks: the feed check refuses them by name
            dtype = element.get_type_name()
        scaled = integer.get(name)
        if tflite and scaled and dtype in ("int8", "uint8", "int16") and scaled.get("scale"):
            quantized.append((float(scaled["scale"]), int(scaled["zero_point"]), dtype))
            dtype = "float32"  # fed and returned as real values; quantized around the call
        else:
            quantized.append(None)
        specs.append(TensorSpec(name, shape, dtype))
    return specs, quantized
