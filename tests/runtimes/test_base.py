"""The Runtime interface: lifecycle and the one feed check every backend shares (on ONNX Runtime)."""

import numpy as np
import pytest
from helpers import TINY_B, TINY_W
from kit.runtimes.ort import OnnxRuntime

import kit
from kit.core.errors import InputError, KitError

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
    with pytest.raises(KitError, match="was closed; this call did not run"):
        _ = rt.inputs
    assert rt.load().run({"x": X})["z"].tolist() == (X * 2).tolist()  # a closed runtime loads again


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


def test_unknown_options_are_refused(tiny_onnx):
    with pytest.raises(InputError, match="runtime 'onnxruntime' does not take the option weights; it takes threads, "
                                         "optimization, providers"):
        OnnxRuntime(tiny_onnx, weights="w.pt")


def test_a_failure_inside_the_runtime_becomes_a_run_error(tmp_path):
    """Ids outside an embedding's table pass the feed check (right dtype and shape) and fail inside ORT."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from kit.core.errors import RunError

    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["vectors"])], "embedding",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("vectors", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(3, 2), "table")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "embedding.onnx")
    with kit.load(tmp_path / "embedding.onnx") as rt:
        np.testing.assert_array_equal(rt.run({"ids": np.array([2, 0])})["vectors"], [[4, 5], [0, 1]])
        with pytest.raises(RunError, match=r"runtime 'onnxruntime' failed on inputs ids\[1\]: .*"):
            rt.run({"ids": np.array([7])})


def test_types_numpy_lacks_keep_their_name(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.UINT32, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT32, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "u32.onnx")
    with kit.load(tmp_path / "u32.onnx") as rt:
        assert rt.inputs[0].dtype == "uint32"
        np.testing.assert_array_equal(rt.run({"x": np.array([1, 7], np.uint32)})["y"], [1, 7])
