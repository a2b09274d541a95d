"""A Concat joining very different ranges (a detector's pixel boxes and 0-1 scores) is found on
calibration samples and kept in float by static int8; the head layers a detector's budget tries
first are the compute nodes nearest the outputs."""

import numpy as np
import onnx
import pytest
from kit.export.quantize import quantize
from kit.export.quantize.joins import mixed_range_joins
from kit.runtimes.ort import OnnxRuntime
from onnx import TensorProto, helper

from kit.check.layers import head_layers
from kit.data.datasets import from_arrays


def joined_model(path, box_scale: float, batch="n"):
    """x [N,4] -> Conv-free head: boxes = MatMul(x, W) * box_scale, scores = Sigmoid(MatMul(x, V));
    output = Concat(boxes, scores) on axis 1."""
    rng = np.random.default_rng(0)
    weights = [helper.make_tensor(name, TensorProto.FLOAT, [4, 4], rng.normal(size=16).astype(np.float32))
               for name in ("W", "V")]
    scale = helper.make_tensor("scale", TensorProto.FLOAT, [], [box_scale])
    nodes = [helper.make_node("MatMul", ["x", "W"], ["raw_boxes"], name="box_matmul"),
             helper.make_node("Mul", ["raw_boxes", "scale"], ["boxes"], name="to_pixels"),
             helper.make_node("MatMul", ["x", "V"], ["logits"], name="score_matmul"),
             helper.make_node("Sigmoid", ["logits"], ["scores"], name="sigmoid"),
             helper.make_node("Concat", ["boxes", "scores"], ["output"], name="join", axis=1)]
    graph = helper.make_graph(nodes, "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 8])],
                              initializer=[*weights, scale])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def samples(count=64):
    return np.random.default_rng(1).uniform(-1, 1, size=(count, 4)).astype(np.float32)


def inputs(model):
    with OnnxRuntime(model) as runtime:
        return runtime.inputs


def dataset(model):
    return from_arrays({"x": samples()}, inputs(model), "test arrays")


def scores(model):
    with OnnxRuntime(model) as runtime:
        return runtime.run({"x": samples()})["output"][:, 4:]


def test_a_join_of_pixels_and_probabilities_is_found_with_its_ranges(tmp_path):
    model = joined_model(tmp_path / "m.onnx", box_scale=200.0)
    [join] = mixed_range_joins(model, dataset(model), inputs(model))
    assert join.node == "join" and list(join.ranges) == ["boxes", "scores"]
    x = samples()
    rng = np.random.default_rng(0)
    boxes = np.abs(x @ rng.normal(size=(4, 4)).astype(np.float32) * 200).max()
    assert join.ranges["boxes"] == pytest.approx(boxes, rel=1e-5)
    assert 0.5 < join.ranges["scores"] < 1.0
    assert join.steps == max(1, int(256 * join.ranges["scores"] / join.ranges["boxes"]))
    assert "join joins tensors of magnitude" in join.describe()


def test_a_join_of_like_ranges_is_left_alone(tmp_path):
    model = joined_model(tmp_path / "m.onnx", box_scale=0.5)
    assert mixed_range_joins(model, dataset(model), inputs(model)) == []


def test_static_int8_keeps_the_mixed_join_in_float_unless_told(tmp_path):
    model = joined_model(tmp_path / "m.onnx", box_scale=200.0)
    calib = {"x": samples()}
    kept = quantize(model, tmp_path / "kept.onnx", calib=calib)
    forced = quantize(model, tmp_path / "forced.onnx", calib=calib, keep_mixed_joins=False)
    assert "join" in kept.excluded and "join" not in forced.excluded
    assert any(note.startswith("kept in float: join joins") for note in kept.notes)
    reference = scores(model)
    quantized = {name: scores(tmp_path / f"{name}.onnx") for name in ("kept", "forced")}
    error = {name: np.abs(value - reference).max() for name, value in quantized.items()}
    # Under the boxes' scale a score step is about 2 * 200 * |W| / 256; alone, about 1/256.
    assert error["kept"] < 0.02 < error["forced"]
    assert len(np.unique(quantized["forced"])) < len(np.unique(quantized["kept"])) / 4


def test_head_layers_are_the_compute_nodes_nearest_the_outputs(tmp_path):
    model = joined_model(tmp_path / "m.onnx", box_scale=200.0)
    assert head_layers(model) == ["box_matmul", "score_matmul"]


def test_a_batch_axis_fixed_at_one(tmp_path):
    """The ranges are measured in the model's own batches (it takes one sample at a time)."""
    model = joined_model(tmp_path / "m.onnx", box_scale=200.0, batch=1)
    [join] = mixed_range_joins(model, dataset(model), inputs(model))
    assert join.node == "join"
