import numpy as np
import pytest

from kit.check.metrics import compare_outputs, worst
from kit.core.errors import InputError


def test_hand_computed_errors():
    reference = {"y": np.array([1.0, -2.0, 0.0, 4.0], np.float32)}
    candidate = {"y": np.array([1.1, -2.0, 0.00005, 3.0], np.float32)}
    (diff,) = compare_outputs(reference, candidate, atol=1e-4, rtol=1e-3)
    assert diff.max_abs == pytest.approx(1.0)
    # relative error over |reference| > atol: max(0.1/1, 0/2, 1/4) = 0.25
    assert diff.max_rel == pytest.approx(0.25, rel=1e-5)
    assert not diff.passed


def test_tolerance_is_atol_plus_rtol_times_reference():
    reference = {"y": np.array([100.0, 0.0])}
    assert compare_outputs(reference, {"y": np.array([100.1, 0.0])}, atol=0.0, rtol=1e-3)[0].passed
    assert not compare_outputs(reference, {"y": np.array([100.2, 0.0])}, atol=0.0, rtol=1e-3)[0].passed
    assert not compare_outputs(reference, {"y": np.array([100.0, np.nan])}, atol=1.0, rtol=1.0)[0].passed


def test_worst_keeps_the_largest_error_per_output():
    a = compare_outputs({"y": np.zeros(2)}, {"y": np.array([0.5, 0.0])}, atol=1.0, rtol=0)
    b = compare_outputs({"y": np.zeros(2)}, {"y": np.array([0.0, 2.0])}, atol=1.0, rtol=0)
    (merged,) = worst(a + b)
    assert merged.max_abs == 2.0 and not merged.passed


def test_mismatched_outputs_are_refused():
    with pytest.raises(InputError, match="the candidate lacks y"):
        compare_outputs({"y": np.zeros(1)}, {"z": np.zeros(1)}, atol=0, rtol=0)
    with pytest.raises(InputError, match=r"shape \[2\] in the reference and \[3\] in the candidate"):
        compare_outputs({"y": np.zeros(2)}, {"y": np.zeros(3)}, atol=0, rtol=0)


def test_similarity_metrics_on_hand_computed_numbers():
    reference = {"logits": np.array([[3.0, 1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0, 0.0, 1.0]])}
    candidate = {"logits": np.array([[3.0, 1.0, 0.0, 0.0, 0.0, 0.0], [0.5, -1.0, 0.4, 0.3, 0.2, 1.0]])}
    (diff,) = compare_outputs(reference, candidate, atol=0.0, rtol=0.0)
    # signal = 9 + 1 + 4 + 1 = 15; noise = 0.25 + 9 + 0.16 + 0.09 + 0.04 = 9.54
    assert diff.sqnr_db == pytest.approx(10 * np.log10(15 / 9.54))
    # dot = 9 + 1 + (2 * -1 + 1 * 1) = 9; |candidate|^2 = 10 + 2.54
    assert diff.cosine == pytest.approx(9 / np.sqrt(15 * 12.54))
    assert diff.top1 == 0.5  # row 2: argmax 1 vs 5
    assert diff.top5 == 0.5  # row 2: class 1 scores lowest of six in the candidate
    assert diff.mean_abs == pytest.approx(4.4 / 12) and diff.median_abs == 0.0
    assert diff.max_abs == 3.0


def test_statistic_rules_and_per_output_tolerances():
    reference = {"a": np.array([1.0, 1.0, 1.0, 1.0]), "b": np.array([10.0, 10.0])}
    candidate = {"a": np.array([1.0, 1.0, 1.0, 2.0]), "b": np.array([10.5, 10.5])}
    # a: errors 0,0,0,1 -> mean 0.25, median 0, max 1
    by_stat = {stat: compare_outputs(reference, candidate, atol={"": 0.3, "b": 0.1}, rtol=0.0, stat=stat)
               for stat in ("elementwise", "mean", "median", "max")}
    assert [d.passed for d in by_stat["elementwise"]] == [False, False]
    assert [d.passed for d in by_stat["mean"]] == [True, False]
    assert [d.passed for d in by_stat["median"]] == [True, False]
    assert [d.passed for d in by_stat["max"]] == [False, False]
    # b passes on the relative rule: 0.5 / 10 = 0.05 <= rtol
    assert compare_outputs(reference, candidate, atol={"": 0.3, "b": 0.1}, rtol=0.05, stat="mean")[1].passed
    with pytest.raises(InputError, match="expected --stat among elementwise, mean, median, max"):
        compare_outputs(reference, candidate, atol=0, rtol=0, stat="p99")


def test_statistic_rules_count_every_element_for_the_relative_error():
    # A reference near zero: mean absolute error 37.5 is far above atol, and the relative
    # error over all elements is huge, so "mean" must fail.
    reference, candidate = {"y": np.array([1.0, 0.0, 0.0, 0.0])}, {"y": np.array([1.0, 50.0, 50.0, 50.0])}
    for stat in ("mean", "median", "max"):
        assert not compare_outputs(reference, candidate, atol=0.01, rtol=0.1, stat=stat)[0].passed


def test_infinite_outputs_are_reported_not_crashed_on():
    (diff,) = compare_outputs({"y": np.array([1.0, 2.0])}, {"y": np.array([1.0, np.inf])}, atol=1.0, rtol=1.0)
    assert not diff.passed and diff.sqnr_db == float("-inf") and diff.to_dict()["sqnr_db"] == "-inf"
    assert diff.to_dict()["cosine"] is None
