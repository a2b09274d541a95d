"""The harness runs models over data: fixed batches, streaming, bounds, golden files written as they come."""

import json
import tracemalloc

import numpy as np
import pytest

import kit
from kit.check.harness import compare_models, evaluate
from kit.core.errors import InputError
from kit.data.golden import load_golden


@pytest.fixture(scope="module")
def static4(digits, tmp_path_factory):
    """The digits CNN exported with its batch axis fixed at 4."""
    from kit.export import export_onnx

    path = tmp_path_factory.mktemp("static4") / "static4.onnx"
    export_onnx(digits.module, path, input_shapes="4x1x8x8", static=True)
    return path


def test_a_static_batch_above_one_is_evaluated_compared_and_checked_by_golden(digits, static4, tmp_path):
    """Data was forced to batch 1, which a model fixed at batch 4 refuses; 450 samples also
    leave a last batch of 2, padded to 4 and its padded outputs dropped."""
    with kit.load(static4) as rt:
        assert rt.inputs[0].shape == (4, 1, 8, 8)
    dynamic, dynamic_correct = evaluate(digits.onnx, str(digits.test))
    static, static_correct = evaluate(static4, str(digits.test), batch_size=64)
    assert static.count == dynamic.count == 450 and static.top1 == dynamic.top1
    np.testing.assert_array_equal(static_correct, dynamic_correct)
    compared = compare_models(str(digits.onnx), str(static4), data=str(digits.test), batch_size=7,
                              save_golden_to=str(tmp_path / "g.npz"))
    assert compared.samples == 450 and compared.passed and compared.outputs[0].top1 == 1.0
    assert compared.outputs[0].shape == (450, 10)
    checked = compare_models(None, str(static4), golden=str(tmp_path / "g.npz"))
    assert checked.samples == 450 and checked.passed


def test_a_static_batch_above_one_is_calibrated(digits, static4, tmp_path):
    from kit.export.quantize import quantize

    result = quantize(static4, tmp_path / "int8.onnx", calib=str(digits.calib), calib_limit=298)
    assert 296 <= result.calibration["count"] <= 300  # 298 samples: a last batch of 2 padded to 4, or left out
    float_top1 = evaluate(static4, str(digits.test))[0].top1
    assert evaluate(result.path, str(digits.test))[0].top1 >= 0.99 * float_top1


def test_compare_streams_the_data_and_writes_the_golden_file_as_it_goes(conv_onnx, tmp_path):
    """compare_models gathered every input in memory before running the first model."""
    x = np.random.default_rng(0).standard_normal((6000, 3, 8, 8)).astype(np.float32)  # 4.6 MB
    np.save(tmp_path / "x.npy", x)
    tracemalloc.start()
    result = compare_models(str(conv_onnx), str(conv_onnx), data=str(tmp_path / "x.npy"), batch_size=50,
                            save_golden_to=str(tmp_path / "g.npz"))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert result.samples == 6000 and result.passed and result.outputs[0].max_abs == 0.0
    assert peak < x.nbytes / 4, peak  # batches, and the errors the median needs (6000 x 5 x 8 bytes)
    golden = load_golden(tmp_path / "g.npz")
    np.testing.assert_array_equal(golden.inputs["input"], x)
    with kit.load(conv_onnx) as rt:
        np.testing.assert_array_equal(golden.outputs["output"][:100], rt.run({"input": x[:100]})["output"])
    assert golden.meta["model"] == str(conv_onnx) and golden.meta["data"] == str(tmp_path / "x.npy")
    golden.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.npz", "x.npy"]  # no spool file left


def test_a_comparison_too_big_for_memory_is_refused_naming_the_sizes(tiny_onnx, monkeypatch):
    import kit.check.harness

    monkeypatch.setattr(kit.check.harness, "available_memory", lambda: 100_000)
    with pytest.raises(InputError, match=r"comparing 1,000,000 samples of random:1000000 would keep 38.1 MB of "
                                         r"output errors in memory; 97.7 KB is available here"):
        compare_models(str(tiny_onnx), str(tiny_onnx), data="random:1000000", batch_size=10)


def test_nan_outputs_give_well_defined_numbers_and_say_why(tiny_onnx, tmp_path):
    """The CLI crashed formatting a None cosine."""
    x = np.ones((4, 3), np.float32)
    x[1, 2] = np.nan
    np.save(tmp_path / "x.npy", x)
    result = compare_models(str(tiny_onnx), str(tiny_onnx), data=str(tmp_path / "x.npy"))
    y = next(d for d in result.outputs if d.name == "y")
    assert not y.passed and np.isnan(y.cosine) and np.isnan(y.max_abs)
    assert y.failure == ("2 of 8 elements differ by more than atol 0.0001 + rtol 0.001 x |reference|; "
                         "NaN or Inf among the elements: 2 in the reference, 2 in the candidate")
    text = json.dumps(result.to_dict(), allow_nan=False)  # valid JSON: no NaN
    assert json.loads(text)["outputs"][0]["cosine"] is None


def test_preprocess_text_reaches_images_through_the_harness(tmp_path):
    """--preprocess for a model that records none, through evaluate and compare_models."""
    import cv2
    from helpers import factory
    from kit.export import export_onnx

    from kit.data.preprocess import Preprocess

    plain = export_onnx(factory("make_conv"), tmp_path / "plain.onnx", input_shapes="1x3x8x8").path
    for label, value in (("0", 30), ("1", 220)):
        (tmp_path / "images" / label).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "images" / label / "a.png"), np.full((8, 8, 3), value, np.uint8))
    text = "mean=0.5/0.5/0.5,std=0.25/0.25/0.25"
    steps = Preprocess.for_input(kit.load(plain).inputs[0], text)
    x = np.concatenate([steps.load_image(tmp_path / "images" / label / "a.png") for label in ("0", "1")])
    np.savez(tmp_path / "arrays.npz", x=x, y=np.array([0, 1]))
    assert evaluate(plain, str(tmp_path / "images"), preprocess=text)[1].tolist() == \
        evaluate(plain, str(tmp_path / "arrays.npz"))[1].tolist()
    compare_models(str(plain), str(plain), data=str(tmp_path / "images"), preprocess=text,
                   save_golden_to=str(tmp_path / "g.npz"))
    np.testing.assert_array_equal(load_golden(tmp_path / "g.npz").inputs["input"], x)
