"""PyTorch -> OpenVINO IR through the real kit and the real OpenVINO: fp32 against ONNX Runtime
within 1e-4, fp16 weights, int8 through the kit's QDQ quantization, provenance in the IR, and
bad input (nothing left behind)."""

import json

import numpy as np
import pytest
from helpers import MODELS_FILE, files_in, run_kit

import kit
from kit.core import provenance
from kit.core.errors import InputError

pytest.importorskip("openvino", reason='needs OpenVINO: pip install "edge-inference-kit[openvino]"')

DIGITS_PREPROCESS = "color=gray,scale=0.00392156862745098"


def outputs(path, x, runtime=None):
    with kit.load(path, runtime=runtime) as model:
        return model.run({model.inputs[0].name: x})[model.outputs[0].name]


@pytest.fixture(scope="module")
def digits_ir(digits, tmp_path_factory):
    """The digits CNN as IR in each precision, through the Python API (the CLI is tested below)."""
    from kit.export.openvino import export_openvino

    folder = tmp_path_factory.mktemp("openvino")
    options = dict(input_shapes="1x1x8x8", preprocess=DIGITS_PREPROCESS,
                   task={"name": "classify", "labels": list("0123456789")})
    return {precision: export_openvino(digits.module, folder / f"digits.{precision}.xml", precision=precision,
                                       calib=str(digits.calib) if precision == "int8" else None, **options)
            for precision in ("fp32", "fp16", "int8")}


def test_fp32_ir_matches_onnx_runtime_and_carries_its_provenance(digits, digits_ir):
    result = digits_ir["fp32"]
    x = np.load(digits.test)["x"][:64]
    np.testing.assert_allclose(outputs(result.path, x), outputs(digits.onnx, x, "onnxruntime"), atol=1e-4, rtol=1e-4)
    assert sorted(p.name for p in result.path.parent.glob("digits.fp32.*")) == ["digits.fp32.bin", "digits.fp32.xml"]
    assert result.size_bytes == result.path.stat().st_size + result.path.with_suffix(".bin").stat().st_size
    recorded = provenance.read(result.path)
    assert (recorded["format"], recorded["precision"], recorded["task"]["labels"][3]) == ("openvino", "fp32", "3")
    assert recorded["preprocess"]["color"] == "gray" and recorded["validation"]["against"] == "onnx"
    with kit.load(result.path) as model:  # the recorded axis name, which OpenVINO itself drops
        assert model.inputs[0].shape == ("batch", 1, 8, 8)


def test_fp16_ir_halves_the_weights(digits, digits_ir):
    fp32, fp16 = (digits_ir[p].path.with_suffix(".bin").stat().st_size for p in ("fp32", "fp16"))
    assert fp16 == pytest.approx(fp32 / 2, rel=0.1)
    x = np.load(digits.test)["x"][:64]
    np.testing.assert_allclose(outputs(digits_ir["fp16"].path, x), outputs(digits.onnx, x, "onnxruntime"),
                               atol=1e-2, rtol=1e-2)


def test_int8_ir_runs_in_int8_and_keeps_accuracy(digits, digits_ir):
    import openvino

    path = digits_ir["int8"].path
    ops = {op.get_type_name() for op in openvino.Core().read_model(str(path)).get_ordered_ops()}
    assert "FakeQuantize" in ops  # the QDQ pairs, which OpenVINO's CPU plugin runs in int8
    data = np.load(digits.test)
    x, y = data["x"], data["y"]
    int8, fp32 = outputs(path, x).argmax(1), outputs(digits.onnx, x, "onnxruntime").argmax(1)
    assert (int8 == y).mean() >= (fp32 == y).mean() - 0.03
    assert digits_ir["int8"].validation[0].top1 >= 0.97  # against its QDQ ONNX on ONNX Runtime


