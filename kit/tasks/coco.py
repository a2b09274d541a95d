"""Detection data and mAP in the COCO protocol.

Data: a COCO JSON (instances annotations; images beside it or in ``images/`` beside it) or a
YOLO folder (``images/`` and ``labels/NAME.txt`` of ``class cx cy w h`` in 0-1, class names
in ``classes.txt``). Images are listed up front and decoded one at a time; a YOLO label file
is read when its image is (its boxes need the image's size).

mAP@0.5:0.95 and mAP@0.5 come from pycocotools' COCOeval (the reference implementation, not
re-written here); the interval is a bootstrap over images, the same resamples for a model and
its baseline so their difference is paired.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kit.core.errors import InputError, RuntimeUnavailableError
from kit.data.datasets import IMAGE_SUFFIXES

RESAMPLES = 100


@dataclass
class DetectionSet:
    """Images and their ground truth; ``annotations(image, height, width)`` gives an image's
    boxes as COCO annotations (x, y, width, height in pixels)."""

    description: str
    categories: list[dict[str, Any]]  # {"id", "name"}, in class order
    images: list[dict[str, Any]]  # {"id", "path"}
    _boxes: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # COCO: known up front
    _yolo_labels: Path | None = None

    @property
    def names(self) -> list[str]:
        return [category["name"] for category in self.categories]

    def annotations(self, image: dict[str, Any], height: int, width: int) -> list[dict[str, Any]]:
        if self._yolo_labels is None:
            return self._boxes.get(image["id"], [])
        return _yolo_boxes(self._yolo_labels / (Path(image["path"]).stem + ".txt"), image["id"], height, width,
                           len(self.categories))


def open_detection_data(source: str | Path) -> DetectionSet:
    path = Path(source)
    if path.suffix.lower() == ".json" and path.is_file():
        return _coco(path)
    if path.is_dir() and (path / "images").is_dir() and (path / "labels").is_dir():
        return _yolo(path)
    raise InputError(f"expected detection data: a COCO JSON file or a YOLO folder (images/ and labels/); found "
                     f"{source}{'' if path.exists() else ', which does not exist'}.",
                     hint="E.g. --data instances_val.json, or --data dataset/ holding images/ and labels/.")


def _coco(path: Path) -> DetectionSet:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        images, categories = document["images"], sorted(document["categories"], key=lambda c: c["id"])
        annotations = document.get("annotations", [])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not a COCO instances file ({type(exc).__name__}: {exc}).",
                         hint="Expected JSON with images, categories and annotations.") from None
    folders = [path.parent, path.parent / "images"]
    listed = []
    for image in images:
        found = next((folder / image["file_name"] for folder in folders if (folder / image["file_name"]).is_file()),
                     None)
        if found is None:
            raise InputError(f"{path} lists {image['file_name']}, which is neither beside it nor in images/.",
                             hint="Keep the images beside the JSON, or in an images/ folder beside it.")
        listed.append({"id": int(image["id"]), "path": str(found)})
    boxes: dict[int, list[dict[str, Any]]] = {}
    for annotation in annotations:
        boxes.setdefault(int(annotation["image_id"]), []).append(annotation)
    return DetectionSet(str(path), [{"id": int(c["id"]), "name": str(c["name"])} for c in categories], listed,
                        boxes)


def _yolo(folder: Path) -> DetectionSet:
    images = sorted(p for p in (folder / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise InputError(f"{folder / 'images'} holds no images.", hint=f"Expected {', '.join(IMAGE_SUFFIXES)} files.")
    names_file = next((folder / n for n in ("classes.txt", "labels.txt") if (folder / n).is_file()), None)
    if names_file is None:
        raise InputError(f"{folder} has no classes.txt naming its classes.", hint="One class name per line, class 0 "
                                                                              "first.")
    from kit.tasks import read_labels

    names = read_labels(names_file)
    return DetectionSet(str(folder), [{"id": i, "name": n} for i, n in enumerate(names)],
                        [{"id": i, "path": str(p)} for i, p in enumerate(images)], _yolo_labels=folder / "labels")


def _yolo_boxes(path: Path, image_id: int, height: int, width: int, classes: int) -> list[dict[str, Any]]:
    if not path.is_file():
        return []  # an image without objects
    boxes = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            cls, cx, cy, w, h = (float(v) for v in line.split()[:5])
        except ValueError:
            raise InputError(f"{path} line {number}: expected 'class cx cy w h', found {line!r}.",
                             hint="YOLO labels are a class index and four numbers from 0 to 1.") from None
        if not cls.is_integer() or not 0 <= cls < classes:
            raise InputError(f"{path} line {number}: class {cls:g} is not one of the {classes} in classes.txt.",
                             hint="Class indices start at 0.")
        box = [(cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height]
        boxes.append({"image_id": image_id, "category_id": int(cls), "bbox": box, "area": box[2] * box[3],
                      "iscrowd": 0})
    return boxes


# ----- mAP ----------------------------------------------------------------------------


@dataclass
class MeanAP:
    map: float  # mAP@0.5:0.95
    map50: float
    images: int
    ci: tuple[float, float] = (float("nan"), float("nan"))  # of map, bootstrap over images

    def to_dict(self) -> dict[str, Any]:
        return {"map": self.map, "map50": self.map50, "images": self.images, "map_ci": list(self.ci)}


def mean_ap(ground_truth: dict[str, Any], predictions: list[dict[str, Any]]) -> tuple[float, float]:
    """(mAP@0.5:0.95, mAP@0.5) by pycocotools' COCOeval."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as exc:
        raise RuntimeUnavailableError("mAP needs pycocotools, which is not installed.",
                                      hint='pip install "edge-inference-kit[detect]"') from exc
    if not any(True for _ in ground_truth["annotations"]):
        raise InputError("the detection data holds no ground-truth boxes to score against.",
                         hint="Check the annotations (COCO) or labels/ (YOLO).")
    if not predictions:
        return 0.0, 0.0
    with contextlib.redirect_stdout(io.StringIO()):  # COCO's own progress and summary prints
        truth = COCO()
        truth.dataset = ground_truth
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(predictions), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return max(0.0, float(evaluation.stats[0])), max(0.0, float(evaluation.stats[1]))


def resampled(ground_truth: dict[str, Any], predictions: list[dict[str, Any]], seed: int = 0,
              resamples: int = RESAMPLES) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Bootstrap resamples over images (with replacement; a repeated image gets a new id), the
    same ones for every model given the same seed."""
    rng = np.random.default_rng(seed)
    ids = [image["id"] for image in ground_truth["images"]]
    truth_by, predicted_by = {}, {}
    for annotation in ground_truth["annotations"]:
        truth_by.setdefault(annotation["image_id"], []).append(annotation)
    for prediction in predictions:
        predicted_by.setdefault(prediction["image_id"], []).append(prediction)
    for _ in range(resamples):
        images, annotations, chosen = [], [], []
        for new_id, old in enumerate(rng.choice(ids, size=len(ids), replace=True)):
            images.append({"id": new_id})
            annotations += [{**a, "image_id": new_id} for a in truth_by.get(int(old), [])]
            chosen += [{**p, "image_id": new_id} for p in predicted_by.get(int(old), [])]
        for number, annotation in enumerate(annotations, start=1):
            annotation["id"] = number
        yield {**ground_truth, "images": images, "annotations": annotations}, chosen
