"""TensorRT on a GPU: runs where TensorRT (JetPack's or NVIDIA's), cuda-python and an NVIDIA GPU
are present, and skips elsewhere. Run with: python -m pytest -m gpu"""

import numpy as np
import pytest

import kit
from kit.errors import InputError
from kit.runtimes.tensorrt import TensorRTRuntime


@pytest.mark.gpu
def test_engine_matches_onnx_runtime_on_a_gpu(digits, tmp_path):
    if not TensorRTRuntime.availability().usable:
        pytest.skip("needs an NVIDIA GPU with TensorRT and cuda-python")
    from kit.export.tensorrt import build_engine

    build_engine(digits.onnx, tmp_path / "m.engine", max_shapes=["8x1x8x8"])
    x = np.load(digits.test)["x"][:8]
    with kit.load(tmp_path / "m.engine") as engine, kit.load(digits.onnx) as reference:
        got = engine.run({"input": x})["output"]
        assert set(engine.last_timings) == {"h2d_ms", "compute_ms", "d2h_ms"}
        np.testing.assert_allclose(got, reference.run({"input": x})["output"], atol=1e-3, rtol=1e-3)
        assert engine.run({"input": x[:3]})["output"].shape == (3, 10)  # another batch in the profile
        with pytest.raises(InputError, match="outside the engine's optimization profile"):
            engine.run({"input": np.load(digits.test)["x"][:9]})
