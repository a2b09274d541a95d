"""The full-precision PyTorch reference: the baseline every export and quantization is measured against."""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np
from kit.runtimes.base import Runtime

from kit.core.errors import InputError, KitError, KitNote, first_line, reraise_interrupt
from kit.core.specs import TensorSpec, describe_specs, parse_input_shapes, random_feeds
from kit.data.sources import TORCH_SUFFIXES, is_factory_reference


class TorchRuntime(Runtime):
    """Runs a TorchScript file, a .pt2 program or a ``file.py:factory`` on the CPU.

    Options: ``input_shapes`` (``["1x3x8x8"]`` or ``["x=1x3x8x8"]``, as ``kit export``
    takes them; a .pt2 knows its own), ``static``, ``weights`` (a state_dict for a
    factory, loaded with weights_only=True), ``allow_pickle`` and ``threads`` (torch has only a
    process-wide setting: it applies to every torch model in the process).
    """

    name = "torch"
    priority = 100  # the reference for PyTorch sources
    suffixes = TORCH_SUFFIXES
    extra = "torch"
    modules = ("torch",)
    accepted_options = ("input_shapes", "static", "weights", "allow_pickle", "threads", "source", "inputs")

    @classmethod
    def can_open(cls, path: str, named: bool = False) -> bool:
        return super().can_open(path, named) or is_factory_reference(path)

    @classmethod
    def describe_backend(cls) -> str:
        import torch

        return f"cpu, {torch.get_num_threads()} threads" + (", cuda available" if torch.cuda.is_available() else "")

    @classmethod
    def from_source(cls, source, inputs: list[TensorSpec]) -> TorchRuntime:
        """A loaded runtime around a model already in memory (export validation uses it)."""
        return cls(source.reference, source=source, inputs=inputs).load()

    def _source_exists(self) -> bool:
        return "source" in self.options or is_factory_reference(self.model_path) or super()._source_exists()

    def _load(self):
        import torch

        from kit.data.sources import input_specs, load_torch_source

        if self.options.get("threads"):
            torch.set_num_threads(int(self.options["threads"]))
        if "source" not in self.options and is_factory_reference(self.model_path) and not self.options.get("weights"):
            warnings.warn(f"{self.model_path} has no --weights: it runs with the weights its factory builds "
                          "(random unless the factory loads trained ones).", KitNote, stacklevel=2)
        source = self.options.get("source") or load_torch_source(
            self.model_path, weights=self.options.get("weights"), allow_pickle=self.options.get("allow_pickle", False))
        inputs = self.options.get("inputs")
        if inputs is None:
            shapes = self.options.get("input_shapes")
            inputs, _ = input_specs(source, parse_input_shapes([shapes] if isinstance(shapes, str) else shapes),
                                    static=self.options.get("static", False))
        self._module = source.module
        self._input_names = [spec.name for spec in inputs]
        feeds = random_feeds(inputs)
        try:  # a dry run names the outputs and finds their dtypes
            outputs = self._call(feeds)
        except KitError:
            raise
        except Exception as exc:
            reraise_interrupt(exc)
            raise InputError(f"the model rejected inputs {describe_specs(inputs)}: {type(exc).__name__}: "
                             f"{first_line(exc)}", hint=_rejection_hint(exc, feeds)) from exc
        return inputs, [_spec_like(name, array, inputs) for name, array in outputs.items()]

    def _run(self, feeds):
        return self._call(feeds)

    def _call(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from kit.data.sources import flatten_outputs

        args = [torch.from_numpy(_writable(feeds[name])) for name in self._input_names]
        with torch.inference_mode():
            result = self._module(*args)
        return {name: t.detach().cpu().numpy() for name, t in flatten_outputs(result).items()}

    def _close(self):
        self._module = None

    def _info(self) -> dict[str, Any]:
        import torch

        return {"device": "cpu", "threads": torch.get_num_threads()}


# torch's words when a float tensor reaches an embedding, a gather or an index (token ids without :int64).
_NEEDS_INTEGERS = re.compile(r"'indices'|for index|used as indices|index tensor|int32 or int64|int32/int64")


def _rejection_hint(exc: Exception, feeds: dict[str, np.ndarray]) -> str:
    floats = [name for name, array in feeds.items() if array.dtype.kind == "f"]
    if floats and _NEEDS_INTEGERS.search(first_line(exc)):
        example = f"--input-shape {floats[0]}={'x'.join(map(str, feeds[floats[0]].shape))}:int64"
        which = floats[0] if len(floats) == 1 else f"one of {', '.join(floats)}"
        return f"The model indexes with {which} (token ids or indices), which must be integers: give the dtype, " \
               f"e.g. {example}."
    return "Check the input shapes against what forward() expects."


def _writable(array: np.ndarray) -> np.ndarray:
    # torch.from_numpy shares memory and warns on read-only arrays; copy only then.
    return array if array.flags.writeable and array.flags.c_contiguous else np.array(array, order="C")


def _spec_like(name: str, array: np.ndarray, inputs: list[TensorSpec]) -> TensorSpec:
    """Output spec from a dry run at batch 1: the leading axis is dynamic when the inputs' is."""
    batch = next((spec.shape[0] for spec in inputs if spec.dynamic_batch), None)
    shape = tuple(batch if (i == 0 and batch) else d for i, d in enumerate(array.shape))
    return TensorSpec(name, shape, array.dtype.name)
