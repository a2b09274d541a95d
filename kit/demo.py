"""The built-in demo: train a small CNN on scikit-learn's bundled digits, export it, and run it
on every usable backend, reporting held-out accuracy and agreement with PyTorch.

Everything is made here, in seconds, with no download.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from kit.core.errors import InputError, RuntimeUnavailableError
from kit.core.fileio import atomic_output

SEED = 0
FACTORY = "kit.models:make_digits_cnn"
TASK = {"name": "classify", "labels": [str(digit) for digit in range(10)]}  # recorded: run prints digits
VIDEO, VIDEO_FRAMES = "digits.avi", 100


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train/held-out split of the bundled digits as NCHW float32 in [0, 1]; deterministic."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    return train_test_split(images, digits.target.astype(np.int64), test_size=0.25, random_state=SEED,
                            stratify=digits.target)


def train_digits_cnn(x: np.ndarray, y: np.ndarray, epochs: int = 12, factory=None, *, lr: float = 5e-3,
                     batch_size: int = 64):
    """Train (deterministically) the digits CNN, or the model ``factory()`` builds, on the given
    images with Adam."""
    import torch

    from kit.models import make_digits_cnn

    with deterministic_torch():
        torch.manual_seed(SEED)
        model = (factory or make_digits_cnn)()
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        generator = torch.Generator().manual_seed(SEED)
        xs, ys = torch.from_numpy(x), torch.from_numpy(y)
        model.train()
        for _ in range(epochs):
            for batch in torch.randperm(len(xs), generator=generator).split(batch_size):
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(xs[batch]), ys[batch]).backward()
                optimizer.step()
    return model.eval()


@contextlib.contextmanager
def deterministic_torch():
    """One thread and deterministic kernels while training: the split of reductions across
    threads changes the rounding, and over 12 epochs that moved a MobileNet-style net from
    98.0% (one thread) to 94.9% (two threads) on another CPU. The caller's settings come back."""
    import torch

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


CALIBRATION_SAMPLES = 300


def run_demo(out_dir: str | os.PathLike, progress: Callable[[str], None] | None = None,
             bench_seconds: float = 1.0) -> dict[str, Any]:
    """Train, export, quantize (int8, fp16), then measure every variant on every usable backend
    with `kit bench` (one process each): latency, size, and held-out accuracy and agreement
    against PyTorch FP32, in one report."""
    say = progress or (lambda message: None)
    _require("torch", "sklearn", "onnx", "onnxruntime")
    import torch

    from kit.bench.driver import bench
    from kit.export.onnx import export_onnx
    from kit.export.quantize import quantize

    out = output_folder(out_dir)
    say("training a small CNN on scikit-learn's digits")
    x_train, x_test, y_train, y_test = digits_split()
    model = train_digits_cnn(x_train, y_train)
    weights = out / "digits_cnn.pt"
    with atomic_output(weights) as tmp:
        torch.save(model.state_dict(), tmp)
    for name, arrays in (("digits_test.npz", {"x": x_test, "y": y_test}),
                         ("digits_calib.npz", {"x": x_train[:CALIBRATION_SAMPLES]})):
        with atomic_output(out / name) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    _write_sample_images(out, x_test, y_test)

    say("exporting to ONNX")
    exported = export_onnx(FACTORY, out / "digits_cnn.onnx", weights=str(weights), input_shapes="1x1x8x8",
                           simplify=True, preprocess="color=gray,scale=0.00392156862745098", task=TASK)
    quantized = {}
    for precision, name in (("int8", "digits_cnn.int8.onnx"), ("fp16", "digits_cnn.fp16.onnx")):
        say(f"quantizing to {precision}")
        quantized[precision] = quantize(exported.path, out / name, precision=precision,
                                        calib=str(out / "digits_calib.npz"))

    tflite = _tflite_variants(out, weights, say)
    say("measuring every variant (pytest-benchmark, one process each)")
    precisions = {FACTORY: "fp32", str(exported.path): "fp32", **{str(r.path): p for p, r in quantized.items()},
                  **{str(r.path): p for p, r in tflite.items()}}
    # PyTorch FP32 first: the baseline every variant's accuracy and agreement are measured against.
    report = bench(list(precisions), data=str(out / "digits_test.npz"), max_time=bench_seconds,
                   options={"weights": str(weights), "input_shapes": "1x1x8x8"})
    results = [{"variant": precisions[row["model"]], "runtime": row["runtime"], "model": row["name"],
                "size_bytes": row["size_bytes"] or weights.stat().st_size, "accuracy": row["accuracy"]["top1"],
                "delta": row["accuracy"]["delta"], "agreement": row["fidelity"][0]["top1"],
                "max_abs": row["fidelity"][0]["max_abs"], "median_s": row["latency_s"]["median"]}
               for row in report.rows()]
    video = out / VIDEO
    return {"out_dir": str(out), "video": str(video) if video.is_file() else None,
            "train_samples": len(x_train), "test_samples": len(x_test),
            "export": exported.to_dict(), "quantize": {p: r.to_dict() for p, r in quantized.items()},
            "tflite": {p: r.to_dict() for p, r in tflite.items()}, "results": results, "bench": report.document}


def _tflite_variants(out: Path, weights: Path, say) -> dict:
    """The four TFLite variants, when litert-torch is installed (a device-only install has none)."""
    if not _tflite_available(say):
        return {}
    from kit.export.tflite import export_tflite
    variants = {}
    for precision in ("fp32", "fp16", "int8-dynamic", "int8"):
        say(f"exporting TFLite {precision}")
        variants[precision] = export_tflite(
            FACTORY, out / f"digits_cnn.{precision}.tflite", precision=precision, weights=str(weights),
            input_shapes="1x1x8x8", calib=str(out / "digits_calib.npz") if precision == "int8" else None,
            preprocess="color=gray,scale=0.00392156862745098", task=TASK)
    return variants


def output_folder(out_dir: str | os.PathLike) -> Path:
    """The demo's folder, made if needed (a file of that name is refused)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"expected a folder for the demo's files, found the file {out}.",
                         hint="Give a new or existing folder with -o DIR.")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _tflite_available(say) -> bool:
    """Can TFLite variants be made here? (a device-only install has no litert-torch)"""
    import importlib.util

    if importlib.util.find_spec("litert_torch") is None or importlib.util.find_spec("ai_edge_litert") is None:
        say("litert-torch is not installed: skipping the TFLite variants")
        return False
    return True


def _write_sample_images(out: Path, x: np.ndarray, y: np.ndarray, count: int = 5) -> None:
    """A few held-out digits as PNG files, to try ``kit run --image``, and the first hundred as a
    video (64x64, 10 frames a second), to try ``kit run --source``."""
    try:
        import cv2
    except ImportError:
        return
    pixels = np.round(x[:, 0] * 255).astype(np.uint8)
    for index in range(count):
        target = out / f"digit_{index}_label{y[index]}.png"
        with atomic_output(target) as tmp:
            cv2.imwrite(str(tmp), pixels[index])
    with atomic_output(out / VIDEO) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
        for image in pixels[:VIDEO_FRAMES]:
            writer.write(cv2.cvtColor(cv2.resize(image, (64, 64), interpolation=cv2.INTER_NEAREST),
                                      cv2.COLOR_GRAY2BGR))
        writer.release()


def _require(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise RuntimeUnavailableError(f"the demo needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                                      "not installed.", hint='Install it with: pip install "edge-inference-kit[all]"')
