"""An output's summary (kit run --json, kit serve, the stream's JSON lines)."""

import numpy as np

from kit.core.formatting import summarize


def test_an_output_is_summarized_in_a_few_numbers():
    scores = np.array([[0.1, 3.0, -2.0]], np.float32)
    assert summarize(scores) == {"shape": [1, 3], "dtype": "float32", "min": -2.0, "max": 3.0,
                                 "mean": float(np.float64(scores).mean()),
                                 "top5": [(1, 3.0), (0, float(np.float32(0.1))), (2, -2.0)]}


def test_an_empty_output_has_no_numbers_to_give():
    """A detector that finds nothing, a NonZero of nothing: no error, no made-up numbers."""
    assert summarize(np.zeros((0, 4), np.float32)) == {"shape": [0, 4], "dtype": "float32", "min": None,
                                                      "max": None, "mean": None}
