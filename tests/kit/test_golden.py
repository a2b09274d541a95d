"""Golden files round-trip, and compare/golden agree with a direct comparison."""

import numpy as np
import pytest

from kit.check.harness import compare_models
from kit.core.errors import InputError
from kit.data.golden import Golden, load_golden, save_golden


def test_round_trip_is_exact(tmp_path):
    golden = Golden({"x": np.arange(6, dtype=np.float32).reshape(2, 3)}, {"y": np.array([[1.5], [-2.0]])},
                    {"model": "m.onnx"})
    save_golden(tmp_path / "g.npz", golden)
    loaded = load_golden(tmp_path / "g.npz")
    np.testing.assert_array_equal(loaded.inputs["x"], golden.inputs["x"])
    np.testing.assert_array_equal(loaded.outputs["y"], golden.outputs["y"])
    assert loaded.meta["model"] == "m.onnx" and "kit_version" in loaded.meta


def test_not_a_golden_file(tmp_path):
    np.savez(tmp_path / "plain.npz", a=np.zeros(2))
    with pytest.raises(InputError, match="is not a golden file"):
        load_golden(tmp_path / "plain.npz")
    with pytest.raises(InputError, match="ending in .npz"):
        save_golden(tmp_path / "g.txt", Golden({}, {}, {}))


def test_golden_from_one_machine_checks_another(digits, tmp_path):
    from kit.export.quantize import quantize

    int8 = quantize(digits.onnx, tmp_path / "int8.onnx", calib=str(digits.calib)).path
    direct = compare_models(str(digits.onnx), str(int8), data=str(digits.test), save_golden_to=str(tmp_path / "g.npz"),
                            atol=0.5, rtol=0.0)
    through_file = compare_models(None, str(int8), golden=str(tmp_path / "g.npz"), atol=0.5, rtol=0.0)
    assert direct.samples == through_file.samples == 450
    assert direct.outputs[0].to_dict() == through_file.outputs[0].to_dict()
    assert direct.outputs[0].top1 >= 0.97 and direct.outputs[0].sqnr_db > 20


def test_golden_never_overwrites_the_data_or_a_model(digits, tmp_path):
    data = tmp_path / "data.npz"
    data.write_bytes(digits.test.read_bytes())
    with pytest.raises(InputError, match="is the same file as the input"):
        compare_models(str(digits.onnx), str(digits.onnx), data=str(data), save_golden_to=str(data))
    assert data.read_bytes() == digits.test.read_bytes()


def test_golden_is_written_only_after_the_candidate_ran(digits, tmp_path):
    from kit.core.errors import ModelFileError

    with pytest.raises(ModelFileError):
        compare_models(str(digits.onnx), str(tmp_path / "absent.onnx"), save_golden_to=str(tmp_path / "g.npz"))
    assert not (tmp_path / "g.npz").exists()
