"""kit eval for detectors: every image through the model (the one runner), its boxes mapped
back to the image's pixels by the task, scored with the COCO protocol (kit.tasks.coco), and
against a baseline the paired bootstrap difference and the budget."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kit.check.runner import Progress, RunResults, run
from kit.core import provenance
from kit.core.errors import InputError
from kit.core.fileio import atomic_output
from kit.data.preprocess import for_images, placement
from kit.runtimes.registry import load
from kit.tasks.coco import RESAMPLES, MeanAP, mean_ap, open_detection_data, resampled
from kit.tasks.detect import Detect


@dataclass
class DetectionRun:
    """A detector's predictions on a data set, in COCO results format, with the ground truth."""

    model: str
    ground_truth: dict[str, Any]
    predictions: list[dict[str, Any]]

    def score(self, seed: int = 0, resamples: int = RESAMPLES) -> MeanAP:
        found, found50 = mean_ap(self.ground_truth, self.predictions)
        samples = [mean_ap(*pair)[0] for pair in resampled(self.ground_truth, self.predictions, seed, resamples)]
        return MeanAP(found, found50, len(self.ground_truth["images"]),
                      (float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))))

    def save(self, path: str | os.PathLike) -> None:
        """The ground truth and the predictions, for scoring elsewhere (kit bench's driver)."""
        Path(path).write_text(json.dumps({"model": self.model, "ground_truth": self.ground_truth,
                                          "predictions": self.predictions}))

    @classmethod
    def load(cls, path: str | os.PathLike) -> DetectionRun:
        saved = json.loads(Path(path).read_text())
        return cls(saved["model"], saved["ground_truth"], saved["predictions"])

    def save_predictions(self, path: str | os.PathLike) -> None:
        """COCO results format: any COCO tool can score them again."""
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps(self.predictions))


def detect_on(model: str, data: str, task: Detect, *, runtime: str | None = None, preprocess: str | None = None,
              progress: Progress | None = None, **options: Any) -> DetectionRun:
    """Run the detector over every image of ``data`` (COCO JSON or YOLO folder)."""
    with load(model, runtime, **options) as rt:
        return detect_with(rt, model, data, task, preprocess=preprocess, progress=progress)[0]


def detect_with(rt, model: str, data: str, task: Detect, *, preprocess: str | dict | None = None, keep: bool = False,
                progress: Progress | None = None) -> tuple[DetectionRun, RunResults]:
    """A loaded runtime over every image of ``data``; with ``keep``, its raw outputs too."""
    dataset = open_detection_data(data)
    categories = _category_ids(task, dataset.categories)
    stored = provenance.read(model)
    truth_images, truth, predictions = [], [], []
    if len(rt.inputs) != 1:
        raise InputError(f"a detector takes one image input; {model} takes {len(rt.inputs)}.",
                         hint="Evaluate a single-input detector.")
    steps = for_images(rt.inputs[0], stored.get("preprocess"), None if stored.get("preprocess") else preprocess,
                       model=model)
    shapes: dict[int, tuple[int, int]] = {}

    def images():
        for image in dataset.images:
            decoded = steps.read(image["path"])
            height, width = decoded.shape[:2]
            shapes[image["id"]] = (height, width)
            truth_images.append({"id": image["id"], "width": width, "height": height})
            truth.extend(dataset.annotations(image, height, width))
            yield {rt.inputs[0].name: steps.apply(decoded)}, np.array([image["id"]])

    def collect(feeds, image_ids, outputs):
        image_id = int(image_ids[0])
        hw = shapes[image_id]
        (found,) = task.results(outputs[0], input_hw=steps.size, image_hw=hw,
                                placement=placement(hw, steps.size, steps.resize))
        for box in found:
            x1, y1, x2, y2 = box["box"]
            category = categories.get(box["class_id"])
            if category is not None:  # a class the data set does not have cannot be scored
                predictions.append({"image_id": image_id, "category_id": category,
                                    "bbox": [x1, y1, x2 - x1, y2 - y1], "score": box["score"]})

    results = run([rt], images(), consumers=[collect], keep=keep, total=len(dataset.images), progress=progress)
    for number, annotation in enumerate(truth, start=1):
        annotation.setdefault("area", annotation["bbox"][2] * annotation["bbox"][3])
        annotation.setdefault("iscrowd", 0)
        annotation["id"] = number
    ground_truth = {"images": truth_images, "annotations": truth, "categories": dataset.categories}
    return DetectionRun(model, ground_truth, predictions), results


def is_detection_data(data: str) -> bool:
    path = Path(data)
    return (path.suffix.lower() == ".json" and path.is_file()) or (
        path.is_dir() and (path / "images").is_dir() and (path / "labels").is_dir())


def _category_ids(task: Detect, categories: list[dict[str, Any]]) -> dict[int, int]:
    """The data set's category id for each of the model's classes: by label name when the model
    has labels, else by position (class i is the i-th category)."""
    if not task.labels:
        return {i: category["id"] for i, category in enumerate(categories)}
    by_name = {category["name"]: category["id"] for category in categories}
    mapped = {i: by_name[name] for i, name in enumerate(task.labels) if name in by_name}
    if not mapped:
        raise InputError(f"none of the model's labels ({', '.join(task.labels[:8])}) is a category of the data "
                         f"({', '.join(by_name) or 'none'}).", hint="Give the data set's names with --labels.")
    return mapped


def paired_delta(baseline: DetectionRun, candidate: DetectionRun, seed: int = 0,
                 resamples: int = RESAMPLES) -> tuple[float, tuple[float, float]]:
    """candidate - baseline mAP@0.5:0.95 and its 95% interval, both on the same image resamples."""
    delta = mean_ap(candidate.ground_truth, candidate.predictions)[0] - mean_ap(baseline.ground_truth,
                                                                               baseline.predictions)[0]
    pairs = zip(resampled(baseline.ground_truth, baseline.predictions, seed, resamples),
                resampled(candidate.ground_truth, candidate.predictions, seed, resamples))
    samples = [mean_ap(*c)[0] - mean_ap(*b)[0] for b, c in pairs]
    return delta, (float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5)))
