"""Task accuracy on labelled data, with bootstrap confidence intervals, and accuracy budgets.

The bootstrap resamples samples with replacement; for a 0/1 correctness vector the count
of correct samples in a resample is exactly Binomial(n, p), and for a paired difference
the four outcome counts are Multinomial(n, ...), so both are drawn directly instead of
materialising n x resamples indices.

Known limits, stated rather than hidden: at 0% or 100% accuracy the bootstrap interval
collapses to a point (every resample is identical); budgets pass or fail on the measured
delta, and the delta's interval is reported beside it for the reader to weigh.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kit.core.errors import InputError

RESAMPLES = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Accuracy:
    count: int
    top1: float
    top1_ci: tuple[float, float]
    top5: float | None = None
    classes: list[str] | None = None  # the class folder names, for image-folder data

    def to_dict(self) -> dict:
        data = {"count": self.count, "top1": self.top1, "top1_ci95": list(self.top1_ci), "top5": self.top5}
        return data | ({"classes": self.classes} if self.classes else {})


@dataclass(frozen=True)
class BudgetCheck:
    """A candidate's accuracy against a baseline's, and whether it fits the budget."""

    baseline: float
    candidate: float
    delta: float  # candidate - baseline
    delta_ci: tuple[float, float]
    ratio: float
    passed: bool
    rule: str  # e.g. "drop <= 0.01" or "ratio >= 0.99"
    metric: str = "top1"  # what baseline and candidate are: top1, or map (mAP@0.5:0.95) for a detector

    def to_dict(self) -> dict:
        return {f"baseline_{self.metric}": self.baseline, self.metric: self.candidate, "metric": self.metric,
                "delta": self.delta, "delta_ci95": list(self.delta_ci), "ratio": self.ratio, "passed": self.passed,
                "rule": self.rule}


def budget_rule(baseline: float, candidate: float, *, max_drop: float | None = None,
                min_ratio: float | None = None) -> tuple[bool, str, float]:
    """Does ``candidate`` keep the budget against ``baseline``? (passed, the rule in words, ratio)"""
    ratio = candidate / baseline if baseline else 0.0
    if max_drop is not None:
        return baseline - candidate <= max_drop + 1e-12, f"drop <= {max_drop:g}", ratio
    return ratio >= min_ratio - 1e-12, f"ratio >= {min_ratio:g}", ratio


def top_k_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per sample: is the label among the k highest scores?"""
    if logits.ndim != 2:
        raise InputError(f"expected classification scores shaped (samples, classes), found {list(logits.shape)}.",
                         hint="Evaluate a classifier output, or name it with --output.")
    if labels.shape != (len(logits),):
        raise InputError(f"expected one label per sample ({len(logits)}), found labels shaped {list(labels.shape)}.",
                         hint="Store labels as a 1-D integer array y.")
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= logits.shape[1]:
        raise InputError(f"labels range over [{labels.min()}, {labels.max()}] but the model scores "
                         f"{logits.shape[1]} classes.", hint="Check that the labels index the model's classes.")
    best = np.argsort(-logits, axis=1, kind="stable")[:, :k]  # ties: the lower class index first
    return (best == labels[:, None]).any(axis=1)


def accuracy(logits: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> Accuracy:
    correct = top_k_correct(logits, labels, 1)
    top5 = float(top_k_correct(logits, labels, 5).mean()) if logits.shape[1] >= 5 else None
    return Accuracy(len(correct), float(correct.mean()), bootstrap_ci(correct, seed=seed), top5)


def bootstrap_ci(correct: np.ndarray, *, seed: int = 0, resamples: int = RESAMPLES,
                 level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of a 0/1 vector."""
    n = len(correct)
    rng = np.random.default_rng(seed)
    means = rng.binomial(n, float(np.mean(correct)), resamples) / n
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def paired_delta_ci(baseline_correct: np.ndarray, candidate_correct: np.ndarray, *, seed: int = 0,
                    resamples: int = RESAMPLES, level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(candidate) - mean(baseline) over the same samples."""
    b, c = np.asarray(baseline_correct, bool), np.asarray(candidate_correct, bool)
    n = len(b)
    # Outcomes per sample: only the candidate right (+1), only the baseline right (-1), else 0.
    probabilities = [np.mean(c & ~b), np.mean(b & ~c)]
    probabilities.append(max(0.0, 1.0 - sum(probabilities)))
    counts = np.random.default_rng(seed).multinomial(n, probabilities, resamples)
    deltas = (counts[:, 0] - counts[:, 1]) / n
    tail = (1 - level) / 2 * 100
    return float(np.percentile(deltas, tail)), float(np.percentile(deltas, 100 - tail))


def check_budget(baseline_correct: np.ndarray, candidate_correct: np.ndarray, *,
                 max_drop: float | None = None, min_ratio: float | None = None) -> BudgetCheck:
    """Absolute drop (``max_drop``) or MLPerf's ratio of the baseline's accuracy (``min_ratio``)."""
    if (max_drop is None) == (min_ratio is None):
        raise InputError("expected exactly one of --max-drop and --min-ratio.",
                         hint="E.g. --max-drop 0.01 (one point) or --min-ratio 0.99 (99% of FP32).")
    if max_drop is not None and not (0 <= max_drop <= 1 or max_drop == float("inf")):
        raise InputError(f"expected --max-drop from 0 to 1, found {max_drop}.", hint="E.g. 0.01 for one point.")
    if min_ratio is not None and not 0 < min_ratio <= 1:
        raise InputError(f"expected --min-ratio above 0 and at most 1, found {min_ratio}.",
                         hint="E.g. 0.99 for 99% of the baseline's accuracy.")
    base, cand = float(np.mean(baseline_correct)), float(np.mean(candidate_correct))
    passed, rule, ratio = budget_rule(base, cand, max_drop=max_drop, min_ratio=min_ratio)
    return BudgetCheck(base, cand, cand - base, paired_delta_ci(baseline_correct, candidate_correct), ratio,
                       passed, rule)
