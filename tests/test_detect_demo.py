"""kit demo --task detect through the real kit: synthetic scenes, a detector trained here, its
ONNX and TFLite exports and INT8 variants scored on mAP in one bench table; and the INT8
detector held to an mAP budget by kit quantize's budget mode."""

import json

import pytest
from helpers import run_kit

from kit.core import provenance


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("detect-demo")
    ran = run_kit("demo", "--task", "detect", "-o", str(folder), "--json", timeout=1800)
    assert ran.returncode == 0, ran.stderr
    return folder, json.loads(ran.stdout)


def test_the_demo_detector_learns_and_every_export_keeps_its_boxes(demo):
    folder, data = demo
    results = {row["model"]: row for row in data["results"]}
    torch_row = results["kit.models:make_shape_detector[torch]"]
    assert torch_row["map50"] >= 0.7  # the floor for the demo detector (about 0.96 measured)
    onnx = results["shapes.onnx[onnxruntime]"]
    assert onnx["map"] == pytest.approx(torch_row["map"], abs=0.005)  # an fp32 export finds the same boxes
    if "shapes.fp32.tflite[tflite]" in results:
        assert results["shapes.fp32.tflite[tflite]"]["map"] == pytest.approx(onnx["map"], abs=0.005)
    for name in ("shapes.int8.onnx[onnxruntime]", "shapes.int8.tflite[tflite]"):
        if name in results:  # plain INT8 loses a little (about 3% of mAP@0.5:0.95 measured)
            assert 0.9 * onnx["map"] <= results[name]["map"] <= onnx["map"] + 0.01
    if "shapes.int8.tflite[tflite]" in results:  # both keep the head's Concat in float (0.722 when TFLite did not)
        assert results["shapes.int8.tflite[tflite]"]["map"] >= results["shapes.int8.onnx[onnxruntime]"]["map"] - 0.005
        recorded = provenance.read(folder / "shapes.int8.tflite")  # int8 in, the float Concat's output out
        assert [s["dtype"] for s in recorded["integer_io"]] == ["int8"] and recorded["outputs"][0]["dtype"] == "float32"
    assert results["shapes.nms.onnx[onnxruntime]"]["map"] == pytest.approx(onnx["map"], abs=1e-9)  # NMS in the graph
    recorded = provenance.read(folder / "shapes.int8.onnx")["task"]
    assert recorded["name"] == "detect" and recorded["labels"] == ["circle", "square", "triangle"]
    assert (folder / "labels.txt").read_text() == "circle\nsquare\ntriangle\n"


def test_int8_keeps_the_heads_join_of_boxes_and_scores_in_float(demo, tmp_path):
    """The head's output Concat joins boxes in pixels with scores in 0-1; one int8 scale would
    leave the scores 4 steps. kit quantize keeps it in float and says so; --quantize-mixed-joins
    quantizes it and loses mAP (0.734 against 0.722 measured)."""
    folder, _ = demo
    scored = {}
    for name, extra in (("kept", []), ("forced", ["--quantize-mixed-joins"])):
        ran = run_kit("quantize", str(folder / "shapes.onnx"), "-o", str(tmp_path / f"{name}.onnx"), "--calib",
                      str(folder / "calib"), *extra)
        assert ran.returncode == 0, ran.stderr
        assert ("kept in float: node_cat joins tensors of magnitude" in ran.stdout + ran.stderr) == (name == "kept")
        assert ("node_cat" in provenance.read(tmp_path / f"{name}.onnx")["excluded"]) == (
            name == "kept")
        scored[name] = json.loads(run_kit("eval", str(tmp_path / f"{name}.onnx"), "--data",
                                          str(folder / "heldout" / "instances.json"), "--json").stdout)["map"]
    assert scored["kept"] > scored["forced"]


def test_int8_under_an_map_budget_keeps_layers_in_float_until_it_holds(demo, tmp_path):
    """The issue's bar: INT8 within 99% of FP32 mAP@0.5:0.95. The budget mode tries the head
    convolutions first (their outputs are decoded through Exp, which SQNR does not weigh) and
    keeps layers in float until the ratio holds; the result scores what the budget reported."""
    folder, data = demo
    plain = next(row["map"] for row in data["results"] if row["model"] == "shapes.int8.onnx[onnxruntime]")
    ran = run_kit("quantize", str(folder / "shapes.onnx"), "-o", str(tmp_path / "budget.int8.onnx"), "--calib",
                  str(folder / "calib"), "--min-ratio", "0.99", "--eval",
                  str(folder / "heldout" / "instances.json"), "--json", timeout=1800)
    assert ran.returncode == 0, ran.stderr
    budget = json.loads(ran.stdout)["budget"]
    assert budget["metric"] == "map" and budget["passed"] and budget["map"] >= 0.99 * budget["baseline_map"]
    assert budget["map"] >= plain - 1e-9
    assert len(budget["steps"]) <= 4  # the heads first: two or three tries, not a walk down the SQNR ranking
    scored = json.loads(run_kit("eval", str(tmp_path / "budget.int8.onnx"), "--data",
                                str(folder / "heldout" / "instances.json"), "--json").stdout)
    assert scored["map"] == pytest.approx(budget["map"], abs=1e-6)


def test_the_demo_builds_an_int8_tensorrt_engine_where_tensorrt_is_installed(demo):
    """TensorRT-RTX builds without a GPU (ahead of time for SM86); the engine's manifest carries
    the detector's task, so run and eval on a GPU read its boxes as the ONNX model's."""
    pytest.importorskip("tensorrt_rtx")
    folder, data = demo
    manifest = data["engine"]["manifest"]
    assert (folder / "shapes.int8.engine").stat().st_size > 0 and manifest["precision"] == "int8"
    assert manifest["quantization"] == "explicit QDQ" and manifest["task"]["name"] == "detect"
    assert manifest["target"]["compute_capability"] == "SM86"
    recipe = provenance.read(folder / "shapes.trt.int8.onnx")["recipe"]["preset"]
    assert recipe["name"] == "tensorrt" and recipe["op_types"] == ["Conv", "ConvTranspose", "Gemm", "MatMul"]
