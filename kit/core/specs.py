"""Tensor specifications and the shape strings users type (``1x3x224x224``)."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

import numpy as np

from kit.core.errors import InputError
from kit.core.formatting import size

Dim = int | str  # a fixed size, or the name of a dynamic axis

# ONNX and TFLite report dtypes in their own vocabularies; the kit speaks numpy's names.
DTYPES = ("float32", "float16", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
          "uint64", "bool")


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one model input or output.

    ``shape`` holds ints for fixed axes and names (``"batch"``) for dynamic ones; ``None``
    means the rank itself is unknown (a TorchScript input nobody described). ``scale`` and
    ``zero_point`` describe integer tensors that stand for quantized real values.
    """

    name: str
    shape: tuple[Dim, ...] | None
    dtype: str = "float32"
    scale: float | None = None
    zero_point: int | None = None

    def __post_init__(self):
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(self.shape))
        try:
            object.__setattr__(self, "dtype", np.dtype(self.dtype).name)
        except TypeError:  # a type numpy lacks (bfloat16, string): kept by name, never fed
            pass

    @property
    def dynamic_batch(self) -> bool:
        """Is axis 0 dynamic (whatever its name)?"""
        return bool(self.shape) and isinstance(self.shape[0], str)

    @property
    def dynamic_axes(self) -> dict[int, str]:
        return {i: d for i, d in enumerate(self.shape or ()) if isinstance(d, str)}

    def concrete_shape(self, **sizes: int) -> tuple[int, ...]:
        """The shape with every dynamic axis set: by its name in ``sizes``, else 1."""
        if self.shape is None:
            raise InputError(f"{self.describe()} has no known shape.", hint="Give the input shape explicitly.")
        return tuple(d if isinstance(d, int) else sizes.get(d, 1) for d in self.shape)

    def describe(self) -> str:
        dims = "?" if self.shape is None else ",".join(str(d) for d in self.shape)
        quant = f" (scale={self.scale:g}, zero_point={self.zero_point})" if self.scale is not None else ""
        return f"'{self.name}' {self.dtype}[{dims}]{quant}"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["shape"] = None if self.shape is None else list(self.shape)
        return {k: v for k, v in data.items() if v is not None or k == "shape"}

    @classmethod
    def from_dict(cls, data: dict) -> TensorSpec:
        shape = data.get("shape")
        return cls(data["name"], None if shape is None else tuple(shape), data.get("dtype", "float32"),
                   data.get("scale"), data.get("zero_point"))


def describe_specs(specs: list[TensorSpec]) -> str:
    return ", ".join(spec.describe() for spec in specs)


_SHAPE = re.compile(r"^[0-9]+(x[0-9]+)*$")


@dataclass
class InputShape:
    """What the user said about one input: its example shape and dtype."""

    shape: tuple[int, ...]
    dtype: str = "float32"


MAX_ELEMENTS = 1 << 31  # one example tensor; larger is a typo, not a model


def parse_shape(text: str) -> tuple[int, ...]:
    given = text if isinstance(text, str) else repr(text)
    normal = given.strip().lower()
    dims = [int(d) for d in normal.split("x")] if _SHAPE.match(normal) else []
    if not dims or 0 in dims or math.prod(dims) > MAX_ELEMENTS:
        raise InputError(
            f"expected a shape like 1x3x224x224 (positive sizes joined by 'x', under 2**31 elements), found {given!r}.",
            hint="Write the example shape with the batch first, e.g. --input-shape 1x3x224x224.",
        )
    return tuple(dims)


def parse_input_shapes(items: list[str] | str | None) -> dict[str | None, InputShape]:
    """Parse ``--input-shape`` values: ``1x3x8x8``, ``NAME=1x3x8x8`` or ``NAME=1x128:int64``.

    A single unnamed shape is keyed by ``None`` (it applies to the model's only input).
    """
    shapes: dict[str | None, InputShape] = {}
    for item in _items(items, "--input-shape", "1x3x224x224"):
        if not isinstance(item, str):
            raise InputError(f"expected --input-shape values as text like NAME=1x3x8x8, found {item!r}.",
                             hint="Pass strings, e.g. input_shapes=['1x3x224x224'].")
        name, sep, rest = item.rpartition("=")
        key = name.strip() if sep else None
        if key == "":
            raise InputError(f"expected an input name before '=' in {item!r}.",
                             hint="Write NAME=1x3x8x8, or the shape alone for a model with one input.")
        shape_text, _, dtype = rest.partition(":")
        dtype = dtype.strip() or "float32"
        if dtype not in DTYPES:
            raise InputError(f"expected a dtype among {', '.join(DTYPES)} in {item!r}, found {dtype!r}.",
                             hint="Write it as NAME=1x128:int64.")
        if key in shapes:
            raise InputError(f"input {key or '(unnamed)'} is given twice in --input-shape.",
                             hint="Give each input once.")
        shapes[key] = InputShape(parse_shape(shape_text), dtype)
    if None in shapes and len(shapes) > 1:
        raise InputError("an unnamed --input-shape was mixed with named ones.",
                         hint="With several inputs, name every one: --input-shape a=1x3 --input-shape b=1x5.")
    return shapes


def _items(items, flag: str, example: str) -> list:
    """A flag's values: a list or tuple of them, one string, or None."""
    if items is None or isinstance(items, str):
        return [] if items is None else [items]
    if not isinstance(items, (list, tuple)):
        raise InputError(f"expected {flag} values as a list of strings, found {items!r}.",
                         hint=f"Pass e.g. [{example!r}].")
    return list(items)


