from pathlib import Path

import numpy as np
import pytest
from helpers import TINY_B, TINY_W, factory

pytest_plugins = ["pytester"]


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


class Trained:
    """A model trained on the digits, exported, with its calibration and held-out sets on disk."""

    def __init__(self, folder: Path, module):
        from kit.demo import digits_split
        from kit.export import export_onnx

        x_train, x_test, y_train, y_test = digits_split()
        self.module = module
        self.onnx = folder / "model.onnx"
        self.calib = folder / "calib.npz"
        self.test = folder / "test.npz"
        self.calib_x = x_train[:300]
        np.savez(self.calib, x=self.calib_x)
        np.savez(self.test, x=x_test, y=y_test)
        export_onnx(module, self.onnx, input_shapes="1x1x8x8")


@pytest.fixture(scope="session")
def digits(tmp_path_factory) -> Trained:
    """The demo's digits CNN (99.1% held-out top-1 here; trained on one thread, deterministically)."""
    from kit.demo import digits_split, train_digits_cnn

    x_train, _, y_train, _ = digits_split()
    return Trained(tmp_path_factory.mktemp("digits"), train_digits_cnn(x_train, y_train))


@pytest.fixture(scope="session")
def mobilenet(tmp_path_factory) -> Trained:
    """A MobileNetV2-style net (inverted residuals, depthwise convs, ReLU6) trained on the digits (98.0% here)."""
    from kit.demo import digits_split, train_digits_cnn
    from kit.models import make_mobilenet_style

    x_train, _, y_train, _ = digits_split()
    module = train_digits_cnn(x_train, y_train, factory=lambda: make_mobilenet_style(1, 10, 16))
    return Trained(tmp_path_factory.mktemp("mobilenet"), module)


@pytest.fixture(scope="session")
def sensitive(tmp_path_factory) -> Trained:
    """The digits CNN made quantization-hostile without changing its float function: one
    channel after the first ReLU is scaled by 1000 and the depthwise conv reading it divides
    it back. Per-tensor int8 activations then crush every other channel (measured: 98.9% ->
    9.6% top-1); keeping the depthwise conv and its input chain in float recovers it."""
    import torch

    from kit.demo import digits_split, train_digits_cnn

    x_train, _, y_train, _ = digits_split()
    module = train_digits_cnn(x_train, y_train)
    with torch.no_grad():
        batch_norm, depthwise = module[1], module[3]
        batch_norm.weight[0] *= 1000
        batch_norm.bias[0] *= 1000
        depthwise.weight[0] /= 1000
    return Trained(tmp_path_factory.mktemp("sensitive"), module)


@pytest.fixture(scope="session")
def digits_tflite(digits, tmp_path_factory) -> dict:
    """The digits CNN exported to the four TFLite variants (NHWC for int8, NCHW otherwise)."""
    from kit.export.tflite import export_tflite
    folder = tmp_path_factory.mktemp("tflite")
    return {precision: export_tflite(digits.module, folder / f"digits.{precision}.tflite", precision=precision,
                                     input_shapes="1x1x8x8",
                                     calib=str(digits.calib) if precision == "int8" else None)
            for precision in ("fp32", "fp16", "int8-dynamic", "int8")}


@pytest.fixture(scope="session")
def stub_edgetpu_library(tmp_path_factory) -> Path:
    """A delegate library that loads and finds no device, as libedgetpu does with nothing plugged in,
    named as the real one (found through LD_LIBRARY_PATH). Each time a delegate (the device) is
    opened it appends a line to the file $STUB_MARKER names, when that is set."""
    import shutil
    import subprocess

    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the stub Edge TPU library")
    folder = tmp_path_factory.mktemp("stub")
    (folder / "stub.c").write_text(
        "#include <stddef.h>\n#include <stdio.h>\n#include <stdlib.h>\n"
        "void *tflite_plugin_create_delegate(char **keys, char **values, size_t n, void (*report)(const char *)) {\n"
        "  const char *path = getenv(\"STUB_MARKER\");\n"
        "  FILE *marker = path ? fopen(path, \"a\") : NULL;\n"
        "  if (marker) { fputs(\"opened\\n\", marker); fclose(marker); }\n"
        "  if (report) report(\"Failed to open device: no Edge TPU found\");\n"
        "  return NULL;\n"
        "}\n"
        "void tflite_plugin_destroy_delegate(void *delegate) {}\n")
    library = folder / "libedgetpu.so.1"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(library), str(folder / "stub.c")], check=True)
    return library
