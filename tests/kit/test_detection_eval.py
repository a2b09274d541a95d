"""Detection data (COCO JSON, YOLO folders) and mAP in the COCO protocol, on predictions whose
mAP is known by hand, and kit eval of a detector through the real kit."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import files_in, run_kit, write_sets

from kit.core.errors import InputError
from kit.tasks.coco import mean_ap, open_detection_data

MODELS = Path(__file__).resolve().parents[1] / "models.py"


def truth(boxes):
    """A COCO ground truth of one 100x100 image per box list; boxes as (x, y, w, h, category)."""
    images = [{"id": i, "width": 100, "height": 100} for i in range(len(boxes))]
    annotations = [{"id": n, "image_id": i, "category_id": c, "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0}
                   for n, (i, (x, y, w, h, c)) in enumerate(((i, b) for i, bs in enumerate(boxes) for b in bs), 1)]
    return {"images": images, "annotations": annotations, "categories": [{"id": 0, "name": "a"}]}


def test_perfect_predictions_score_one_and_none_score_zero():
    gt = truth([[(10, 10, 20, 20, 0)], [(50, 50, 10, 30, 0)]])
    perfect = [{"image_id": i, "category_id": 0, "bbox": a["bbox"], "score": 0.9}
               for i, a in enumerate(gt["annotations"])]
    assert mean_ap(gt, perfect) == (pytest.approx(1.0), pytest.approx(1.0))
    assert mean_ap(gt, []) == (0.0, 0.0)


def test_a_box_at_iou_0_62_counts_at_three_of_ten_thresholds():
    """IoU 0.62 passes the thresholds 0.5, 0.55 and 0.6 of the ten: mAP@0.5:0.95 = 0.3, mAP@0.5 = 1."""
    gt = truth([[(0, 0, 100, 50, 0)]])
    height = 50 * 0.62  # the same box, shorter: IoU = height / 50
    shifted = [{"image_id": 0, "category_id": 0, "bbox": [0, 0, 100, height], "score": 0.9}]
    found, found50 = mean_ap(gt, shifted)
    assert found == pytest.approx(0.3) and found50 == pytest.approx(1.0)


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    folder = tmp_path_factory.mktemp("det")
    write_sets(folder, dark=True)
    exported = run_kit("export", f"{MODELS}:make_tiny_detector", "--input-shape", "1x3x32x32", "--task", "detect",
                       "--labels", str(folder / "classes.txt"), "--preprocess", "size=32,resize=letterbox",
                       "-o", str(folder / "det.onnx"))
    assert exported.returncode == 0, exported.stderr
    return folder


def test_coco_and_yolo_give_the_same_ground_truth(detector):
    coco, yolo = open_detection_data(detector / "instances.json"), open_detection_data(detector)
    assert coco.names == yolo.names == ["cat", "dog"]
    image = coco.images[0]
    boxes = lambda found: sorted(tuple(round(v, 4) for v in a["bbox"]) for a in found)  # noqa: E731
    assert boxes(coco.annotations(image, 32, 64)) == boxes(yolo.annotations(yolo.images[1], 32, 64))


def test_eval_of_a_detector_with_the_coco_protocol(detector, tmp_path):
    """On the white image both objects are found; on the dark one the cat's score (0.22) is under
    0.25: cat AP = 51/101 (recall 0.5 at precision 1, 101-point interpolation), dog AP = 1."""
    expected = (1 + 51 / 101) / 2
    ran = run_kit("eval", str(detector / "det.onnx"), "--data", str(detector / "instances.json"), "--json",
                  "--save-predictions", str(tmp_path / "preds.json"))
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    assert report["map"] == pytest.approx(expected, abs=1e-4) and report["map50"] == pytest.approx(expected, abs=1e-4)
    assert report["images"] == 2 and report["map_ci"][0] <= report["map"] <= report["map_ci"][1]
    predictions = json.loads((tmp_path / "preds.json").read_text())
    assert {(p["image_id"], p["category_id"]) for p in predictions} == {(0, 1), (0, 2), (1, 2)}
    # The same numbers from the YOLO folder, and a re-score of the saved predictions by the library.
    yolo = json.loads(run_kit("eval", str(detector / "det.onnx"), "--data", str(detector), "--json").stdout)
    assert yolo["map"] == pytest.approx(expected, abs=1e-4)
    gt = json.loads((detector / "instances.json").read_text())
    assert mean_ap(gt, predictions)[0] == pytest.approx(expected, abs=1e-4)


def test_against_a_baseline_with_a_budget(detector):
    ran = run_kit("eval", str(detector / "det.onnx"), "--data", str(detector / "instances.json"),
                  "--baseline", str(detector / "det.onnx"), "--max-drop", "0.01")
    assert ran.returncode == 0, ran.stderr
    assert re.search(r"baseline .*det\.onnx: mAP@0\.5:0\.95 0\.7525; delta \+0\.0000 \(95% CI \+0\.0000 - \+0\.0000\), "
                     r"ratio 1\.0000", ran.stdout)
    assert "pass budget drop <= 0.01 (mAP@0.5:0.95)" in ran.stdout
    lowered = run_kit("eval", str(detector / "det.onnx"), "--data", str(detector / "instances.json"),
                      "--baseline", str(detector / "det.onnx"), "--min-ratio", "1", "--score-threshold", "0.5")
    # the candidate's threshold hides nothing more here (0.72 and 0.8 pass 0.5; 0.22 did not pass 0.25)
    assert lowered.returncode == 0, lowered.stderr


@pytest.mark.parametrize("data, message", [
    ("{d}/missing.json", r"expected detection data: a COCO JSON file or a YOLO folder .*which does not exist"),
    ("{d}/classes.txt", r"expected detection data"),
])
def test_bad_detection_data_is_one_line(detector, data, message):
    before = files_in(detector)
    ran = run_kit("eval", str(detector / "det.onnx"), "--data", data.format(d=detector))
    assert ran.returncode == 2 and re.search(message, ran.stderr), ran.stderr
    assert "Traceback" not in ran.stderr and files_in(detector) == before


def test_a_coco_file_that_names_a_missing_image(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "gone.png"}], "annotations": [],
                                                 "categories": [{"id": 1, "name": "a"}]}))
    with pytest.raises(InputError, match=r"lists gone\.png, which is neither beside it nor in images/"):
        open_detection_data(tmp_path / "x.json")


def test_quantizing_a_detector_to_an_map_budget(detector, tmp_path):
    """The budget of a model whose recorded task is detect is judged on mAP@0.5:0.95, not top-1."""
    ran = run_kit("quantize", str(detector / "det.onnx"), "-o", str(tmp_path / "det.int8.onnx"),
                  "--calib", str(detector / "images"), "--max-drop", "0.05", "--eval",
                  str(detector / "instances.json"), "--json")
    assert ran.returncode == 0, ran.stderr
    budget = json.loads(ran.stdout)["budget"]
    assert budget["metric"] == "map" and budget["passed"] and budget["rule"] == "drop <= 0.05"
    assert budget["baseline_map"] == pytest.approx((1 + 51 / 101) / 2, abs=1e-4)
    assert budget["baseline_map"] - budget["map"] <= 0.05
    assert [step["map"] for step in budget["steps"]][-1] == budget["map"]
    from kit.core import provenance

    assert provenance.read(tmp_path / "det.int8.onnx")["task"]["name"] == "detect"  # carried to the int8 model


def test_bench_scores_detectors_on_map(detector, tmp_path):
    """Every variant of a detector (the PyTorch factory too, which records no task) is scored on
    mAP@0.5:0.95 with its paired difference from the baseline, in the table and the JSON."""
    ran = run_kit("bench", f"{MODELS}:make_tiny_detector", str(detector / "det.onnx"), "--input-shape", "1x3x32x32",
                  "--data", str(detector / "instances.json"), "--preprocess", "size=32,resize=letterbox",
                  "--max-time", "0.05", "--save-json", str(tmp_path / "bench.json"))
    assert ran.returncode == 0, ran.stderr
    expected = (1 + 51 / 101) / 2
    rows = {b["extra_info"]["kit"]["name"]: b["extra_info"]["kit"]
            for b in json.loads((tmp_path / "bench.json").read_text())["benchmarks"]}
    assert len(rows) == 2
    for row in rows.values():
        assert row["detection"]["map"] == pytest.approx(expected, abs=1e-4)
    (candidate,) = [row for row in rows.values() if not row["baseline"]]
    assert candidate["detection"]["delta"] == pytest.approx(0.0, abs=1e-6)
    assert "mAP (vs base)" in ran.stdout and f"{expected:.3f} (+0.000)" in ran.stdout