def parse_dynamic_axes(items: list[str] | None) -> dict[str | None, dict[int, str]]:
    """Parse ``--dynamic NAME:AXIS=DIMNAME`` (or ``AXIS=DIMNAME`` for the only input)."""
    axes: dict[str | None, dict[int, str]] = {}
    for item in _items(items, "--dynamic", "images:2=height"):
        match = re.fullmatch(r"(?:(?P<name>[^:=]+):)?(?P<axis>[0-9]+)(?:=(?P<dim>[A-Za-z_]\w*))?", item.strip(),
                             re.ASCII) if isinstance(item, str) else None
        if not match:
            raise InputError(f"expected --dynamic NAME:AXIS=DIMNAME (e.g. images:2=height), found {item!r}.",
                             hint="AXIS is the axis number; DIMNAME names the dynamic size.")
        axis = int(match["axis"])
        axes.setdefault(match["name"], {})[axis] = match["dim"] or f"dim{axis}"
    return axes


def random_feeds(specs: list[TensorSpec], *, seed: int = 0, **sizes: int) -> dict[str, np.ndarray]:
    """Reproducible example inputs for ``specs``: normal floats, integers in [0, 10) (valid ids
    for any vocabulary of ten or more), random booleans."""
    rng = np.random.default_rng(seed)
    shapes = {spec.name: spec.concrete_shape(**sizes) for spec in specs}
    for spec in specs:
        if spec.dtype not in DTYPES:
            raise InputError(f"input {spec.describe()} has a type the kit cannot generate or feed from numpy.",
                             hint="Feed this model through its own runtime API.")
    # numpy draws float64/int64 and converts: 8 bytes per element beside the result's own
    needed = sum(math.prod(shape) * (8 + np.dtype(spec.dtype).itemsize) for spec, shape in zip(specs, shapes.values()))
    check_memory(needed, "random inputs " + ", ".join(f"'{name}' {list(shape)}" for name, shape in shapes.items()),
                 hint="Ask for fewer samples or a smaller input shape.")
    feeds = {}
    for spec in specs:
        shape = shapes[spec.name]
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[spec.name] = rng.integers(0, 2, shape).astype(dtype)
        else:
            info = np.iinfo(dtype)
            feeds[spec.name] = rng.integers(max(info.min, 0), min(info.max, 10), shape).astype(dtype)
    return feeds


def batch_feeds(specs: list[TensorSpec], batch: int = 1, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Random feeds with every dynamic batch axis set to ``batch``; an error when there is none to set."""
    if batch != 1 and not all(spec.dynamic_batch for spec in specs):
        raise InputError(f"batch {batch} needs a dynamic batch axis; the inputs are {describe_specs(specs)}.",
                         hint="Use batch 1, or export the model with a dynamic batch.")
    return random_feeds(specs, seed=seed, **{spec.shape[0]: batch for spec in specs if spec.dynamic_batch})


# Requests below this size are not worth reading the machine's free memory for.
SMALL_ALLOCATION = 64 << 20


def check_memory(nbytes: int, what: str, *, hint: str) -> None:
    """Refuse to allocate ``nbytes`` for ``what`` when the machine does not have them free."""
    if nbytes <= SMALL_ALLOCATION:
        return
    free = available_memory()
    if free is not None and nbytes > free:
        raise InputError(f"{what} would take {size(nbytes)}, more than the {size(free)} of memory available here.",
                         hint=hint)


def available_memory() -> int | None:
    """Bytes this process can still allocate: Linux's MemAvailable, lowered by a container's cgroup
    limit; the free pages elsewhere; None when the system does not say."""
    free = None
    try:
        with open("/proc/meminfo") as meminfo:
            free = next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        try:
            import os

            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, OSError, ValueError):
            pass
    try:  # cgroup v2: the container's limit minus what it uses
        with open("/sys/fs/cgroup/memory.max") as limit, open("/sys/fs/cgroup/memory.current") as used:
            text = limit.read().strip()
            if text != "max":
                left = max(int(text) - int(used.read()), 0)
                free = left if free is None else min(free, left)
    except (OSError, ValueError):
        pass
    return free


def check_array(spec: TensorSpec, array: np.ndarray, what: str = "input") -> None:
    """Raise an InputError naming the spec when ``array`` does not fit it (dtype, rank, fixed dims)."""
    if array.dtype.name != spec.dtype:
        raise InputError(
            f"{what} {spec.describe()} expected dtype {spec.dtype}, found {array.dtype.name}.",
            hint=f"Convert it with array.astype(np.{spec.dtype}).",
        )
    if spec.shape is None:
        return
    if array.ndim != len(spec.shape) or any(
        isinstance(want, int) and want != got for want, got in zip(spec.shape, array.shape)
    ):
        raise InputError(
            f"{what} {spec.describe()} expected shape [{','.join(map(str, spec.shape))}], "
            f"found {list(array.shape)}.",
            hint="Named axes may take any size; numbered axes must match exactly.",
        )


def quantize(array: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """Real values to a quantized integer tensor (round to nearest, saturate), as TFLite stores them."""
    info = np.iinfo(np.dtype(dtype))
    return np.clip(np.round(array / scale) + zero_point, info.min, info.max).astype(dtype)


def dequantize(array: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """A quantized integer tensor back to real values (float32)."""
    return ((array.astype(np.float32) - zero_point) * scale).astype(np.float32)
