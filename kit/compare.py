"""Numerical comparison of a candidate's outputs with a reference's (Polygraphy's split:
running both on the same inputs happens elsewhere; this module only measures).

Per output: max/mean/median absolute error, max relative error, cosine similarity,
SQNR in dB and, for (batch, classes) outputs, top-1/top-5 agreement.

Pass/fail (``stat``):
- ``elementwise`` (default): every element within ``atol + rtol * |reference|`` (numpy's allclose);
- ``mean`` / ``median`` / ``max``: that statistic of the absolute error is within ``atol``
  or that statistic of the relative error (over every element, |reference| floored at
  1e-12) is within ``rtol`` (Polygraphy's rule).
The reported ``max_rel`` is taken over elements whose reference magnitude exceeds
``atol``, so values near zero do not turn the report into noise. Cosine similarity and
SQNR are computed over the whole output (all samples flattened together).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from kit.errors import InputError

STATS = ("elementwise", "mean", "median", "max")


@dataclass(frozen=True)
class OutputDiff:
    name: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    passed: bool
    mean_abs: float = 0.0
    median_abs: float = 0.0
    cosine: float = 1.0
    sqnr_db: float = math.inf  # inf: no noise at all
    top1: float | None = None  # fraction of rows whose argmax agrees
    top5: float | None = None  # fraction of rows whose reference argmax is in the candidate's top 5

    def to_dict(self) -> dict:
        data = {**asdict(self), "shape": list(self.shape)}
        data["sqnr_db"] = "inf" if self.sqnr_db == math.inf else "-inf" if self.sqnr_db == -math.inf else self.sqnr_db
        if math.isnan(self.cosine):
            data["cosine"] = None  # JSON has no NaN
        return data


def compare_outputs(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], *,
                    atol: float | Mapping[str, float], rtol: float | Mapping[str, float],
                    stat: str = "elementwise") -> list[OutputDiff]:
    """Compare every reference output with the candidate's; tolerances may be per output name."""
    if stat not in STATS:
        raise InputError(f"expected --stat among {', '.join(STATS)}, found {stat!r}.", hint="Use elementwise.")
    missing = [name for name in reference if name not in candidate]
    if missing:
        raise InputError(f"expected the outputs {', '.join(reference)}; the candidate lacks {', '.join(missing)} "
                         f"(it has {', '.join(candidate) or 'none'}).",
                         hint="Compare models with the same output names.")
    for tolerance in (atol, rtol):
        unknown = sorted(set(tolerance) - set(reference) - {""}) if isinstance(tolerance, Mapping) else []
        if unknown:
            raise InputError(f"a tolerance names the output {', '.join(unknown)}; the outputs are "
                             f"{', '.join(reference)}.", hint="Write --atol OUTPUT=VALUE with one of those names.")
    return [_diff(name, reference[name], candidate[name], _pick(atol, name), _pick(rtol, name), stat)
            for name in reference]


def _pick(tolerance: float | Mapping[str, float], name: str) -> float:
    if isinstance(tolerance, Mapping):
        return float(tolerance.get(name, tolerance.get("", 0.0)))
    return float(tolerance)


def _diff(name: str, ref: np.ndarray, got: np.ndarray, atol: float, rtol: float, stat: str) -> OutputDiff:
    ref = np.asarray(ref, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if ref.shape != got.shape:
        raise InputError(f"output '{name}' has shape {list(ref.shape)} in the reference and "
                         f"{list(got.shape)} in the candidate.", hint="Compare models with the same output shapes.")
    if ref.size == 0:
        return OutputDiff(name, ref.shape, 0.0, 0.0, True)
    with np.errstate(all="ignore"):  # inf/NaN outputs (an fp16 overflow) must be reported, not crash
        error = np.abs(got - ref)
        significant = np.abs(ref) > atol
        relative = error[significant] / np.abs(ref[significant]) if significant.any() else np.zeros(1)
        if stat == "elementwise":
            passed = bool(np.all(error <= atol + rtol * np.abs(ref)))  # False on any NaN
        else:
            reduce = {"mean": np.mean, "median": np.median, "max": np.max}[stat]
            every_relative = error / np.maximum(np.abs(ref), 1e-12)
            passed = bool(reduce(error) <= atol or reduce(every_relative) <= rtol)
        signal, noise = float(np.sum(ref ** 2)), float(np.sum((got - ref) ** 2))
        norms = float(np.linalg.norm(ref) * np.linalg.norm(got))
    finite = math.isfinite(signal) and math.isfinite(noise) and math.isfinite(norms)
    top1 = top5 = None
    if ref.ndim == 2 and ref.shape[1] > 1:
        expected = ref.argmax(1)
        top1 = float(np.mean(got.argmax(1) == expected))
        if ref.shape[1] >= 5:
            best5 = np.argsort(-got, axis=1, kind="stable")[:, :5]
            top5 = float(np.mean((best5 == expected[:, None]).any(1)))
    return OutputDiff(
        name, ref.shape, float(error.max()), float(relative.max()), passed,
        mean_abs=float(error.mean()), median_abs=float(np.median(error)),
        cosine=(float(np.dot(ref.ravel(), got.ravel()) / norms) if norms else float(signal == noise == 0.0))
        if finite else math.nan,
        sqnr_db=(math.inf if noise == 0 else 10 * math.log10(signal / noise) if signal else -math.inf)
        if finite else -math.inf,
        top1=top1, top5=top5)


def worst(diffs: list[OutputDiff]) -> list[OutputDiff]:
    """Merge diffs of the same outputs over several runs, keeping the worst of each."""
    merged: dict[str, OutputDiff] = {}
    for diff in diffs:
        old = merged.get(diff.name)
        merged[diff.name] = diff if old is None else OutputDiff(
            diff.name, diff.shape, max(old.max_abs, diff.max_abs), max(old.max_rel, diff.max_rel),
            old.passed and diff.passed, max(old.mean_abs, diff.mean_abs), max(old.median_abs, diff.median_abs),
            min(old.cosine, diff.cosine), min(old.sqnr_db, diff.sqnr_db),
            _min_or_none(old.top1, diff.top1), _min_or_none(old.top5, diff.top5))
    return list(merged.values())


def _min_or_none(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else min(a, b)
