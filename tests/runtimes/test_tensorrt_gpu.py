"""TensorRT on a GPU: runs where TensorRT (JetPack's or NVIDIA's), cuda-python and an NVIDIA GPU
are present, and skips elsewhere. Run with: python -m pytest -m gpu"""

import numpy as np
import pytest
from kit.runtimes.tensorrt.runtime import TensorRTRuntime

import kit
from kit.core.errors import InputError


@pytest.mark.gpu
def test_engine_matches_onnx_runtime_on_a_gpu(digits, tmp_path):
    if not TensorRTRuntime.availability().usable:
        pytest.skip("needs an NVIDIA GPU with TensorRT and cuda-python")
    from kit.runtimes.tensorrt.build import build_engine

    build_engine(digits.onnx, tmp_path / "m.engine", max_shapes=["8x1x8x8"])
    x = np.load(digits.test)["x"][:8]
    with kit.load(tmp_path / "m.engine") as engine, kit.load(digits.onnx) as reference:
        got = engine.run({"input": x})["output"]
        assert set(engine.stage_ms) == {"h2d_ms", "compute_ms", "d2h_ms"}
        np.testing.assert_allclose(got, reference.run({"input": x})["output"], atol=1e-3, rtol=1e-3)
        assert engine.run({"input": x[:3]})["output"].shape == (3, 10)  # another batch in the profile
        with pytest.raises(InputError, match="outside the engine's optimization profile"):
            engine.run({"input": np.load(digits.test)["x"][:9]})


@pytest.mark.gpu
def test_implicit_calibration_on_tensorrt_before_11(digits, tmp_path):
    """A float model built to int8 with the kit's calibration data, where TensorRT still has calibrators."""
    from kit.runtimes.tensorrt.build import build_engine
    from kit.runtimes.tensorrt.modules import tensorrt_module

    if not TensorRTRuntime.availability().usable or not hasattr(tensorrt_module(), "IInt8EntropyCalibrator2"):
        pytest.skip("needs a GPU and a TensorRT with implicit calibrators (before 11)")
    result = build_engine(digits.onnx, tmp_path / "m.engine", precision="int8", calib=str(digits.calib))
    assert result.manifest["quantization"].startswith("implicit") and result.manifest["calibration"]["count"] == 300
    assert (tmp_path / "m.engine.calib.cache").stat().st_size > 0
    # The cache is reused for the same model and data, and recorded as what it was made from ...
    again = build_engine(digits.onnx, tmp_path / "m.engine", precision="int8", calib=str(digits.calib))
    assert again.notes == ["reused m.engine.calib.cache: made from this model and these 300 samples."]
    assert again.manifest["calibration"]["count"] == 300
    # ... and not for other data.
    np.savez(tmp_path / "fewer.npz", x=np.load(digits.calib)["x"][:200])
    other = build_engine(digits.onnx, tmp_path / "m.engine", precision="int8", calib=str(tmp_path / "fewer.npz"))
    assert other.notes[0].startswith("calibrated again: m.engine.calib.cache does not fit this build (it was made "
                                     "from other data, another sample count)")
    assert other.manifest["calibration"]["count"] == 200
    x, y = np.load(digits.test)["x"], np.load(digits.test)["y"]
    with kit.load(tmp_path / "m.engine") as engine:
        logits = np.concatenate([engine.run({"input": x[i:i + 8]})["output"] for i in range(0, 448, 8)])
    assert (logits.argmax(1) == y[:448]).mean() >= 0.97
