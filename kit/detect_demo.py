"""kit demo --task detect: a synthetic shapes set rendered with OpenCV, a small anchor-free
detector trained on the CPU (deterministic, about a minute), exported to ONNX (also with NMS in
the graph) and TFLite, quantized to INT8, and every variant scored on mAP with kit bench in one
table; where TensorRT is installed, an int8 engine is built too (ahead of time with
TensorRT-RTX). Everything stays in the demo's folder so every command can be tried on it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from kit.core.fileio import atomic_output

FACTORY = "kit.models:make_shape_detector"
TRAIN_SCENES, HELD_OUT_SCENES, CALIBRATION_SCENES = 2000, 200, 200
EPOCHS = 12
PREPROCESS = "size=64,scale=0.00392156862745098"  # RGB in [0, 1], as the detector was trained


def train_shape_detector(scenes, epochs: int = EPOCHS):
    """CenterNet-style training: focal loss on Gaussian class heatmaps, L1 on each object's
    centre offset and log size at its cell. One thread and fixed seeds (kit.demo's rule)."""
    import torch

    from kit.demo import deterministic_torch
    from kit.models import ShapeDetector

    x = torch.from_numpy(images_of(scenes))
    heat, box, mask = (torch.from_numpy(a) for a in _targets(scenes, ShapeDetector.stride, x.shape[-1]))
    with deterministic_torch():
        torch.manual_seed(0)
        model = ShapeDetector()
        optimizer = torch.optim.Adam(model.parameters(), 3e-3)
        generator = torch.Generator().manual_seed(0)
        model.train()
        for _ in range(epochs):
            for batch in torch.randperm(len(x), generator=generator).split(32):
                heat_logits, terms = model.raw(x[batch])
                found = mask[batch]
                offset = (torch.sigmoid(terms[:, :2]) - box[batch][:, :2]).abs().sum(1)
                size = (terms[:, 2:] - box[batch][:, 2:]).abs().sum(1)
                loss = _focal(heat_logits, heat[batch]) + ((offset + size) * found).sum() / found.sum().clamp(min=1)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    return model.eval()


def images_of(scenes) -> np.ndarray:
    """NCHW float32 RGB in [0, 1] (OpenCV renders BGR)."""
    return np.ascontiguousarray(np.stack([s.image[:, :, ::-1] for s in scenes]).transpose(0, 3, 1, 2),
                                dtype=np.float32) / 255


def _targets(scenes, stride: int, size: int):
    cells = size // stride
    heat = np.zeros((len(scenes), 3, cells, cells), np.float32)
    box = np.zeros((len(scenes), 4, cells, cells), np.float32)
    mask = np.zeros((len(scenes), cells, cells), np.float32)
    ys, xs = np.mgrid[0:cells, 0:cells]
    for i, scene in enumerate(scenes):
        for (x1, y1, x2, y2), cls in zip(scene.boxes, scene.classes):
            cx, cy, w, h = (x1 + x2) / 2 / stride, (y1 + y2) / 2 / stride, x2 - x1, y2 - y1
            gx, gy = min(int(cx), cells - 1), min(int(cy), cells - 1)
            sigma = max(0.5, w / stride / 6)
            heat[i, cls] = np.maximum(heat[i, cls], np.exp(-((xs - gx) ** 2 + (ys - gy) ** 2) / (2 * sigma ** 2)))
            box[i, :, gy, gx] = [cx - gx, cy - gy, np.log(w / (stride * 2)), np.log(h / (stride * 2))]
            mask[i, gy, gx] = 1
    return heat, box, mask


def _focal(logits, target):
    import torch

    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1).float()
    loss = -torch.log(p) * (1 - p) ** 2 * positive - torch.log(1 - p) * p ** 2 * (1 - target) ** 4 * (1 - positive)
    return loss.sum() / positive.sum().clamp(min=1)


