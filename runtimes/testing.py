"""A test double for the kit's runtimes, in the spirit of httpx's MockTransport: a model that is
a Python function. Code that drives runtimes (the harness, bench's measuring, a user's own
pipeline) can be tested with it where no backend is under test; it is a real Runtime subclass,
so feeds go through the same checks, lock and errors as on every backend.

    double = FunctionRuntime(lambda feeds: {"y": feeds["x"] * 2}, inputs={"x": ("batch", 4)},
                             outputs={"y": ("batch", 4)})
    with double as rt:
        rt.run({"x": np.ones((3, 4), np.float32)})

The real backends keep their own tests against their real libraries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from kit._version import __version__
from kit.core.errors import RunError
from kit.core.specs import TensorSpec
from kit.runtimes.base import Runtime

Specs = Sequence[TensorSpec] | Mapping[str, "tuple | tuple[tuple, str]"]


class FunctionRuntime(Runtime):
    """A runtime whose model is ``fn(feeds) -> outputs`` (dicts of numpy arrays).

    ``inputs`` and ``outputs`` are TensorSpecs, or a mapping of name to a shape (float32) or to
    ``(shape, dtype)``; a string in a shape is a dynamic axis. ``run()`` checks the feeds against
    ``inputs`` as every backend does, and ``fn``'s result against ``outputs`` (names and dtypes).
    """

    name = "function"
    thread_safe = False

    def __init__(self, fn: Callable[[dict[str, np.ndarray]], Mapping[str, Any]], inputs: Specs, outputs: Specs,
                 *, label: str = "<function>"):
        super().__init__(label)
        self.fn = fn
        self._declared = (_specs(inputs), _specs(outputs))
        self.calls = 0  # how many times run() reached the function

    @classmethod
    def version(cls) -> str:
        return __version__

    @classmethod
    def describe_backend(cls) -> str:
        return "a Python function (a test double)"

    def _source_exists(self) -> bool:
        return True

    def _load(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        return list(self._declared[0]), list(self._declared[1])

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls += 1
        produced = {name: np.asarray(value) for name, value in self.fn(dict(feeds)).items()}
        expected = [spec.name for spec in self._declared[1]]
        if sorted(produced) != sorted(expected):
            raise RunError(f"the function returned the outputs {sorted(produced)}; its declared outputs are "
                           f"{expected}.", hint="Return exactly the declared outputs.")
        for spec in self._declared[1]:
            if produced[spec.name].dtype.name != spec.dtype:
                raise RunError(f"the function's output '{spec.name}' is {produced[spec.name].dtype.name}; it was "
                               f"declared {spec.dtype}.", hint="Cast the output, or declare its dtype.")
        return {name: produced[name] for name in expected}

    def _info(self) -> dict[str, Any]:
        return {"function": getattr(self.fn, "__qualname__", repr(self.fn))}


def _specs(declared: Specs) -> list[TensorSpec]:
    if not isinstance(declared, Mapping):
        return list(declared)
    specs = []
    for name, value in declared.items():
        shape, dtype = (value if len(value) == 2 and isinstance(value[1], str) and isinstance(value[0], tuple)
                        else (value, "float32"))
        specs.append(TensorSpec(name, tuple(shape), dtype))
    return specs
