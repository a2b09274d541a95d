"""Calibration data in every form (kit.data.calibration.calibration_data) and one pass over it (FeedReader),
including models whose batch axis is fixed above 1."""

import hashlib

import numpy as np
import pytest

from kit.core.errors import InputError
from kit.core.specs import TensorSpec
from kit.data.calibration import FeedReader, calibration_data, calibration_feeds

FIXED_4 = [TensorSpec("image", (4, 1, 4, 4))]
FREE = [TensorSpec("image", ("batch", 1, 4, 4))]


def samples(count: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((count, 1, 4, 4)).astype(np.float32)


def test_a_fixed_batch_axis_gets_batches_of_exactly_that_size(tmp_path):
    x = samples(10)
    np.save(tmp_path / "x.npy", x)
    reader = calibration_feeds(str(tmp_path / "x.npy"), FIXED_4, batch_size=1, keep=5)  # TensorRT asks for 1
    assert [len(feeds["image"]) for feeds in reader] == [4, 4]
    assert reader.count == 8 and reader.dropped == 2 and reader.static_batch == 4
    assert reader.sha256() == hashlib.sha256(x[:8].tobytes()).hexdigest()
    assert len(reader.kept_arrays()["image"]) == 8  # whole batches: the model runs only those


def test_a_dataset_with_the_fixed_specs_is_batched_too(tmp_path):
    """As `kit compare --layers` hands one over: a Dataset built for the model's own (fixed) inputs."""
    x = samples(12)
    np.save(tmp_path / "x.npy", x)
    dataset = calibration_data(str(tmp_path / "x.npy"), FIXED_4)
    assert [len(feeds["image"]) for feeds in FeedReader(dataset, inputs=FIXED_4)] == [4, 4, 4]


def test_python_feeds_are_samples_whatever_their_batches():
    x = samples(10)
    dataset = calibration_data([{"image": x[:3]}, {"image": x[3:8]}, {"image": x[8:]}], FREE)
    assert dataset.count == 10 and dataset.description == "list of feeds from Python"
    batches = [feeds["image"] for feeds, _ in dataset.batches(4)]
    assert [len(b) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(batches), x)
    again = [feeds["image"] for feeds, _ in dataset.batches(4)]  # a second pass reads the same samples
    np.testing.assert_array_equal(np.concatenate(again), x)


def test_a_reader_with_get_next_is_read_once_up_to_the_limit():
    calls = []

    class Reader:
        def get_next(self):
            calls.append(1)
            return {"image": samples(3)}

    dataset = calibration_data(Reader(), FREE, limit=7)
    assert dataset.count == 9 and len(calls) == 3


def test_a_multi_input_model_needs_named_arrays():
    with pytest.raises(InputError, match="calibration data is one array, but the model takes 2 inputs"):
        calibration_data(samples(4), [TensorSpec("a", ("batch", 4)), TensorSpec("b", ("batch", 4))])
    with pytest.raises(InputError, match=r"different sample counts per input in one batch \(a\[3, 4\], b\[2, 4\]\)"):
        calibration_data([{"a": np.zeros((3, 4), np.float32), "b": np.zeros((2, 4), np.float32)}],
                         [TensorSpec("a", ("batch", 4)), TensorSpec("b", ("batch", 4))])
