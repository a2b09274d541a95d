"""Tasks: classification's top classes, and detection decoding against hand-made outputs with
known boxes, NMS against a plain reference, and boxes mapped back through the letterbox."""

import numpy as np
import pytest

from kit import tasks
from kit.core.errors import InputError
from kit.data.preprocess import placement
from kit.tasks.classify import Classify
from kit.tasks.detect import Detect, detect_head


# ----- classification ---------------------------------------------------------------


def test_classify_turns_logits_into_probabilities_with_names():
    task = Classify(labels=["cat", "dog", "eel"], top_k=2)
    (results,) = task.results({"logits": np.array([[1.0, 3.0, 2.0]], np.float32)})
    expected = np.exp([1.0, 3.0, 2.0]) / np.exp([1.0, 3.0, 2.0]).sum()
    assert [r["label"] for r in results] == ["dog", "eel"]
    assert results[0]["score"] == pytest.approx(expected[1]) and results[1]["score"] == pytest.approx(expected[2])
    assert task.lines(results) == [f"dog  {expected[1]:.4f}", f"eel  {expected[2]:.4f}"]


def test_classify_keeps_probabilities_and_names_unlabelled_classes_by_number():
    (results,) = Classify(labels=["a"], top_k=3).results({"p": np.array([[0.1, 0.7, 0.2]], np.float32)})
    assert [(r["label"], round(r["score"], 6)) for r in results] == [("1", 0.7), ("2", 0.2), ("a", 0.1)]


def test_the_task_round_trips_through_provenance():
    task = Detect(labels=["a", "b"], score_threshold=0.4, max_detections=7)
    restored = tasks.from_dict(task.to_dict())
    assert restored == task and task.to_dict()["name"] == "detect"
    with pytest.raises(InputError, match=r"expected a task among classify, detect, found 'pose'"):
        tasks.get("pose")


# ----- detection decoding -----------------------------------------------------------


def ultralytics_output(objects, classes=3, anchors=20):
    """[1, 4 + classes, anchors]: each object (cx, cy, w, h, class, score) on one anchor."""
    out = np.zeros((1, 4 + classes, anchors), np.float32)
    for anchor, (cx, cy, w, h, cls, score) in enumerate(objects):
        out[0, :4, anchor] = cx, cy, w, h
        out[0, 4 + cls, anchor] = score
    return out


def test_ultralytics_boxes_scores_and_classes():
    objects = [(50, 40, 20, 10, 2, 0.9), (10, 10, 4, 4, 0, 0.6), (80, 80, 10, 10, 1, 0.1)]  # the last: below 0.25
    task = Detect(labels=["a", "b", "c"])
    (found,) = task.results({"output0": ultralytics_output(objects)})
    assert found == [{"box": [40.0, 35.0, 60.0, 45.0], "score": 0.9, "label": "c", "class_id": 2},
                     {"box": [8.0, 8.0, 12.0, 12.0], "score": 0.6, "label": "a", "class_id": 0}]
    transposed = ultralytics_output(objects).transpose(0, 2, 1)  # [N, anchors, 4 + classes]
    assert task.results({"output0": transposed}) == [found]


def test_duplicates_of_one_class_are_suppressed_and_other_classes_kept():
    objects = [(50, 50, 20, 20, 0, 0.9), (51, 50, 20, 20, 0, 0.8), (50, 50, 20, 20, 1, 0.7)]
    (found,) = Detect().results({"y": ultralytics_output(objects)})
    assert [(r["class_id"], r["score"]) for r in found] == [(0, 0.9), (1, 0.7)]


def reference_nms(boxes, scores, classes, iou_threshold):
    """Greedy per-class NMS, written plainly: the reference OpenCV's is checked against."""
    order, kept = np.argsort(-scores, kind="stable"), []
    for i in order:
        ok = True
        for j in kept:
            if classes[i] != classes[j]:
                continue
            x1, y1 = np.maximum(boxes[i, :2], boxes[j, :2])
            x2, y2 = np.minimum(boxes[i, 2:], boxes[j, 2:])
            inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
            area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
            if inter / (area(boxes[i]) + area(boxes[j]) - inter) > iou_threshold:
                ok = False
                break
        if ok:
            kept.append(i)
    return kept


