"""Runtime targets as benchmark variants (onnxruntime:PROVIDER, openvino:DEVICE) through the real
kit: one table, a target this machine lacks skipped with what it needs, and bad targets refused."""

import json

import pytest
from helpers import run_kit

pytest.importorskip("openvino", reason='needs OpenVINO: pip install "edge-inference-kit[openvino]"')


# The digits fixture's ONNX file is model.onnx.


def test_providers_and_devices_in_one_table(digits):
    ran = run_kit("bench", digits.onnx, "--runtime", "onnxruntime:XNNPACK,onnxruntime:CPU,openvino:CPU",
                  "--data", digits.test, "--max-time", "0.1", "--json")
    assert ran.returncode == 0, ran.stderr
    document = json.loads(ran.stdout)
    rows = {entry["name"]: entry["extra_info"]["kit"] for entry in document["benchmarks"]}
    assert list(rows) == ["model.onnx[onnxruntime:CPU]", "model.onnx[openvino:CPU]"]
    assert rows["model.onnx[onnxruntime:CPU]"]["runtime_info"]["providers"] == ["CPUExecutionProvider"]
    openvino = rows["model.onnx[openvino:CPU]"]
    assert openvino["runtime_info"]["device"] == "CPU" and openvino["runtime_info"]["precision"] == "f32"
    assert openvino["fidelity"][0]["sqnr_db"] > 80  # f32 against ONNX Runtime's f32
    assert openvino["accuracy"]["top1"] == rows["model.onnx[onnxruntime:CPU]"]["accuracy"]["top1"]
    # PyPI's onnxruntime has no XNNPACK provider: a skip that says what it needs, not a failure.
    assert [s["name"] for s in document["kit_skipped"]] == ["model.onnx[onnxruntime:XNNPACK]"]
    assert document["kit_skipped"][0]["reason"].startswith("XnnpackExecutionProvider is not in this ONNX Runtime "
                                                          "build (available: ")
    assert "--use_xnnpack" in document["kit_skipped"][0]["needs"]


def test_the_table_says_what_was_skipped(digits):
    ran = run_kit("bench", digits.onnx, "--runtime", "onnxruntime:CUDA,onnxruntime", "--max-time", "0.1")
    assert ran.returncode == 0, ran.stderr
    assert "model.onnx[onnxruntime] (baseline)" in ran.stdout
    assert ("skipped model.onnx[onnxruntime:CUDA]: CUDAExecutionProvider is not in this ONNX Runtime build "
            "(available: ") in ran.stdout
    assert "It needs pip install onnxruntime-gpu (with CUDA and cuDNN)." in ran.stdout


@pytest.mark.parametrize("runtimes, message", [
    ("onnxruntime:CUDA,openvino:NPU", "no variant can run here (model.onnx[onnxruntime:CUDA]: CUDAExecutionProvider "
                                      "is not in this ONNX Runtime build"),
    ("onnxruntime:FPGA", "expected an ONNX Runtime execution provider among CPU, XNNPACK, CUDA"),
    ("openvino:TPU", "expected an OpenVINO device among CPU, GPU, NPU, AUTO"),
    ("tflite:GPU", "runtime 'tflite' takes no target; found 'tflite:GPU'."),
])
def test_bad_targets_are_refused_before_measuring(digits, runtimes, message):
    ran = run_kit("bench", digits.onnx, "--runtime", runtimes, "--max-time", "0.1")
    assert ran.returncode == 2 and message in " ".join(ran.stderr.split()), ran.stderr


def test_other_commands_take_a_target_too(digits):
    ran = run_kit("run", digits.onnx, "--runtime", "openvino:CPU", "--random", "--json")
    assert ran.returncode == 0 and json.loads(ran.stdout)["runtime"]["device"] == "CPU"
    absent = run_kit("run", digits.onnx, "--runtime", "onnxruntime:CUDA", "--random")
    assert absent.returncode == 2 and "execution provider CUDAExecutionProvider is not in this ONNX Runtime build" \
        in " ".join(absent.stderr.split())
