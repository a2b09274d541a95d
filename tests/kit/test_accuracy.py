"""Accuracy, bootstrap intervals and budgets on hand-computed cases."""

import numpy as np
import pytest

from kit.check.accuracy import accuracy, bootstrap_ci, check_budget, paired_delta_ci, top_k_correct
from kit.core.errors import InputError

LOGITS = np.array([[0.1, 0.9, 0.0, 0.0, 0.0, 0.0],    # predicts 1, label 1: top-1
                   [0.5, 0.4, 0.3, 0.2, 0.1, 0.0],    # predicts 0, label 4: top-5 only (rank 5)
                   [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],    # predicts 5, label 0: neither (rank 6)
                   [0.9, 0.0, 0.0, 0.0, 0.0, 0.1]])   # predicts 0, label 0: top-1
LABELS = np.array([1, 4, 0, 0])


def test_top_k_on_hand_computed_logits():
    np.testing.assert_array_equal(top_k_correct(LOGITS, LABELS, 1), [True, False, False, True])
    np.testing.assert_array_equal(top_k_correct(LOGITS, LABELS, 5), [True, True, False, True])
    result = accuracy(LOGITS, LABELS)
    assert (result.count, result.top1, result.top5) == (4, 0.5, 0.75)


def test_bootstrap_interval_of_a_proportion():
    correct = np.array([True] * 900 + [False] * 100)
    low, high = bootstrap_ci(correct, seed=1)
    # Normal approximation: 0.9 +- 1.96 * sqrt(0.9 * 0.1 / 1000) = [0.8814, 0.9186].
    assert low == pytest.approx(0.8814, abs=0.004) and high == pytest.approx(0.9186, abs=0.004)
    assert bootstrap_ci(np.ones(50, bool)) == (1.0, 1.0)


def test_paired_delta_interval():
    baseline = np.array([True] * 100)
    candidate = np.array([True] * 90 + [False] * 10)  # loses 10 of 100
    low, high = paired_delta_ci(baseline, candidate, seed=0)
    # Only-baseline-right outcomes ~ Binomial(100, 0.1): delta ~ -0.10 +- 1.96 * 0.03.
    assert low == pytest.approx(-0.16, abs=0.015) and high == pytest.approx(-0.04, abs=0.015)


def test_budget_rules_at_their_boundaries():
    baseline = np.array([True] * 100)
    candidate = np.array([True] * 99 + [False])
    assert check_budget(baseline, candidate, max_drop=0.01).passed
    assert not check_budget(baseline, candidate, max_drop=0.009).passed
    ratio = check_budget(baseline, candidate, min_ratio=0.99)
    assert ratio.passed and ratio.ratio == pytest.approx(0.99) and ratio.rule == "ratio >= 0.99"
    assert not check_budget(baseline, candidate, min_ratio=0.995).passed
    with pytest.raises(InputError, match="exactly one of --max-drop and --min-ratio"):
        check_budget(baseline, candidate)


def test_bad_labels():
    with pytest.raises(InputError, match=r"labels range over \[0, 9\] but the model scores 6 classes"):
        top_k_correct(LOGITS, np.array([0, 1, 2, 9]), 1)
    with pytest.raises(InputError, match="expected one label per sample"):
        top_k_correct(LOGITS, LABELS[:3], 1)
