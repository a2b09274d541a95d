"""Numerical comparison of a candidate's outputs with a reference's (Polygraphy's split:
running both on the same inputs happens elsewhere; this module only measures), batch by
batch (Comparator) or all at once (compare_outputs).

Per output: max/mean/median absolute error, max relative error, cosine similarity,
SQNR in dB and, for (batch, classes) outputs, top-1/top-5 agreement.

Pass/fail (``stat``):
- ``elementwise`` (default): every element within ``atol + rtol * |reference|`` (numpy's allclose);
- ``mean`` / ``median`` / ``max``: that statistic of the absolute error is within ``atol``
  or that statistic of the relative error (over every element, |reference| floored at
  1e-12) is within ``rtol`` (Polygraphy's rule).
The reported ``max_rel`` is taken over elements whose reference magnitude exceeds
``atol``, so values near zero do not turn the report into noise. Cosine similarity and
SQNR are computed over the whole output (all samples flattened together). A failed output
says which rule and tolerance failed and by how much (``failure``); NaN in an output fails
every rule, and its statistics are NaN (None in JSON), never an exception.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace

import numpy as np

from kit.core.errors import InputError

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
    cosine: float = 1.0  # NaN when an output holds NaN or Inf
    sqnr_db: float = math.inf  # inf: no noise at all; -inf: no signal, or non-finite outputs
    top1: float | None = None  # fraction of rows whose argmax agrees
    top5: float | None = None  # fraction of rows whose reference argmax is in the candidate's top 5
    rule: str = ""  # the test applied, with its tolerances
    failure: str | None = None  # why it failed, in numbers

    def to_dict(self) -> dict:
        data = {**asdict(self), "shape": list(self.shape)}
        for key, value in data.items():
            if isinstance(value, float) and math.isnan(value):
                data[key] = None  # JSON has no NaN
        if math.isinf(self.sqnr_db):
            data["sqnr_db"] = "inf" if self.sqnr_db > 0 else "-inf"
        return data


def compare_outputs(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], *,
                    atol: float | Mapping[str, float], rtol: float | Mapping[str, float],
                    stat: str = "elementwise") -> list[OutputDiff]:
    """Compare every reference output with the candidate's; tolerances may be per output name."""
    comparator = Comparator(atol=atol, rtol=rtol, stat=stat)
    comparator.add(reference, candidate)
    return comparator.result()


class Comparator:
    """Compare outputs batch by batch: every statistic is accumulated as batches arrive, so
    the outputs of a whole data set never need to be held. Only the absolute errors are kept
    (8 bytes per output element, twice that with ``stat="median"``), for the exact medians."""

    def __init__(self, *, atol: float | Mapping[str, float], rtol: float | Mapping[str, float],
                 stat: str = "elementwise"):
        if stat not in STATS:
            raise InputError(f"expected --stat among {', '.join(STATS)}, found {stat!r}.", hint="Use elementwise.")
        self.atol, self.rtol, self.stat = atol, rtol, stat
        self.outputs: dict[str, _OutputStats] | None = None
        self.batches = 0

    def add(self, reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]) -> None:
        if self.outputs is None:
            self.outputs = self._start(reference, candidate)
        for name, stats in self.outputs.items():
            stats.add(np.asarray(reference[name]), np.asarray(candidate[name]))
        self.batches += 1

    def kept_bytes(self) -> int:
        """What the kept errors take so far (to bound a comparison by memory)."""
        return sum(stats.kept_bytes() for stats in (self.outputs or {}).values())

    def result(self) -> list[OutputDiff]:
        return [stats.result() for stats in (self.outputs or {}).values()]

    def _start(self, reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]):
        missing = [name for name in reference if name not in candidate]
        if missing:
            raise InputError(f"expected the outputs {', '.join(reference)}; the candidate lacks {', '.join(missing)} "
                             f"(it has {', '.join(candidate) or 'none'}).",
                             hint="Compare models with the same output names.")
        for tolerance in (self.atol, self.rtol):
            unknown = sorted(set(tolerance) - set(reference) - {""}) if isinstance(tolerance, Mapping) else []
            if unknown:
                raise InputError(f"a tolerance names the output {', '.join(unknown)}; the outputs are "
                                 f"{', '.join(reference)}.", hint="Write --atol OUTPUT=VALUE with one of those names.")
        return {name: _OutputStats(name, _pick(self.atol, name), _pick(self.rtol, name), self.stat)
                for name in reference}