def run_detect_demo(out_dir: str | os.PathLike, progress: Callable[[str], None] | None = None,
                    bench_seconds: float = 1.0) -> dict[str, Any]:
    """Render, train, export (ONNX, TFLite), quantize (ONNX QDQ and TFLite full int8), and score
    every variant on the held-out set's mAP with kit bench."""
    say = progress or (lambda message: None)
    from kit.demo import _require, _tflite_available, output_folder

    _require("torch", "onnx", "onnxruntime", "cv2", "pycocotools")
    import cv2
    import torch

    from kit.bench.driver import bench
    from kit.export.onnx import export_onnx
    from kit.export.quantize import quantize
    from kit.synthetic import CLASSES, render, write_coco

    out = output_folder(out_dir)
    say("rendering synthetic shapes (OpenCV)")
    train = render(TRAIN_SCENES, seed=1)
    held_out = write_coco(render(HELD_OUT_SCENES, seed=2), out / "heldout")
    (out / "calib").mkdir(exist_ok=True)
    for index, scene in enumerate(train[:CALIBRATION_SCENES]):
        cv2.imwrite(str(out / "calib" / f"calib_{index:04d}.png"), scene.image)
    with atomic_output(out / "labels.txt") as tmp:
        tmp.write_text("".join(f"{name}\n" for name in CLASSES))
    say(f"training the detector ({EPOCHS} epochs, one thread)")
    model = train_shape_detector(train)
    weights = out / "shape_detector.pt"
    with atomic_output(weights) as tmp:
        torch.save(model.state_dict(), tmp)
    task = {"name": "detect", "labels": list(CLASSES)}
    say("exporting to ONNX")
    exported = export_onnx(FACTORY, out / "shapes.onnx", weights=str(weights), input_shapes="1x3x64x64",
                           preprocess=PREPROCESS, task=task)
    say("quantizing to int8")
    int8 = quantize(exported.path, out / "shapes.int8.onnx", calib=str(out / "calib"))
    variants = [FACTORY, str(exported.path), str(int8.path)]
    if _tflite_available(say):
        from kit.export.tflite import export_tflite

        for precision in ("fp32", "int8"):
            say(f"exporting TFLite {precision}")
            variants.append(str(export_tflite(FACTORY, out / f"shapes.{precision}.tflite", precision=precision,
                                              weights=str(weights), input_shapes="1x3x64x64", preprocess=PREPROCESS,
                                              calib=str(out / "calib") if precision == "int8" else None,
                                              task=task).path))
    say("exporting ONNX with NMS in the graph")
    variants.append(str(export_onnx(FACTORY, out / "shapes.nms.onnx", weights=str(weights), input_shapes="1x3x64x64",
                                    preprocess=PREPROCESS, task=task, nms="graph").path))
    engine = _tensorrt_engine(exported.path, out, say)
    say("measuring every variant (pytest-benchmark, one process each; mAP on the held-out set)")
    # The PyTorch variant records nothing and takes the preprocessing the exports record.
    report = bench(variants, data=str(held_out), max_time=bench_seconds,
                   options={"weights": str(weights), "input_shapes": "1x3x64x64"})
    return {"out_dir": str(out), "train_scenes": TRAIN_SCENES, "held_out": str(held_out),
            "export": exported.to_dict(), "quantize": int8.to_dict(), "engine": engine, "bench": report.document,
            "results": [{"model": row["name"], "map": row["detection"]["map"], "map50": row["detection"]["map50"],
                         "map_ci": row["detection"]["map_ci"], "median_s": row["latency_s"]["median"],
                         "size_bytes": row["size_bytes"]}
                        for row in report.rows()]}


ENGINE_TARGET = "SM86"  # ahead of time without a GPU: Ampere, the oldest family TensorRT-RTX builds for


def _tensorrt_engine(model, out: Path, say) -> dict | None:
    """A TensorRT int8 engine of the detector (from QDQ placed for TensorRT) where TensorRT is
    installed: for this machine's GPU, or ahead of time for ENGINE_TARGET with TensorRT-RTX."""
    from kit.runtimes.tensorrt.cuda import gpu_description
    from kit.runtimes.tensorrt.modules import find_module

    trt = find_module()
    gpu = gpu_description() if trt is not None else None
    if trt is None or (gpu is None and trt.__name__ != "tensorrt_rtx"):
        say("no TensorRT engine: TensorRT is not installed, or there is no GPU to build for")
        return None
    from kit.export.quantize import quantize
    from kit.runtimes.tensorrt.build import build_engine

    say("quantizing for TensorRT and building an int8 engine")
    qdq = quantize(model, out / "shapes.trt.int8.onnx", calib=str(out / "calib"), target="tensorrt")
    built = build_engine(qdq.path, out / "shapes.int8.engine", precision="int8",
                         compute_capability=None if gpu else ENGINE_TARGET)
    return built.to_dict()
