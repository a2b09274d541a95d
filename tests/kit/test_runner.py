"""The one runner: every model gets the same batches, consumers see each batch as it goes,
streaming many batches gives what one batch gives, and kept results save and load back."""

import numpy as np
import pytest

from kit.check.metrics import Comparator, compare_outputs
from kit.check.runner import RunResults, Stored, Subject, run
from kit.data.datasets import from_arrays
from kit.runtimes.testing import FunctionRuntime

X = np.random.default_rng(0).normal(size=(10, 3, 4, 4)).astype(np.float32)


def scaled(factor, batch="batch", label="scaled"):
    return FunctionRuntime(lambda feeds: {"y": feeds["x"].reshape(len(feeds["x"]), -1).sum(1, keepdims=True) * factor},
                           {"x": (batch, 3, 4, 4)}, {"y": (batch, 1)}, label=label).load()


def test_every_model_sees_the_same_batches_and_the_consumers_see_every_batch():
    seen = []
    results = run([scaled(1.0), scaled(2.0)], from_arrays({"x": X}, scaled(1).inputs).batches(4, pad=False),
                  consumers=[lambda feeds, labels, outputs: seen.append((len(feeds["x"]), outputs))], keep=True,
                  names=["one", "two"])
    assert [count for count, _ in seen] == [4, 4, 2] and results.samples == 10
    for _, (first, second) in seen:
        np.testing.assert_allclose(second["y"], 2 * first["y"], rtol=1e-6)
    expected = X.reshape(10, -1).sum(1, keepdims=True)
    np.testing.assert_allclose(results.outputs("one")["y"], expected, rtol=1e-5)
    np.testing.assert_allclose(results.outputs(1)["y"], 2 * expected, rtol=1e-5)


def test_streaming_gives_what_one_batch_gives():
    """A Comparator fed batch by batch reports the numbers compare_outputs gives on everything at once."""
    models = [scaled(1.0), scaled(1.001)]
    streamed = Comparator(atol=1e-4, rtol=1e-3, stat="mean")
    run(models, from_arrays({"x": X}, models[0].inputs).batches(3, pad=False),
        consumers=[lambda feeds, labels, outputs: streamed.add(*outputs)])
    whole = run(models, [({"x": X}, None)], keep=True)
    (once,) = compare_outputs(whole.outputs(0), whole.outputs(1), atol=1e-4, rtol=1e-3, stat="mean")
    (batched,) = streamed.result()
    assert batched.max_abs == pytest.approx(once.max_abs) and batched.mean_abs == pytest.approx(once.mean_abs)
    assert batched.sqnr_db == pytest.approx(once.sqnr_db, rel=1e-6) and batched.passed == once.passed


def test_a_fixed_batch_model_gets_whole_batches_and_the_padding_is_dropped():
    fixed = scaled(1.0, batch=4)
    results = run([fixed], [({"x": X}, None)], keep=True)
    assert fixed.calls == 3  # 4 + 4 + 2 padded to 4
    np.testing.assert_allclose(results.outputs()["y"], X.reshape(10, -1).sum(1, keepdims=True), rtol=1e-5)


def test_a_channel_last_model_gets_its_layout_and_only_its_inputs():
    nhwc = FunctionRuntime(lambda feeds: {"y": feeds["x"][..., 0]}, {"x": ("batch", 4, 4, 3)},
                           {"y": ("batch", 4, 4)}).load()
    results = run([Subject(nhwc, "nhwc")], [({"x": X, "unused": np.zeros(10, np.float32)}, None)], keep=True)
    np.testing.assert_array_equal(results.outputs()["y"], X[:, 0])


def test_stored_outputs_stand_in_for_a_model():
    """A golden file's outputs are compared with a model exactly as a second model would be."""
    model = scaled(1.0)
    reference = run([model], [({"x": X}, None)], keep=True).outputs()
    results = run([Stored(reference, model.inputs), model],
                  from_arrays({"x": X}, model.inputs).batches(4, pad=False), keep=True)
    np.testing.assert_array_equal(results.outputs(0)["y"], results.outputs(1)["y"])


def test_results_save_and_load_back(tmp_path):
    labels = np.arange(10) % 3
    batches = [({"x": X[:4]}, labels[:4]), ({"x": X[4:]}, labels[4:])]
    results = run([scaled(2.0)], batches, keep=True)
    results.save(tmp_path / "run.npz")
    loaded = RunResults.load(tmp_path / "run.npz", "variant")
    np.testing.assert_array_equal(loaded.outputs("variant")["y"], results.outputs()["y"])
    np.testing.assert_array_equal(loaded.labels, labels)
    assert loaded.samples == 10


def test_nothing_is_kept_unless_asked():
    results = run([scaled(1.0)], from_arrays({"x": X}, scaled(1).inputs).batches(4, pad=False))
    assert results.samples == 10
    assert results.outputs() == {}