@pytest.mark.parametrize("seed", range(5))
def test_nms_matches_the_reference(seed):
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 80, size=(60, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 30, size=(60, 2))], axis=1).astype(np.float32)
    class_scores = np.zeros((60, 3), np.float32)
    classes = rng.integers(0, 3, 60)
    class_scores[np.arange(60), classes] = rng.uniform(0.3, 1.0, 60)
    task = Detect(iou_threshold=0.5, max_detections=1000)
    got_boxes, got_scores, got_classes = task.suppress(boxes, class_scores)
    kept = reference_nms(boxes, class_scores.max(1), classes, 0.5)
    assert sorted(map(tuple, got_boxes.tolist())) == sorted(map(tuple, boxes[kept].tolist()))


def test_near_duplicates_of_one_object_do_not_crowd_out_the_others():
    """A dense head proposes many overlapping boxes per object. max_detections caps what is
    kept after suppression, not the candidates before it (OpenCV's top_k would)."""
    objects = [(50, 50, 20, 20, 0, 0.9 - i * 0.001) for i in range(150)] + [(10, 10, 8, 8, 1, 0.5)]
    (found,) = Detect(max_detections=100).results({"y": ultralytics_output(objects, anchors=151)})
    assert [(r["class_id"], r["score"]) for r in found] == [(0, 0.9), (1, 0.5)]


def test_boxes_map_back_through_the_letterbox():
    """A 200x100 image letterboxed into 64x64: scale 0.32, 16 pixels of padding above and below."""
    fitted = placement((100, 200), (64, 64), "letterbox")
    assert fitted == (0.32, 0.32, 0, 16)
    # an object at image pixels (50, 25)-(150, 75) sits at input pixels (16, 24)-(48, 40)
    (found,) = Detect().results({"y": ultralytics_output([(32, 32, 32, 16, 0, 0.9)])}, image_hw=(100, 200),
                                placement=fitted)
    assert found[0]["box"] == pytest.approx([50.0, 25.0, 150.0, 75.0], abs=1e-4)


def test_ssd_with_a_background_class_and_normalized_boxes():
    boxes = np.array([[[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.9, 0.9]]], np.float32)
    scores = np.array([[[0.9, 0.05, 0.05], [0.1, 0.1, 0.8]]], np.float32)  # anchor 0 is background
    task = Detect(head="auto", normalized=True, background=True)
    assert detect_head({"boxes": boxes, "scores": scores}) == "ssd"
    (found,) = task.results({"boxes": boxes, "scores": scores}, input_hw=(100, 200))
    assert found == [{"box": [100.0, 50.0, 180.0, 90.0], "score": 0.8, "label": "1", "class_id": 1}]


def test_already_decoded_detections_are_used_as_they_are():
    """EfficientNMS-style: a count per image, padded boxes beyond it."""
    outputs = {"num_dets": np.array([[1], [0]], np.int32),
               "det_boxes": np.array([[[1, 2, 3, 4], [0, 0, 0, 0]], [[5, 5, 6, 6], [0, 0, 0, 0]]], np.float32),
               "det_scores": np.array([[0.7, 0.0], [0.9, 0.0]], np.float32),
               "det_classes": np.array([[4, 0], [1, 0]], np.int32)}
    assert detect_head(outputs) == "decoded"
    first, second = Detect().results(outputs)
    assert first == [{"box": [1.0, 2.0, 3.0, 4.0], "score": 0.7, "label": "4", "class_id": 4}] and second == []


def test_an_unknown_layout_and_bad_settings_are_clear_errors():
    with pytest.raises(InputError, match=r"expected detection outputs in a known layout.*found a\[1, 5\]"):
        Detect().results({"a": np.zeros((1, 5), np.float32)})
    with pytest.raises(InputError, match=r"expected a score threshold from 0 to 1, found 1.5"):
        Detect(score_threshold=1.5)
    with pytest.raises(InputError, match=r"expected a detection head among auto, ultralytics, ssd, decoded"):
        Detect(head="yolo")


def test_drawing_puts_the_boxes_on_the_image():
    image = np.zeros((100, 200, 3), np.uint8)
    results = [{"box": [50.0, 25.0, 150.0, 75.0], "score": 0.9, "label": "a", "class_id": 0}]
    drawn = Detect().draw(image, results)
    assert drawn[25, 100].any() and drawn[75, 100].any() and drawn[50, 50].any()  # the edges
    assert not drawn[50, 100].any() and not image.any()  # inside stays, and the input is untouched


def test_labels_file(tmp_path):
    (tmp_path / "labels.txt").write_text("cat\ndog\n\n")
    assert tasks.read_labels(tmp_path / "labels.txt") == ["cat", "dog"]
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(InputError, match=r"labels file .*empty\.txt is empty"):
        tasks.read_labels(tmp_path / "empty.txt")
