"""A synthetic detection set rendered with OpenCV, for the detection demo and the tests: shapes
of three classes in random sizes and colours on textured backgrounds, one to four per image,
deterministic for a seed, nothing downloaded."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASSES = ("circle", "square", "triangle")


@dataclass
class Scene:
    image: np.ndarray  # HxWx3 uint8, BGR
    boxes: np.ndarray  # (K, 4) x1, y1, x2, y2 in pixels
    classes: np.ndarray  # (K,)


def render(count: int, *, size: int = 64, seed: int = 0) -> list[Scene]:
    import cv2

    rng = np.random.default_rng(seed)
    scenes = []
    for _ in range(count):
        image = _background(rng, size, cv2)
        boxes, classes = [], []
        for _ in range(rng.integers(1, 5)):
            side = int(rng.integers(size // 6, size // 2.5))
            for _ in range(20):  # a place that overlaps the others little
                x, y = (int(v) for v in rng.integers(0, size - side, 2))
                box = (x, y, x + side, y + side)
                if all(_iou(box, other) < 0.2 for other in boxes):
                    break
            else:
                continue
            cls = int(rng.integers(len(CLASSES)))
            colour = tuple(int(c) for c in rng.integers(40, 256, 3))
            _draw(image, cls, box, colour, cv2)
            boxes.append(box)
            classes.append(cls)
        scenes.append(Scene(image, np.array(boxes, np.float32).reshape(-1, 4), np.array(classes, np.int64)))
    return scenes


def _background(rng, size: int, cv2) -> np.ndarray:
    base = rng.integers(0, 120, 3)
    noise = rng.normal(0, 18, (size, size, 3))
    image = np.clip(base + noise, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(2, 6)):  # texture: a few faint lines
        p1, p2 = (tuple(int(v) for v in rng.integers(0, size, 2)) for _ in range(2))
        cv2.line(image, p1, p2, tuple(int(c) for c in rng.integers(0, 140, 3)), 1)
    return image


def _draw(image, cls: int, box, colour, cv2) -> None:
    x1, y1, x2, y2 = box
    if CLASSES[cls] == "circle":
        cv2.circle(image, ((x1 + x2) // 2, (y1 + y2) // 2), (x2 - x1) // 2, colour, -1, cv2.LINE_AA)
    elif CLASSES[cls] == "square":
        cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), colour, -1)
    else:
        points = np.array([[(x1 + x2) // 2, y1], [x1, y2 - 1], [x2 - 1, y2 - 1]], np.int32)
        cv2.fillPoly(image, [points], colour, cv2.LINE_AA)


def _iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def write_coco(scenes: list[Scene], folder: str | Path, name: str = "instances.json") -> Path:
    """The scenes as PNGs beside a COCO instances JSON (categories 1..3 named as CLASSES)."""
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index, scene in enumerate(scenes):
        file_name = f"scene_{index:04d}.png"
        cv2.imwrite(str(folder / file_name), scene.image)
        height, width = scene.image.shape[:2]
        images.append({"id": index, "file_name": file_name, "width": width, "height": height})
        for (x1, y1, x2, y2), cls in zip(scene.boxes.tolist(), scene.classes.tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": index, "category_id": cls + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    path = folder / name
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]}))
    return path
