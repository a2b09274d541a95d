"""Tasks through the real kit: export records the task and labels, run prints labelled results
in the image's pixels (letterbox undone), --json and --draw, the same boxes on ONNX Runtime and
TFLite, and label names for a classifier."""

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import files_in, run_kit

from kit.core import provenance

MODELS = Path(__file__).resolve().parents[1] / "models.py"
# A white 64x32 (w x h) image letterboxed into 32x32: scale 0.5, 8 rows of padding above.
# Anchor 0 (class 0, input box 12,10-20,14) lands on image pixels 24,4-40,12 with the input's
# mean brightness as score: (16 rows of 255 + 16 of the grey 114) / 255 / 32 = 0.7235.
BRIGHTNESS = (16 * 255 + 16 * 114) / 255 / 32
EXPECTED = [{"box": [8.0, 16.0, 24.0, 32.0], "score": 0.8, "label": "dog", "class_id": 1},
            {"box": [24.0, 4.0, 40.0, 12.0], "score": round(BRIGHTNESS, 4), "label": "cat", "class_id": 0}]


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    import cv2

    folder = tmp_path_factory.mktemp("detector")
    (folder / "labels.txt").write_text("cat\ndog\n")
    cv2.imwrite(str(folder / "white.png"), np.full((32, 64, 3), 255, np.uint8))
    exported = run_kit("export", f"{MODELS}:make_tiny_detector", "--input-shape", "1x3x32x32", "--task", "detect",
                       "--labels", str(folder / "labels.txt"), "--preprocess",
                       "size=32,resize=letterbox", "-o", str(folder / "det.onnx"))
    assert exported.returncode == 0, exported.stderr
    assert "task: detect, 2 labels (recorded with the model)" in exported.stdout
    return folder


def test_export_records_the_task_and_run_prints_boxes_in_the_image(detector):
    recorded = provenance.read(detector / "det.onnx")["task"]
    assert recorded["name"] == "detect" and recorded["labels"] == ["cat", "dog"]
    assert recorded["score_threshold"] == 0.25 and recorded["iou_threshold"] == 0.45
    ran = run_kit("run", str(detector / "det.onnx"), "--image", str(detector / "white.png"))
    assert ran.returncode == 0, ran.stderr
    assert f"detect {detector / 'white.png'} (boxes in the image's pixels):" in ran.stdout
    assert "  dog  0.800  [8.0, 16.0, 24.0, 32.0]" in ran.stdout
    assert f"  cat  {BRIGHTNESS:.3f}  [24.0, 4.0, 40.0, 12.0]" in ran.stdout
    assert "top-5 of the first row" not in ran.stdout


def test_json_results_and_the_same_boxes_on_tflite(detector):
    ran = run_kit("run", str(detector / "det.onnx"), "--image", str(detector / "white.png"), "--json")
    assert ran.returncode == 0, ran.stderr
    onnx_results = json.loads(ran.stdout)["results"]
    assert len(onnx_results) == len(EXPECTED)
    for got, want in zip(onnx_results, EXPECTED):
        assert got["box"] == pytest.approx(want["box"], abs=0.01) and got["label"] == want["label"]
        assert got["score"] == pytest.approx(want["score"], abs=1e-3)
    exported = run_kit("export", f"{MODELS}:make_tiny_detector", "--input-shape", "1x3x32x32", "--task", "detect",
                       "--labels", str(detector / "labels.txt"), "--preprocess", "size=32,resize=letterbox",
                       "-o", str(detector / "det.tflite"))
    assert exported.returncode == 0, exported.stderr
    tflite = json.loads(run_kit("run", str(detector / "det.tflite"), "--image", str(detector / "white.png"),
                                "--json").stdout)["results"]
    assert [(r["label"], r["box"]) for r in tflite] == [(r["label"], r["box"]) for r in onnx_results]
    assert [r["score"] for r in tflite] == pytest.approx([r["score"] for r in onnx_results], abs=1e-3)


def test_settings_given_to_run_override_the_recorded_ones(detector):
    ran = run_kit("run", str(detector / "det.onnx"), "--image", str(detector / "white.png"), "--json",
                  "--score-threshold", "0.75")
    assert [r["label"] for r in json.loads(ran.stdout)["results"]] == ["dog"]  # cat (0.72) is below 0.75


def test_draw_writes_the_image_with_its_boxes(detector, tmp_path):
    import cv2

    ran = run_kit("run", str(detector / "det.onnx"), "--image", str(detector / "white.png"), "--draw",
                  str(tmp_path / "out.png"))
    assert ran.returncode == 0, ran.stderr
    drawn = cv2.imread(str(tmp_path / "out.png"))
    assert drawn.shape == (32, 64, 3) and files_in(tmp_path) == ["out.png"]
    assert tuple(drawn[16, 16]) != (255, 255, 255)  # the dog box's top edge
    assert tuple(drawn[22, 60]) == (255, 255, 255)  # away from every box and label


@pytest.mark.parametrize("arguments, message", [
    (["--random", "--draw", "{o}/out.png"], r"--draw draws a task's results on the input image; it needs --image"),
    (["--image", "{d}/white.png", "--draw", "{o}/out.txt"], r"expected --draw to end in \.jpg"),
    (["--image", "{d}/white.png", "--draw", "{d}/white.png"], r"is the same file as the input"),
    (["--random", "--iou-threshold", "0.5", "--task", "classify"], r"--iou-threshold apply to detection"),
    (["--random", "--iou-threshold", "1.5"], r"expected a number from 0 to 1, found '1.5'"),
    (["--random", "--labels", "{d}/missing.txt"], r"labels file .*missing\.txt does not exist"),
])
def test_bad_task_options_are_one_line_errors(detector, tmp_path, arguments, message):
    import re

    before = files_in(detector)
    argv = [a.format(d=detector, o=tmp_path) for a in arguments]
    ran = run_kit("run", str(detector / "det.onnx"), *argv)
    assert ran.returncode == 2 and re.search(message, ran.stderr), ran.stderr
    assert "Traceback" not in ran.stderr and files_in(detector) == before and files_in(tmp_path) == []


def test_a_classifier_prints_label_names(digits, tmp_path):
    import cv2

    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"digit {i}\n" for i in range(10)))
    image = tmp_path / "seven.png"
    with np.load(digits.test) as held_out:
        seven = held_out["x"][held_out["y"] == 7][0, 0]
    cv2.imwrite(str(image), np.round(seven * 16).astype(np.uint8))
    ran = run_kit("run", str(digits.onnx), "--image", str(image), "--task", "classify", "--labels", str(labels),
                  "--preprocess", "size=8,color=gray,scale=0.0625", "--json")
    assert ran.returncode == 0, ran.stderr
    top = json.loads(ran.stdout)["results"]
    assert top[0]["label"] == "digit 7" and len(top) == 5
    assert sum(r["score"] for r in top) <= 1.0 + 1e-6 and top[0]["score"] > 0.5
