"""NMS inside the ONNX graph (kit export --nms graph): the same boxes as the host's NMS, on
random raw heads and on a real export, through the real kit, and quantized with the NMS
nodes left in float."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import run_kit, write_sets
from kit.export.nms import NODE_PREFIX, OUTPUTS, append_nms, graph_nms_nodes
from kit.runtimes.ort import OnnxRuntime
from onnx import TensorProto, helper

from kit.core import provenance
from kit.core.errors import InputError
from kit.tasks.detect import Detect

MODELS = Path(__file__).resolve().parents[1] / "models.py"


def passthrough(shape, opset=17):
    """A graph whose output is its input: the raw head is whatever the test feeds."""
    graph = helper.make_graph([helper.make_node("Identity", ["raw"], ["head"], name="identity")], "head",
                              [helper.make_tensor_value_info("raw", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("head", TensorProto.FLOAT, shape)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def random_head(rng, batch, classes, anchors):
    """Clusters of overlapping boxes (so suppression has work) with sparse class scores."""
    centres = rng.uniform(10, 90, size=(batch, 2, anchors // 8)).repeat(8, axis=2)
    centres += rng.normal(0, 2, size=centres.shape)
    sizes = rng.uniform(8, 30, size=(batch, 2, anchors))
    scores = rng.uniform(0, 1, size=(batch, classes, anchors)) ** 3
    return np.concatenate([centres, sizes, scores], axis=1).astype(np.float32)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("opset", [13, 18])
def test_graph_nms_gives_the_host_nms_boxes(tmp_path, seed, opset):
    classes, anchors = 3, 96
    task = Detect(labels=["a", "b", "c"], max_detections=20)
    model = append_nms(passthrough(["batch", 4 + classes, anchors], opset), task, "ultralytics", classes)
    onnx.save(model, str(tmp_path / "nms.onnx"))
    raw = random_head(np.random.default_rng(seed), 3, classes, anchors)
    with OnnxRuntime(tmp_path / "nms.onnx") as runtime:
        graph = runtime.run({"raw": raw})
    assert list(graph) == list(OUTPUTS)
    host = task.detections({"head": raw})
    assert [len(found[0]) for found in host] == graph["num_detections"].tolist()
    for (hb, hs, hc), (gb, gs, gc) in zip(host, task.detections(graph)):
        np.testing.assert_allclose(gb, hb, atol=1e-5)
        np.testing.assert_allclose(gs, hs, atol=1e-6)
        assert gc.tolist() == hc.tolist()
    assert 0 < graph["num_detections"].min() and graph["num_detections"].max() <= 20
    padding = graph["detection_scores"][0, graph["num_detections"][0]:]
    assert (padding == -1).all()


def test_equal_class_scores_keep_the_first_class_as_the_host_does(tmp_path):
    """Two classes tied on one box: one detection, class 0 (numpy's argmax), not two."""
    task = Detect(labels=["a", "b"])
    onnx.save(append_nms(passthrough(["batch", 6, 4]), task, "ultralytics", 2), str(tmp_path / "nms.onnx"))
    raw = np.zeros((1, 6, 4), np.float32)
    raw[0, :, 0] = [20, 20, 10, 10, 0.7, 0.7]
    with OnnxRuntime(tmp_path / "nms.onnx") as runtime:
        graph = task.detections(runtime.run({"raw": raw}))
    ((boxes, scores, classes),) = graph
    assert classes.tolist() == [0] and scores.tolist() == pytest.approx([0.7])
    assert [c.tolist() for _, _, c in task.detections({"head": raw})] == [[0]]


def test_an_image_without_detections_gives_none(tmp_path):
    model = append_nms(passthrough(["batch", 5, 16]), Detect(), "ultralytics", 1)
    onnx.save(model, str(tmp_path / "nms.onnx"))
    with OnnxRuntime(tmp_path / "nms.onnx") as runtime:
        graph = runtime.run({"raw": np.zeros((2, 5, 16), np.float32)})
    assert graph["num_detections"].tolist() == [0, 0] and graph["detection_boxes"].shape == (2, 0, 4)


def test_ssd_heads_with_a_background_class(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["b"], ["boxes"], name="i1"), helper.make_node("Identity", ["s"], ["scores"],
                                                                                      name="i2")],
        "ssd", [helper.make_tensor_value_info("b", TensorProto.FLOAT, ["n", 40, 4]),
                helper.make_tensor_value_info("s", TensorProto.FLOAT, ["n", 40, 3])],
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["n", 40, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", 40, 3])])
    task = Detect(background=True)
    model = append_nms(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), task, "ssd")
    onnx.save(model, str(tmp_path / "ssd.onnx"))
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 60, size=(2, 40, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 20, size=(2, 40, 2))], axis=2).astype(np.float32)
    scores = rng.uniform(0, 1, size=(2, 40, 3)).astype(np.float32)
    with OnnxRuntime(tmp_path / "ssd.onnx") as runtime:
        graph_found = task.detections(runtime.run({"b": boxes, "s": scores}))
    for (hb, _, hc), (gb, _, gc) in zip(task.detections({"boxes": boxes, "scores": scores}), graph_found):
        np.testing.assert_allclose(gb, hb, atol=1e-5)
        assert gc.tolist() == hc.tolist()


