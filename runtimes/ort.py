"""ONNX Runtime backend: the CPU provider by default, others when installed and asked for."""

from __future__ import annotations

from typing import Any


from kit.errors import InputError
from kit.runtimes.base import Runtime
from kit.specs import TensorSpec

# ONNX Runtime names element types as "tensor(float)"; the kit uses numpy's names. Types
# numpy lacks (bfloat16, string, float8) keep ORT's name and are refused by the feed check.
_ORT_DTYPES = {"float": "float32", "float16": "float16", "double": "float64"}
_OPT_LEVELS = ("disable", "basic", "extended", "all")


class OnnxRuntime(Runtime):
    """Options: ``threads`` (intra-op threads, 0 = ORT's choice), ``optimization``
    (disable/basic/extended/all, default all) and ``providers`` (default CPU only)."""

    name = "onnxruntime"
    suffixes = (".onnx",)
    extra = "onnxruntime"
    modules = ("onnxruntime",)
    accepted_options = ("threads", "optimization", "providers")

    @classmethod
    def describe_backend(cls) -> str:
        import onnxruntime

        return "providers: " + ", ".join(onnxruntime.get_available_providers())

    def _load(self):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(self.options.get("threads", 0))
        options.inter_op_num_threads = 1
        level = self.options.get("optimization", "all")
        if level not in _OPT_LEVELS:
            raise InputError(f"expected optimization among {', '.join(_OPT_LEVELS)}, found {level!r}.",
                             hint="Use e.g. optimization='all'.")
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
        return _specs(self._session.get_inputs()), _specs(self._session.get_outputs())

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
            "optimization": self.options.get("optimization", "all"),
        }


def _specs(nodes) -> list[TensorSpec]:
    specs = []
    for node in nodes:
        shape = tuple(d if isinstance(d, int) else (d or f"unk{i}") for i, d in enumerate(node.shape))
        element = node.type.removeprefix("tensor(").removesuffix(")")
        specs.append(TensorSpec(node.name, shape, _ORT_DTYPES.get(element, element)))
    return specs


