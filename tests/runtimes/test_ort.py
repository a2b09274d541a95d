"""ONNX Runtime backend options and broken model files."""

import numpy as np
import pytest
from kit.runtimes.ort import OnnxRuntime

import kit
from kit.core.errors import InputError, ModelFileError


@pytest.mark.parametrize("level", ["disable", "basic", "extended", "all"])
def test_optimization_levels_give_the_same_numbers(conv_onnx, level):
    feeds = {"input": np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)}
    with OnnxRuntime(conv_onnx, optimization="disable") as plain, \
            OnnxRuntime(conv_onnx, optimization=level, threads=1) as tuned:
        np.testing.assert_allclose(tuned.run(feeds)["output"], plain.run(feeds)["output"], atol=1e-5)
        assert tuned.info["optimization"] == level


def test_unknown_optimization_level(tiny_onnx):
    with pytest.raises(InputError, match="expected optimization among disable, basic, extended, all, found 'max'"):
        OnnxRuntime(tiny_onnx, optimization="max").load()


def test_absent_provider_is_named(tiny_onnx):
    with pytest.raises(InputError, match=r"execution provider TensorrtExecutionProvider is not in this ONNX Runtime "
                                         r"build \(available: .*CPUExecutionProvider"):
        OnnxRuntime(tiny_onnx, providers=["TensorrtExecutionProvider"]).load()


def test_truncated_onnx_file(tmp_path, conv_onnx):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(conv_onnx.read_bytes()[: conv_onnx.stat().st_size // 2])
    with pytest.raises(ModelFileError, match=r"onnxruntime could not load .*broken.onnx: .*Expected a valid model"):
        kit.load(broken)


def test_file_that_is_no_model(tmp_path):
    (tmp_path / "photo.onnx").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ModelFileError, match="could not load"):
        kit.load(tmp_path / "photo.onnx")


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="model file .*absent.onnx does not exist"):
        kit.load(tmp_path / "absent.onnx")
