"""Short human forms of sizes, fractions and decibels, shared by every printed table, and an
array's summary for JSON."""

from __future__ import annotations

from typing import Any


def size(size_bytes: int | None) -> str:
    if size_bytes is None:
        return "-"
    value = float(size_bytes)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def decibels(value) -> str:
    """SQNR values: a number, "inf" (no noise at all), or None (not measured)."""
    if value is None:
        return "-"
    return "inf" if value == "inf" else f"{value:.1f} dB"


def seconds(value: float, *within: float) -> str:
    """A duration with three significant digits in the unit that fits: 13.1 us, 2.34 ms, 1.2 s.

    Values in ``within`` (an interval's bounds) follow in brackets, in the same unit and
    without exponents, however far they stray.
    """
    unit, scale = next((u, f) for u, f in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)) if value >= f or u == "us")
    bounds = f" [{', '.join(_plain(v / scale) for v in within)}]" if within else ""
    return f"{_plain(value / scale)} {unit}{bounds}"


def _plain(number: float) -> str:
    return f"{number:.0f}" if number >= 100 else f"{number:.1f}" if number >= 10 else f"{number:.2f}"


def summaries(outputs) -> dict[str, dict[str, Any]]:
    """Each output (name -> array) summarized."""
    return {name: summarize(array) for name, array in outputs.items()}


def summarize(array) -> dict[str, Any]:
    """An output array in a few numbers: shape, dtype, min, max, mean, and for (samples,
    classes) the first row's top five (class, value)."""
    import numpy as np

    stats: dict[str, Any] = {"shape": list(array.shape), "dtype": array.dtype.name}
    if array.size == 0:  # a model may find nothing (NonZero, NMS): no numbers to give
        return {**stats, "min": None, "max": None, "mean": None}
    values = array.astype(np.float64)
    stats.update(min=float(values.min()), max=float(values.max()), mean=float(values.mean()))
    if array.ndim == 2 and array.shape[1] > 1:
        order = np.argsort(-values[0])[:5]
        stats["top5"] = [(int(i), float(values[0, i])) for i in order]
    return stats
