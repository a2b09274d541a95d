"""kit.runtimes.testing.FunctionRuntime: a test double that is a real Runtime (the base class's
checks, errors and lock apply), and drives the kit's own harness like any backend."""

import threading

import numpy as np
import pytest

from kit.core.errors import InputError, KitError, RunError
from kit.core.specs import TensorSpec
from kit.runtimes.testing import FunctionRuntime


def doubler(**kwargs):
    return FunctionRuntime(lambda feeds: {"y": feeds["x"] * 2}, inputs={"x": ("batch", 4)},
                           outputs={"y": ("batch", 4)}, **kwargs)


def test_runs_the_function_on_checked_feeds():
    with doubler() as rt:
        assert rt.inputs == [TensorSpec("x", ("batch", 4), "float32")]
        out = rt.run({"x": np.arange(8, dtype=np.float32).reshape(2, 4)})
        np.testing.assert_array_equal(out["y"], np.arange(8).reshape(2, 4) * 2)
        assert rt.calls == 1
        assert rt.info["runtime"] == "function"
        assert rt.stage_ms == {}  # the declared field every backend has
        with pytest.raises(InputError, match=r"expected dtype float32, found float64"):
            rt.run({"x": np.zeros((2, 4))})
        with pytest.raises(InputError, match=r"expected shape \[batch,4\], found \[2, 5\]"):
            rt.run({"x": np.zeros((2, 5), np.float32)})
        assert rt.calls == 1  # refused feeds never reach the function


def test_declared_outputs_are_enforced():
    wrong_name = FunctionRuntime(lambda feeds: {"z": feeds["x"]}, {"x": (1,)}, {"y": (1,)})
    with wrong_name as rt, pytest.raises(RunError, match=r"returned the outputs \['z'\]; its declared outputs are \['y'\]"):
        rt.run({"x": np.zeros(1, np.float32)})
    wrong_dtype = FunctionRuntime(lambda feeds: {"y": feeds["x"].astype(np.float64)}, {"x": (1,)}, {"y": (1,)})
    with wrong_dtype as rt, pytest.raises(RunError, match=r"output 'y' is float64; it was declared float32"):
        rt.run({"x": np.zeros(1, np.float32)})


def test_specs_with_dtypes_and_tensorspecs():
    rt = FunctionRuntime(lambda feeds: {"n": feeds["ids"].sum(1)}, {"ids": ((1, 3), "int64")},
                         [TensorSpec("n", (1,), "int64")]).load()
    assert rt.run({"ids": np.array([[1, 2, 3]])})["n"].tolist() == [6]
    rt.close()
    with pytest.raises(KitError, match="was closed"):
        rt.run({"ids": np.array([[1, 2, 3]])})


def test_the_base_class_serializes_calls():
    inside, overlapped = threading.Event(), []

    def slow(feeds):
        overlapped.append(inside.is_set())
        inside.set()
        threading.Event().wait(0.01)
        inside.clear()
        return {"y": feeds["x"]}

    with FunctionRuntime(slow, {"x": (1,)}, {"y": (1,)}) as rt:
        threads = [threading.Thread(target=rt.run, args=({"x": np.zeros(1, np.float32)},)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    assert overlapped == [False] * 4


def test_drives_the_harness_like_a_backend():
    """The harness runs any Runtime over a data set; with the double, the expected outputs are known."""
    from kit.check.harness import run_dataset
    from kit.data.datasets import from_arrays

    x = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    with doubler() as rt:
        outputs, labels = run_dataset(rt, from_arrays({"x": x}, rt.inputs), batch_size=3)
    np.testing.assert_allclose(outputs["y"], 2 * x)
    assert labels is None and rt.calls == 4  # batches of 3, 3, 3 and 1
