import numpy as np
import pytest

from kit.compare import compare_outputs, worst
from kit.errors import InputError


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