def test_refusals(tmp_path):
    with pytest.raises(InputError, match="needs opset 13 or later; the model is opset 11"):
        append_nms(passthrough(["n", 5, 16], opset=11), Detect(), "ultralytics", 1)
    graph = passthrough(["n", 5, 16])
    graph.graph.output.append(helper.make_tensor_value_info("raw", TensorProto.FLOAT, ["n", 5, 16]))
    with pytest.raises(InputError, match="an Ultralytics head has one output .* the model has 2"):
        append_nms(graph, Detect(), "ultralytics", 1)
    with pytest.raises(InputError, match="takes an ultralytics or ssd head, found 'decoded'"):
        append_nms(passthrough(["n", 5, 16]), Detect(), "decoded", 1)
    twice = append_nms(passthrough(["n", 5, 16]), Detect(), "ultralytics", 1)
    assert graph_nms_nodes(twice) and all(name.startswith(NODE_PREFIX) for name in graph_nms_nodes(twice))
    with pytest.raises(InputError, match="already has the kit's NMS"):
        append_nms(twice, Detect(), "ultralytics", 1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The test detector exported twice: NMS on the host and in the graph."""
    folder = tmp_path_factory.mktemp("nms")
    write_sets(folder, dark=True)
    for name, nms in (("host", "host"), ("graph", "graph")):
        ran = run_kit("export", f"{MODELS}:make_tiny_detector", "--input-shape", "1x3x32x32", "--task", "detect",
                      "--labels", str(folder / "classes.txt"), "--preprocess", "size=32,resize=letterbox",
                      "--nms", nms, "-o", str(folder / f"{name}.onnx"))
        assert ran.returncode == 0, ran.stderr
    return folder, ran


def test_export_with_nms_in_the_graph_records_it_and_finds_the_same_boxes(exported):
    folder, ran = exported
    assert "NMS is in the graph (ONNX NonMaxSuppression after the ultralytics head)" in ran.stdout
    task = provenance.read(folder / "graph.onnx")["task"]
    assert task["nms"] == "graph" and task["head"] == "decoded"
    assert provenance.read(folder / "host.onnx")["task"]["nms"] == "host"
    image = next((folder / "images").iterdir())
    runs = {name: json.loads(run_kit("run", str(folder / f"{name}.onnx"), "--image", str(image), "--json").stdout)
            for name in ("host", "graph")}
    assert runs["graph"]["results"] == runs["host"]["results"] and runs["host"]["results"]
    scores = {name: json.loads(run_kit("eval", str(folder / f"{name}.onnx"), "--data",
                                       str(folder / "instances.json"), "--json").stdout)["map"]
              for name in ("host", "graph")}
    assert scores["graph"] == pytest.approx(scores["host"], abs=1e-9)


def test_quantizing_a_model_with_nms_in_its_graph_keeps_the_nms_in_float(exported, tmp_path):
    folder, _ = exported
    ran = run_kit("quantize", str(folder / "graph.onnx"), "-o", str(tmp_path / "graph.int8.onnx"), "--calib",
                  str(folder / "images"), "--json")
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert {name for name in result["excluded"] if name.startswith(NODE_PREFIX)} == set(
        graph_nms_nodes(onnx.load(str(folder / "graph.onnx"))))
    assert result["fidelity"] == [] and any("NMS is in the graph" in note for note in result["notes"])
    assert not any(node.op_type == "QuantizeLinear" and node.name.startswith(NODE_PREFIX)
                   for node in onnx.load(str(tmp_path / "graph.int8.onnx")).graph.node)
    found = json.loads(run_kit("eval", str(tmp_path / "graph.int8.onnx"), "--data", str(folder / "instances.json"),
                               "--baseline", str(folder / "graph.onnx"), "--json").stdout)
    assert found["map"] >= 0.9 * found["baseline"]["map"]


@pytest.mark.parametrize("extra, message", [
    (["-o", "{d}/x.onnx", "--nms", "graph"], "the export has no --task detect"),
    (["-o", "{d}/x.onnx", "--nms", "graph", "--task", "detect", "--head", "decoded"], "needs the raw head"),
    (["-o", "{d}/x.tflite", "--nms", "graph", "--task", "detect"], "TFLite and the Edge TPU run NMS on the host"),
    (["-o", "{d}/x.onnx", "--nms", "graph", "--task", "detect", "--opset", "12"], "needs opset 13 or later"),
])
def test_nms_graph_refusals_through_the_kit(tmp_path, extra, message):
    ran = run_kit("export", f"{MODELS}:make_tiny_detector", "--input-shape", "1x3x32x32",
                  *[part.format(d=tmp_path) for part in extra])
    assert ran.returncode == 2 and message in ran.stderr, ran.stderr
    assert list(tmp_path.iterdir()) == []


def test_tensorrt_builds_the_raw_detector_and_refuses_graph_nms(exported, tmp_path):
    """TensorRT-RTX has no implementation of ONNX's NonMaxSuppression: the kit says so before
    building, and the raw detector builds, its task in the engine's manifest (the int8 engine
    of the demo detector is built in tests/test_detect_demo.py)."""
    pytest.importorskip("tensorrt_rtx")
    folder, _ = exported
    refused = run_kit("build", str(folder / "graph.onnx"), "-o", str(tmp_path / "graph.engine"),
                      "--compute-capability", "SM86")
    assert refused.returncode == 2 and "TensorRT cannot build ONNX's NonMaxSuppression" in refused.stderr
    assert list(tmp_path.iterdir()) == []
    built = run_kit("build", str(folder / "host.onnx"), "-o", str(tmp_path / "det.engine"), "--compute-capability",
                    "SM86", "--json")
    assert built.returncode == 0, built.stderr
    result = json.loads(built.stdout)
    assert result["manifest"]["task"]["name"] == "detect" and result["manifest"]["task"]["nms"] == "host"
    assert any(note.startswith("the engine gives the raw detection head; NMS runs on the host (tensorrt_rtx")
               and "has no EfficientNMS_TRT plugin" in note for note in result["notes"])


def test_a_bundle_gives_graph_nms_no_tensorrt_recipe(exported, tmp_path):
    """The device would build the recipe with kit doctor --build, which TensorRT refuses for a
    graph-NMS model: the bundle records none for it, and one for the raw detector."""
    folder, _ = exported
    out = tmp_path / "det.kitbundle"
    ran = run_kit("bundle", folder / "graph.onnx", folder / "host.onnx", "-o", out, "--data", "random:2")
    assert ran.returncode == 0, ran.stderr
    recipes = {m["name"]: m["tensorrt"] for m in json.loads((out / "manifest.json").read_text())["models"]}
    assert recipes == {"graph.onnx": None, "host.onnx": {"precision": "fp32", "source": "models/host.onnx"}}
