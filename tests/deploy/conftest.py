"""The digits models every deploy test bundles, and their bundle."""

import shutil

import pytest
from helpers import run_kit


@pytest.fixture(scope="session")
def variants(digits, digits_tflite, tmp_path_factory):
    """The digits CNN as ONNX fp32, ONNX int8 and TFLite int8."""
    from kit.export.quantize import quantize

    folder = tmp_path_factory.mktemp("variants")
    shutil.copyfile(digits.onnx, folder / "digits.onnx")
    quantize(digits.onnx, folder / "digits.int8.onnx", calib=str(digits.calib))
    shutil.copyfile(digits_tflite["int8"].path, folder / "digits.int8.tflite")
    return folder


@pytest.fixture(scope="session")
def variant_models(variants) -> list[str]:
    return [str(variants / name) for name in ("digits.onnx", "digits.int8.onnx", "digits.int8.tflite")]


@pytest.fixture(scope="session")
def bundle(variant_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "digits.kitbundle"
    ran = run_kit("bundle", *variant_models, "-o", str(out), "--data", "random:8")
    assert ran.returncode == 0, ran.stderr
    assert "bundled" in ran.stdout and "kit doctor digits.kitbundle" in ran.stdout
    return out


