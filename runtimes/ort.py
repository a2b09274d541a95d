"""ONNX Runtime backend: the CPU provider by default, others when installed and asked for.

``InferenceSession.run`` is thread-safe, so calls on one runtime run in parallel. A model that
quantizes its activations (QuantizeLinear, DynamicQuantizeLinear: static QDQ, QOperator and
dynamic int8) refuses NaN and Inf in its float inputs: ONNX Runtime would quantize them to
ordinary integers and answer with confidence.
"""

from __future__ import annotations

import mmap
from typing import Any

from kit.runtimes.base import Runtime, check_choice

from kit.core.errors import InputError
from kit.core.onnx_ops import ACTIVATION_QUANTIZERS
from kit.core.specs import TensorSpec

# ONNX Runtime names element types as "tensor(float)"; the kit uses numpy's names. Types
# numpy lacks (bfloat16, string, float8) keep ORT's name and are refused by the feed check.
_ORT_DTYPES = {"float": "float32", "float16": "float16", "double": "float64"}
_OPT_LEVELS = ("disable", "basic", "extended", "all")
# onnxruntime:TARGET -> the execution provider, and where a build that has it comes from.
PROVIDERS = {
    "CPU": ("CPUExecutionProvider", "pip install onnxruntime"),
    "XNNPACK": ("XnnpackExecutionProvider", "an ONNX Runtime built with --use_xnnpack (its Android and iOS "
                                            "packages; PyPI's Linux, Windows and macOS wheels leave it out)"),
    "CUDA": ("CUDAExecutionProvider", "pip install onnxruntime-gpu (with CUDA and cuDNN)"),
    "TENSORRT": ("TensorrtExecutionProvider", "pip install onnxruntime-gpu with TensorRT; on a Jetson, NVIDIA's "
                                              "onnxruntime-gpu wheel for its JetPack"),
    "OPENVINO": ("OpenVINOExecutionProvider", "pip install onnxruntime-openvino"),
    "DML": ("DmlExecutionProvider", "pip install onnxruntime-directml (Windows)"),
    "COREML": ("CoreMLExecutionProvider", "pip install onnxruntime (on macOS)"),
    "QNN": ("QNNExecutionProvider", "pip install onnxruntime-qnn (Snapdragon)"),
    "ROCM": ("ROCMExecutionProvider", "an ONNX Runtime built for ROCm (AMD GPUs)"),
}


class OnnxRuntime(Runtime):
    """Options: ``threads`` (intra-op threads, 0 = ORT's choice), ``optimization``
    (disable/basic/extended/all, default all) and ``providers`` (default CPU only)."""

    name = "onnxruntime"
    priority = 100  # the reference backend for .onnx
    suffixes = (".onnx",)
    extra = "onnxruntime"
    modules = ("onnxruntime",)
    accepted_options = ("threads", "optimization", "providers")
    thread_safe = True

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        options = super().check_options(options)
        if options.get("optimization") is not None:  # None: the default, as for every option
            check_choice("optimization", options["optimization"], _OPT_LEVELS)
        providers = options.get("providers")
        if isinstance(providers, str):
            options["providers"] = [providers]
        elif providers is not None and (not isinstance(providers, (list, tuple)) or
                                        not all(isinstance(p, str) for p in providers)):
            raise InputError(f"expected providers as a list of provider names, found {providers!r}.",
                             hint="E.g. providers=['CPUExecutionProvider']; onnxruntime.get_available_providers() "
                                  "lists them.")
        return options

    @classmethod
    def target_options(cls, target: str) -> dict[str, Any]:
        """``onnxruntime:XNNPACK``: that provider first, the CPU provider for what it leaves."""
        provider = _provider(target)
        return {"providers": [provider] + ([] if provider == "CPUExecutionProvider" else ["CPUExecutionProvider"])}

    @classmethod
    def target_problem(cls, target: str) -> tuple[str, str] | None:
        import onnxruntime

        provider, available = _provider(target), onnxruntime.get_available_providers()
        if provider in available:
            return None
        install = next((where for name, where in PROVIDERS.values() if name == provider), "its ONNX Runtime build")
        return (f"{provider} is not in this ONNX Runtime build (available: {', '.join(available)})",
                f"It needs {install}.")

    @classmethod
    def describe_backend(cls) -> str:
        import onnxruntime

        return "providers: " + ", ".join(onnxruntime.get_available_providers())

    def _load(self):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.options.get("threads") or 0
        options.inter_op_num_threads = 1
        level = self.options.get("optimization") or "all"
        options.graph_optimization_level = getattr(
            onnxruntime.GraphOptimizationLevel,
            {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
             "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}[level])
        providers = list(self.options.get("providers") or ["CPUExecutionProvider"])
        available = onnxruntime.get_available_providers()
        absent = [p for p in providers if p not in available]
        if absent:
            raise InputError(
                f"execution provider {', '.join(absent)} is not in this ONNX Runtime build "
                f"(available: {', '.join(available)}).",
                hint="Install the onnxruntime build that ships it (e.g. onnxruntime-gpu) or drop the option.",
            )
        self._session = onnxruntime.InferenceSession(self.model_path, options, providers=providers)
        self._output_names = [o.name for o in self._session.get_outputs()]
        inputs = _specs(self._session.get_inputs())
        if _quantizes_activations(self.model_path):
            self._finite_only = frozenset(spec.name for spec in inputs if spec.dtype.startswith("float"))
        return inputs, _specs(self._session.get_outputs())

    def _run(self, feeds):
        return dict(zip(self._output_names, self._session.run(self._output_names, feeds)))

    def _close(self):
        self._session = None

    def _info(self) -> dict[str, Any]:
        options = self._session.get_session_options()
        return {
            "device": "cpu" if self._session.get_providers() == ["CPUExecutionProvider"] else "accelerator",
            "providers": self._session.get_providers(),
            "threads": options.intra_op_num_threads,
            "optimization": self.options.get("optimization") or "all",
        }


def _provider(target: str) -> str:
    """A provider's short name (XNNPACK, case aside) or full name (XnnpackExecutionProvider)."""
    if target.upper() in PROVIDERS:
        return PROVIDERS[target.upper()][0]
    if target.endswith("ExecutionProvider"):
        return target
    raise InputError(f"expected an ONNX Runtime execution provider among {', '.join(PROVIDERS)} (or a full "
                     f"name such as CUDAExecutionProvider), found {target!r}.",
                     hint="E.g. --runtime onnxruntime:CPU,onnxruntime:XNNPACK")


def _quantizes_activations(path: str) -> bool:
    """Does the graph hold a node that quantizes activations? Op types are plain strings in the
    protobuf, so a scan of the mapped file answers without the onnx package (a device may lack it)."""
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return any(data.find(op.encode()) >= 0 for op in ACTIVATION_QUANTIZERS)


def _specs(nodes) -> list[TensorSpec]:
    specs = []
    for node in nodes:
        shape = tuple(d if isinstance(d, int) else (d or f"unk{i}") for i, d in enumerate(node.shape))
        element = node.type.removeprefix("tensor(").removesuffix(")")
        specs.append(TensorSpec(node.name, shape, _ORT_DTYPES.get(element, element)))
    return specs


