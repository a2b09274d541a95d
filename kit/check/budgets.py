"""Judges for an accuracy budget, one per task: measure a model on labelled data, then check a
candidate against the baseline. Quantizing to a budget asks the judge of the model's recorded
task, so a detector is held to its mAP and a classifier to its top-1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kit.check.accuracy import BudgetCheck, budget_rule, check_budget
from kit.core import provenance


class TopOne:
    """Classification: per-sample top-1 correctness; the paired interval over samples."""

    metric, label = "top1", "top-1"
    heads_first = False

    def __init__(self, data: str):
        self.data = data

    def measure(self, model: str | Path) -> Any:
        from kit.check.harness import evaluate

        return evaluate(model, self.data, runtime="onnxruntime")[1]

    def check(self, baseline: Any, candidate: Any, **rule) -> BudgetCheck:
        return check_budget(baseline, candidate, **rule)


class MeanAP:
    """Detection: mAP@0.5:0.95 (COCO protocol); the paired interval over image resamples."""

    metric, label = "map", "mAP@0.5:0.95"
    # The last convolutions' outputs are decoded (Exp of log-sizes, offsets scaled to pixels), which
    # multiplies their int8 error beyond what SQNR at their own output shows: measured on the demo
    # detector, keeping only the box convolution in float recovers mAP@0.5:0.95 from a ratio of 0.985
    # to 0.998 while the SQNR ranking put it fifth.
    heads_first = True

    def __init__(self, data: str, task: Any):
        self.data, self.task = data, task

    def measure(self, model: str | Path) -> Any:
        from kit.check.detection import detect_on

        return detect_on(str(model), self.data, self.task, runtime="onnxruntime")

    def check(self, baseline: Any, candidate: Any, **rule) -> BudgetCheck:
        from kit.check.detection import paired_delta
        from kit.tasks.coco import mean_ap

        base, cand = mean_ap(baseline.ground_truth, baseline.predictions)[0], mean_ap(
            candidate.ground_truth, candidate.predictions)[0]
        delta, delta_ci = paired_delta(baseline, candidate)
        passed, words, ratio = budget_rule(base, cand, **rule)
        return BudgetCheck(base, cand, delta, delta_ci, ratio, passed, words, metric=self.metric)


def judge_for(model: str | Path, data: str) -> TopOne | MeanAP:
    """The judge of the model's recorded task (classification when none is recorded)."""
    recorded = provenance.read(model).get("task") or {}
    if recorded.get("name") == "detect":
        from kit import tasks

        return MeanAP(data, tasks.from_dict(recorded))
    return TopOne(data)
