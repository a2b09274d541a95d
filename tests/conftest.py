from pathlib import Path

import numpy as np
import pytest
from helpers import TINY_B, TINY_W, factory


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    """A hand-built ONNX model, no torch involved: y = x @ W + b and z = 2 x, x float32[batch, 3]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"]),
         helper.make_node("Mul", ["x", "two"], ["z"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(TINY_W, "W"), numpy_helper.from_array(TINY_B, "b"),
         numpy_helper.from_array(np.array(2, dtype=np.float32), "two")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    onnx.save(model, path)
    return path


@pytest.fixture(scope="session")
def conv_onnx(tmp_path_factory) -> Path:
    """make_conv exported once, with a stored preprocessing spec, for tests that need a real export."""
    from kit.export import export_onnx

    path = tmp_path_factory.mktemp("conv") / "conv.onnx"
    export_onnx(factory("make_conv"), path, input_shapes="1x3x8x8",
                preprocess="mean=0.5/0.5/0.5,std=0.25/0.25/0.25")
    return path