def test_the_cli_exports_ir(tmp_path):
    ran = run_kit("export", f"{MODELS_FILE}:make_conv", "--input-shape", "1x3x8x8", "-o", tmp_path / "conv.xml",
                  cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith(f"exported {tmp_path / 'conv.xml'} and conv.bin (")
    assert "OpenVINO IR fp32" in ran.stdout and "validated against its ONNX model on ONNX Runtime" in ran.stdout
    assert files_in(tmp_path) == ["conv.bin", "conv.xml"]
    as_json = run_kit("export", f"{MODELS_FILE}:make_conv", "--input-shape", "1x3x8x8", "--format", "openvino",
                      "--precision", "fp16", "-o", tmp_path / "half.xml", "--json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["precision"] == "fp16"
    ran = run_kit("run", tmp_path / "conv.xml", "--random", "--json")
    assert ran.returncode == 0 and json.loads(ran.stdout)["runtime"]["runtime"] == "openvino"


@pytest.mark.parametrize("extra, message", [
    (["-o", "{tmp}/conv.xml", "--precision", "int8"], "int8 needs calibration data; found no --calib."),
    (["-o", "{tmp}/conv.xml", "--precision", "int8-dynamic"], "expected --precision among fp32, fp16, int8 for "
                                                               "OpenVINO, found 'int8-dynamic'"),
    (["-o", "{tmp}/conv.xml", "--layout", "nhwc"], "--layout and --eval apply to --format tflite"),
    (["-o", "{tmp}/conv.xml", "--calib", "random:8"], "--calib calibrates --precision int8; found no int8."),
    (["-o", "{tmp}/conv.onnx", "--format", "openvino"], "expected an output path ending in .xml"),
])
def test_bad_input_is_refused_and_leaves_nothing(tmp_path, extra, message):
    ran = run_kit("export", f"{MODELS_FILE}:make_conv", "--input-shape", "1x3x8x8",
                  *[part.format(tmp=tmp_path) for part in extra])
    assert ran.returncode == 2 and message in " ".join(ran.stderr.split()), ran.stderr
    assert files_in(tmp_path) == []


def test_the_weights_file_never_overwrites_an_input(tmp_path):
    """model.xml writes model.bin: a --weights file of that name is refused, and kept."""
    weights = tmp_path / "conv.bin"
    weights.write_bytes(b"not overwritten")
    ran = run_kit("export", f"{MODELS_FILE}:make_conv", "--input-shape", "1x3x8x8", "--weights", weights,
                  "-o", tmp_path / "conv.xml")
    assert ran.returncode == 2 and "is the same file as the input" in ran.stderr, ran.stderr
    assert weights.read_bytes() == b"not overwritten" and files_in(tmp_path) == ["conv.bin"]


def test_the_python_api_refuses_a_wrong_suffix(tmp_path):
    from kit.export.openvino import export_openvino

    with pytest.raises(InputError, match=r"expected an output path ending in .xml \(OpenVINO IR"):
        export_openvino("m.pt2", tmp_path / "m.bin")


def test_an_upper_case_suffix_is_refused_before_the_work(tmp_path):
    """OpenVINO's save_model writes only a lower-case .xml: refused at once, not after the export."""
    ran = run_kit("export", f"{MODELS_FILE}:make_conv", "--input-shape", "1x3x8x8", "-o", tmp_path / "CONV.XML",
                  "--format", "openvino")
    assert ran.returncode == 2 and "expected an output path ending in .xml" in ran.stderr, ran.stderr
    assert files_in(tmp_path) == []


def test_a_truncated_ir_names_openvinos_reason(digits_ir, tmp_path):
    import shutil

    broken = tmp_path / "broken.xml"
    shutil.copyfile(digits_ir["fp32"].path, broken)
    data = digits_ir["fp32"].path.with_suffix(".bin").read_bytes()
    (tmp_path / "broken.bin").write_bytes(data[: len(data) // 2])
    ran = run_kit("run", broken, "--random")
    assert ran.returncode == 2 and ran.stderr.startswith(f"error: OpenVINO could not load {broken} on CPU: ")
    assert "core.cpp" not in ran.stderr.splitlines()[0].split(": ", 2)[-1][:20]  # the cause, not a source file


def test_the_cli_exports_int8_ir(tmp_path):
    """--precision int8 --calib through the real kit: quantized, judged by agreement with its QDQ
    model on ONNX Runtime, and run in int8 by OpenVINO."""
    ran = run_kit("export", f"{MODELS_FILE}:make_conv", "--input-shape", "1x3x8x8", "--precision", "int8",
                  "--calib", "random:64", "-o", tmp_path / "conv.xml", "--json")
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert result["precision"] == "int8" and result["validation"]["outputs"][0]["passed"] is True
    assert result["validation"]["outputs"][0]["top1"] >= 0.97 or result["validation"]["outputs"][0]["sqnr_db"] >= 25
    assert files_in(tmp_path) == ["conv.bin", "conv.xml"]