def _pick(tolerance: float | Mapping[str, float], name: str) -> float:
    if isinstance(tolerance, Mapping):
        return float(tolerance.get(name, tolerance.get("", 0.0)))
    return float(tolerance)


class _OutputStats:
    """One output's running sums, maxima and kept errors."""

    def __init__(self, name: str, atol: float, rtol: float, stat: str):
        self.name, self.atol, self.rtol, self.stat = name, atol, rtol, stat
        self.shape: tuple[int, ...] | None = None
        self.elements = self.outside = self.rows = self.top1_hits = self.top5_hits = 0
        self.nan_reference = self.nan_candidate = 0
        self.sum_error = self.sum_relative = self.signal = self.noise = self.dot = self.candidate_power = 0.0
        self.max_error = self.max_significant_relative = self.max_relative = 0.0
        self.errors: list[np.ndarray] = []
        self.relatives: list[np.ndarray] = []  # every element's relative error, for stat="median"

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        ref, got = ref.astype(np.float64), got.astype(np.float64)
        if ref.shape != got.shape or (self.shape is not None and ref.shape[1:] != self.shape[1:]):
            expected = list(ref.shape if self.shape is None else (ref.shape[0], *self.shape[1:]))
            raise InputError(f"output '{self.name}' has shape {expected} in the reference and "
                             f"{list(got.shape)} in the candidate.", hint="Compare models with the same output shapes.")
        self.shape = ref.shape if self.shape is None else (self.shape[0] + ref.shape[0], *self.shape[1:])
        if ref.size == 0:
            return
        with np.errstate(all="ignore"):  # inf/NaN outputs (an fp16 overflow) must be reported, not crash
            error = np.abs(got - ref)
            magnitude = np.abs(ref)
            self.outside += int(np.count_nonzero(~(error <= self.atol + self.rtol * magnitude)))  # NaN: outside
            significant = magnitude > self.atol  # near-zero references would make max_rel noise
            if significant.any():
                self.max_significant_relative = _nan_max(self.max_significant_relative,
                                                         np.max(error[significant] / magnitude[significant]))
            every_relative = error / np.maximum(magnitude, 1e-12)
            self.sum_relative += float(every_relative.sum())
            self.max_relative = _nan_max(self.max_relative, every_relative.max())
            self.signal += float(np.sum(ref ** 2))
            self.noise += float(np.sum(error ** 2))
            self.dot += float(np.dot(ref.ravel(), got.ravel()))
            self.candidate_power += float(np.sum(got ** 2))
        self.elements += ref.size
        self.sum_error += float(error.sum())
        self.max_error = _nan_max(self.max_error, error.max())
        self.nan_reference += int(np.count_nonzero(~np.isfinite(ref)))
        self.nan_candidate += int(np.count_nonzero(~np.isfinite(got)))
        self.errors.append(error.ravel())
        if self.stat == "median":
            self.relatives.append(every_relative.ravel())
        if ref.ndim == 2 and ref.shape[1] > 1:
            expected = ref.argmax(1)
            self.rows += len(ref)
            self.top1_hits += int(np.count_nonzero(got.argmax(1) == expected))
            if ref.shape[1] >= 5:
                best5 = np.argsort(-got, axis=1, kind="stable")[:, :5]
                self.top5_hits += int(np.count_nonzero((best5 == expected[:, None]).any(1)))

    def kept_bytes(self) -> int:
        return sum(a.nbytes for a in self.errors + self.relatives)

    def result(self) -> OutputDiff:
        rule = (f"elementwise atol={self.atol:g} rtol={self.rtol:g}" if self.stat == "elementwise" else
                f"{self.stat} atol={self.atol:g} or rtol={self.rtol:g}")
        if not self.elements:
            return OutputDiff(self.name, self.shape or (0,), 0.0, 0.0, True, rule=rule)
        mean, median = self.sum_error / self.elements, float(np.median(np.concatenate(self.errors)))
        failure = self._failure(mean, median)
        finite = all(math.isfinite(v) for v in (self.signal, self.noise, self.candidate_power))
        norms = math.sqrt(self.signal * self.candidate_power)
        return OutputDiff(
            self.name, self.shape, self.max_error, self.max_significant_relative, failure is None,
            mean_abs=mean, median_abs=median,
            cosine=(self.dot / norms if norms else float(self.signal == self.noise == 0.0)) if finite else math.nan,
            sqnr_db=(math.inf if self.noise == 0 else 10 * math.log10(self.signal / self.noise) if self.signal
                     else -math.inf) if finite else -math.inf,
            top1=self.top1_hits / self.rows if self.rows else None,
            top5=self.top5_hits / self.rows if self.rows and self.shape[-1] >= 5 else None,
            rule=rule, failure=failure)

    def _failure(self, mean: float, median: float) -> str | None:
        """None when the output passes its rule, else the numbers that failed it."""
        if self.stat == "elementwise":
            if self.outside == 0:
                return None
            failed = (f"{self.outside:,} of {self.elements:,} elements differ by more than atol {self.atol:g} + "
                      f"rtol {self.rtol:g} x |reference|" + (f" (largest difference {self.max_error:.3g})"
                                                             if math.isfinite(self.max_error) else ""))
        else:
            absolute = {"mean": mean, "median": median, "max": self.max_error}[self.stat]
            relative = (self.sum_relative / self.elements if self.stat == "mean" else self.max_relative
                        if self.stat == "max" else float(np.median(np.concatenate(self.relatives))))
            if absolute <= self.atol or relative <= self.rtol:  # both False on NaN
                return None
            failed = (f"{self.stat} absolute error {absolute:.3g} > atol {self.atol:g} and {self.stat} relative "
                      f"error {relative:.3g} > rtol {self.rtol:g}")
        counts = [f"{count:,} in the {side}" for side, count in (("reference", self.nan_reference),
                                                                 ("candidate", self.nan_candidate)) if count]
        return failed + (f"; NaN or Inf among the elements: {', '.join(counts)}" if counts else "")


