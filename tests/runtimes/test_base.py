"""The Runtime interface: lifecycle and the one feed check every backend shares (on ONNX Runtime)."""

import numpy as np
import pytest
from helpers import TINY_B, TINY_W

import kit
from kit.errors import InputError, KitError
from kit.runtimes.ort import OnnxRuntime

X = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]], dtype=np.float32)


def test_outputs_are_the_models_numbers(tiny_onnx):
    with kit.load(tiny_onnx) as rt:
        outputs = rt.run({"x": X})
    assert list(outputs) == ["y", "z"]
    np.testing.assert_allclose(outputs["y"], X @ TINY_W + TINY_B, rtol=1e-6)
    np.testing.assert_array_equal(outputs["z"], X * 2)


def test_specs_and_info(tiny_onnx):
    with OnnxRuntime(tiny_onnx, threads=1) as rt:
        assert [s.describe() for s in rt.inputs] == ["'x' float32[batch,3]"]
        assert [s.describe() for s in rt.outputs] == ["'y' float32[batch,2]", "'z' float32[batch,3]"]
        info = rt.info
    assert info["runtime"] == "onnxruntime" and info["threads"] == 1
    assert info["providers"] == ["CPUExecutionProvider"]
    assert info["version"].count(".") >= 1


def test_construction_is_cheap_and_lifecycle_is_explicit(tiny_onnx):
    rt = OnnxRuntime(tiny_onnx)
    assert not rt.loaded and "not loaded" in repr(rt)
    with pytest.raises(KitError, match="is not loaded. Call load\\(\\) first"):
        rt.run({"x": X})
    rt.load()
    assert rt.load() is rt  # idempotent
    rt.close()
    assert not rt.loaded
    with pytest.raises(KitError, match="is not loaded"):
        _ = rt.inputs


@pytest.mark.parametrize("feeds, message", [
    ({}, r"expected the inputs 'x' float32\[batch,3\]; found nothing \(missing: x\)"),
    ({"x": X, "mask": X}, r"found mask, x \(unknown: mask\)"),
    ({"input": X}, r"\(missing: x\) \(unknown: input\)"),
    ({"x": X[0]}, r"input 'x' float32\[batch,3\] expected shape \[batch,3\], found \[3\]"),
    ({"x": np.zeros((2, 4), np.float32)}, r"expected shape \[batch,3\], found \[2, 4\]"),
    ({"x": X.astype(np.float64)}, r"expected dtype float32, found float64. Convert it with array.astype\(np.float32\)"),
    ({"x": [[1, 2, 3]]}, r"expected dtype float32, found int64"),
])
def test_feed_check_names_the_expected_spec(tiny_onnx, feeds, message):
    with kit.load(tiny_onnx) as rt, pytest.raises(InputError, match=message):
        rt.run(feeds)


def test_feeds_must_be_a_mapping(tiny_onnx):
    with kit.load(tiny_onnx) as rt, pytest.raises(InputError, match="expected feeds as a mapping .* found list"):
        rt.run([X])


def test_dynamic_batch_accepts_any_size(tiny_onnx):
    with kit.load(tiny_onnx) as rt:
        for batch in (1, 7):
            assert rt.run({"x": np.ones((batch, 3), np.float32)})["y"].shape == (batch, 2)
