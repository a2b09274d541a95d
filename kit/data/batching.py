"""Batches and layouts: a model's fixed batch, padding a last short batch, counting samples,
memory available for them, and moving NCHW data to channel-last models (TFLite)."""

from __future__ import annotations

import os

import numpy as np

from kit.core.errors import InputError
from kit.core.specs import TensorSpec, describe_specs


def fixed_batch(inputs: list[TensorSpec]) -> int | None:
    """The batch every run of a model with these inputs must have, or None when it may vary."""
    if any(spec.shape is None for spec in inputs):
        return 1  # rank unknown: one sample at a time is all that is safe
    sizes = {spec.shape[0] for spec in inputs if spec.shape and isinstance(spec.shape[0], int)}
    if len(sizes) > 1:
        raise InputError(f"the model's inputs fix different sizes on axis 0 ({describe_specs(inputs)}); the kit "
                         "feeds samples stacked along axis 0.", hint="Run it with kit run --input NAME=FILE per input.")
    return sizes.pop() if sizes else None


def pad_batch(feeds: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Feeds of fewer than ``size`` samples filled up by repeating the last sample."""
    count = samples_in(feeds)
    if count >= size:
        return feeds
    return {name: np.concatenate([a, np.repeat(a[-1:], size - count, axis=0)]) for name, a in feeds.items()}


def samples_in(feeds: dict[str, np.ndarray]) -> int:
    return len(next(iter(feeds.values())))


def available_memory() -> int | None:
    """Bytes of memory this machine can still hand out (Linux's MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def free_batch(spec: TensorSpec) -> TensorSpec:
    """The spec with its batch axis free: data stacks any number of samples there."""
    if not spec.shape or not isinstance(spec.shape[0], int):
        return spec
    return TensorSpec(spec.name, ("batch", *spec.shape[1:]), spec.dtype, spec.scale, spec.zero_point)


def to_channel_last(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if a.ndim == 4 else a for name, a in feeds.items()}


def as_nchw(spec: TensorSpec) -> TensorSpec:
    if spec.shape is None or len(spec.shape) != 4:
        return spec
    n, h, w, c = spec.shape
    return TensorSpec(spec.name, (n, c, h, w), spec.dtype, spec.scale, spec.zero_point)