def _nan_max(a: float, b) -> float:
    """max() that keeps a NaN (Python's max drops it depending on the order)."""
    b = float(b)
    return math.nan if math.isnan(a) or math.isnan(b) else max(a, b)


def worst(diffs: list[OutputDiff]) -> list[OutputDiff]:
    """Merge diffs of the same outputs over several runs, keeping the worst of each."""
    merged: dict[str, OutputDiff] = {}
    for diff in diffs:
        old = merged.get(diff.name)
        merged[diff.name] = diff if old is None else replace(
            diff, max_abs=_nan_max(old.max_abs, diff.max_abs), max_rel=_nan_max(old.max_rel, diff.max_rel),
            passed=old.passed and diff.passed, mean_abs=_nan_max(old.mean_abs, diff.mean_abs),
            median_abs=_nan_max(old.median_abs, diff.median_abs), cosine=-_nan_max(-old.cosine, -diff.cosine),
            sqnr_db=min(old.sqnr_db, diff.sqnr_db), top1=_min_or_none(old.top1, diff.top1),
            top5=_min_or_none(old.top5, diff.top5),
            failure="; ".join(dict.fromkeys(f for f in (old.failure, diff.failure) if f)) or None)
    return list(merged.values())


def _min_or_none(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else min(a, b)
