"""Numerical comparison of two sets of outputs (a reference and a candidate).

Pass/fail follows numpy.allclose per element: ``|candidate - reference| <= atol + rtol * |reference|``.
The reported relative error is taken over elements whose reference magnitude exceeds
``atol``, so values near zero do not turn it into noise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from kit.errors import InputError


@dataclass(frozen=True)
class OutputDiff:
    name: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    passed: bool

    def to_dict(self) -> dict:
        return {**asdict(self), "shape": list(self.shape)}


def compare_outputs(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], *,
                    atol: float, rtol: float) -> list[OutputDiff]:
    missing = [name for name in reference if name not in candidate]
    if missing:
        raise InputError(f"expected the outputs {', '.join(reference)}; the candidate lacks {', '.join(missing)} "
                         f"(it has {', '.join(candidate) or 'none'}).",
                         hint="Compare models with the same output names.")
    diffs = []
    for name, ref in reference.items():
        ref = np.asarray(ref, dtype=np.float64)
        got = np.asarray(candidate[name], dtype=np.float64)
        if ref.shape != got.shape:
            raise InputError(f"output '{name}' has shape {list(ref.shape)} in the reference and "
                             f"{list(got.shape)} in the candidate.", hint="Compare models with the same output shapes.")
        error = np.abs(got - ref)
        significant = np.abs(ref) > atol
        max_rel = float((error[significant] / np.abs(ref[significant])).max()) if significant.any() else 0.0
        passed = bool(np.all(error <= atol + rtol * np.abs(ref)))  # False on any NaN
        diffs.append(OutputDiff(name, ref.shape, float(error.max()) if error.size else 0.0, max_rel, passed))
    return diffs


def worst(diffs: list[OutputDiff]) -> list[OutputDiff]:
    """Merge diffs of the same outputs over several runs, keeping the worst of each."""
    merged: dict[str, OutputDiff] = {}
    for diff in diffs:
        old = merged.get(diff.name)
        merged[diff.name] = diff if old is None else OutputDiff(
            diff.name, diff.shape, max(old.max_abs, diff.max_abs), max(old.max_rel, diff.max_rel),
            old.passed and diff.passed)
    return list(merged.values())
