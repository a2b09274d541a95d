"""Object detection: the head layouts users bring, decoded to boxes in the original image's
pixels, with non-maximum suppression on the host where the model has none in its graph.

Heads (``head``; ``auto`` tells them apart by their outputs' shapes):
- ``ultralytics``: one output [N, 4 + classes, anchors] (or [N, anchors, 4 + classes]) of
  centre x, centre y, width, height in input pixels and per-class scores, no objectness;
- ``ssd``: boxes [N, anchors, 4] already decoded from the anchors (x1, y1, x2, y2; 0-1 when
  ``normalized``) and per-class scores [N, anchors, classes], class 0 the background when
  ``background``;
- ``decoded``: boxes [N, K, 4], scores [N, K] and classes [N, K] after NMS (torchvision, or
  TensorRT's EfficientNMS with its num_detections), used as they are.
NMS is OpenCV's per-class ``cv2.dnn.NMSBoxesBatched``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kit.core.errors import InputError
from kit.tasks.base import Task

HEADS = ("auto", "ultralytics", "ssd", "decoded")
NMS_PLACES = ("host", "graph")  # graph: ONNX NonMaxSuppression appended at export (kit.export.nms)


@dataclass
class Detect(Task):
    name = "detect"
    head: str = "auto"
    score_threshold: float = 0.25
    iou_threshold: float = 0.45
    max_detections: int = 100
    normalized: bool = False  # ssd/decoded boxes in 0-1 of the input rather than pixels
    background: bool = False  # ssd: class 0 of the scores is the background
    nms: str = "host"  # where suppression runs, as recorded; "graph" models give decoded outputs

    def __post_init__(self):
        if self.head not in HEADS:
            raise InputError(f"expected a detection head among {', '.join(HEADS)}, found {self.head!r}.",
                             hint="auto tells them apart by the outputs' shapes.")
        if self.nms not in NMS_PLACES:
            raise InputError(f"expected NMS among {', '.join(NMS_PLACES)}, found {self.nms!r}.",
                             hint="host (OpenCV after the model) or graph (ONNX NonMaxSuppression in it).")
        for key, value in (("score threshold", self.score_threshold), ("IoU threshold", self.iou_threshold)):
            if not 0 <= value <= 1:
                raise InputError(f"expected a {key} from 0 to 1, found {value}.", hint="E.g. 0.25 and 0.45.")
        if not isinstance(self.max_detections, int) or self.max_detections < 1:
            raise InputError(f"expected max detections >= 1, found {self.max_detections}.", hint="E.g. 100.")

    # ----- decoding ---------------------------------------------------------------

    def detections(self, outputs: dict[str, np.ndarray], input_hw: tuple[int, int] | None = None
                   ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per sample: boxes (K, 4) x1, y1, x2, y2 in input pixels, scores (K,), class ids (K,)."""
        head = self.head if self.head != "auto" else detect_head(outputs)
        if self.normalized and input_hw is None:
            raise InputError("normalized boxes need the model input's size to become pixels.",
                             hint="Pass input_hw=(height, width).")
        if head == "decoded":
            return _decoded(outputs, input_hw if self.normalized else None)
        if head == "ultralytics":
            candidates = _ultralytics(outputs, len(self.labels) or None)
        else:
            candidates = _ssd(outputs, input_hw if self.normalized else None, self.background)
        return [self.suppress(*sample) for sample in candidates]

    def suppress(self, boxes: np.ndarray, class_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The best class of each candidate, above the score threshold, after per-class NMS."""
        import cv2

        class_ids = class_scores.argmax(axis=1)
        scores = class_scores[np.arange(len(class_scores)), class_ids]
        keep = scores >= self.score_threshold
        boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
        if not len(boxes):
            return boxes.reshape(0, 4), scores, class_ids
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
        # No top_k: OpenCV applies it to the candidates before suppression, so a dense head's
        # near-duplicates of a few objects would crowd out every other object.
        chosen = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), class_ids.tolist(), self.score_threshold,
                                         self.iou_threshold)
        chosen = np.asarray(chosen, dtype=int).reshape(-1)
        chosen = chosen[np.argsort(-scores[chosen], kind="stable")][:self.max_detections]
        return boxes[chosen], scores[chosen], class_ids[chosen]

    # ----- the Task interface -----------------------------------------------------

    def results(self, outputs, *, input_hw=None, image_hw=None, placement=None) -> list[list[dict[str, Any]]]:
        found = []
        for boxes, scores, class_ids in self.detections(outputs, input_hw):
            boxes = _to_image(boxes, image_hw, placement)
            found.append([{"box": [round(float(v), 2) for v in box], "score": round(float(score), 4),
                           "label": self.label(int(class_id)), "class_id": int(class_id)}
                          for box, score, class_id in zip(boxes, scores, class_ids)])
        return found

    def lines(self, results) -> list[str]:
        if not results:
            return ["no detections"]
        width = max(len(r["label"]) for r in results)
        return [f"{r['label']:<{width}}  {r['score']:.3f}  [{', '.join(f'{v:.1f}' for v in r['box'])}]"
                for r in results]

    def draw(self, image, results):
        import cv2

        drawn = image.copy()
        for result in results:
            x1, y1, x2, y2 = (int(round(v)) for v in result["box"])
            colour = _colour(result["class_id"])
            cv2.rectangle(drawn, (x1, y1), (x2, y2), colour, 2)
            cv2.putText(drawn, f"{result['label']} {result['score']:.2f}", (x1, max(12, y1 - 4)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
        return drawn


def detect_head(outputs: dict[str, np.ndarray]) -> str:
    """Which layout the outputs have, from their shapes."""
    arrays = list(outputs.values())
    if len(arrays) == 1 and arrays[0].ndim == 3:
        return "ultralytics"
    boxes = [a for a in arrays if a.ndim == 3 and a.shape[-1] == 4]
    scores = [a for a in arrays if a.ndim == 3 and a.shape[-1] != 4]
    if len(boxes) == 1 and len(scores) == 1:
        return "ssd"
    if len(boxes) == 1 and sum(a.ndim == 2 for a in arrays) >= 2:
        return "decoded"
    raise InputError("expected detection outputs in a known layout: one [N, 4+classes, anchors] (Ultralytics), "
                     "boxes [N, A, 4] with scores [N, A, classes] (SSD), or boxes, scores and classes after NMS; "
                     f"found {', '.join(f'{n}{list(a.shape)}' for n, a in outputs.items())}.",
                     hint="Name the layout with --head, or export the model with one of these heads.")


def _ultralytics(outputs, classes: int | None):
    (array,) = outputs.values()
    array = array.astype(np.float32)
    # [N, anchors, 4 + classes], as some exports give it: the labels say which axis is which;
    # without them, the anchors (thousands) outnumber the values per anchor.
    transposed = array.shape[2] == 4 + classes if classes else array.shape[1] > array.shape[2]
    if transposed:
        array = array.transpose(0, 2, 1)
    if array.shape[1] < 5:
        raise InputError(f"an Ultralytics head has 4 box values and at least one class score per anchor; "
                         f"found {array.shape[1]} values.", hint="Check the model's output, or name --head.")
    samples = []
    for sample in array:
        cx, cy, w, h = sample[:4]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        samples.append((boxes, sample[4:].T))
    return samples


def _ssd(outputs, input_hw, background: bool):
    boxes = next(a for a in outputs.values() if a.ndim == 3 and a.shape[-1] == 4).astype(np.float32)
    scores = next(a for a in outputs.values() if a.ndim == 3 and a.shape[-1] != 4).astype(np.float32)
    if background:
        scores = scores[..., 1:]
    return [(_scaled(b, input_hw), s) for b, s in zip(boxes, scores)]


def _decoded(outputs, input_hw):
    named = {name.lower(): array for name, array in outputs.items()}
    boxes = next(a for a in outputs.values() if a.ndim == 3 and a.shape[-1] == 4).astype(np.float32)
    pairs = [(name, a) for name, a in named.items() if a.ndim == 2 and a.shape[1] == boxes.shape[1]]
    scores = next((a for n, a in pairs if "score" in n), pairs[0][1] if pairs else None)
    classes = next((a for n, a in pairs if "class" in n or "label" in n), pairs[-1][1] if len(pairs) > 1 else None)
    if scores is None or classes is None:
        raise InputError("decoded detections need boxes [N, K, 4], scores [N, K] and classes [N, K]; found "
                         f"{', '.join(f'{n}{list(a.shape)}' for n, a in outputs.items())}.",
                         hint="Name the layout with --head.")
    count = next((a.reshape(len(boxes), -1)[:, 0] for n, a in named.items() if "num" in n), None)
    samples = []
    for i in range(len(boxes)):
        k = int(count[i]) if count is not None else len(boxes[i])
        keep = slice(0, k)
        samples.append((_scaled(boxes[i][keep], input_hw), scores[i][keep].astype(np.float32),
                        classes[i][keep].astype(int)))
    return samples


def _scaled(boxes: np.ndarray, input_hw) -> np.ndarray:
    if input_hw is None:
        return boxes
    height, width = input_hw
    return boxes * np.array([width, height, width, height], np.float32)


def _to_image(boxes: np.ndarray, image_hw, placement) -> np.ndarray:
    """Input pixels -> original image pixels (letterbox padding and scale undone), clipped."""
    if placement is None or image_hw is None:
        return boxes
    scale_x, scale_y, left, top = placement
    mapped = (boxes - np.array([left, top, left, top], np.float32)) / np.array([scale_x, scale_y, scale_x, scale_y],
                                                                               np.float32)
    height, width = image_hw
    return np.clip(mapped, 0, [width, height, width, height])


def _colour(class_id: int) -> tuple[int, int, int]:
    """A distinct, stable colour per class (golden-ratio hues)."""
    import colorsys

    red, green, blue = colorsys.hsv_to_rgb((class_id * 0.618034) % 1.0, 0.85, 1.0)
    return int(blue * 255), int(green * 255), int(red * 255)
