"""The built-in demo: train a small CNN on scikit-learn's bundled digits, export it, and run it
on every usable backend, reporting held-out accuracy and agreement with PyTorch.

Everything is made here, in seconds, with no download.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from kit.errors import RuntimeUnavailableError
from kit.fileio import atomic_output

SEED = 0
FACTORY = "kit.models:make_digits_cnn"


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train/held-out split of the bundled digits as NCHW float32 in [0, 1]; deterministic."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    return train_test_split(images, digits.target.astype(np.int64), test_size=0.25, random_state=SEED,
                            stratify=digits.target)


def train_digits_cnn(x: np.ndarray, y: np.ndarray, epochs: int = 12, factory=None):
    """Train (deterministically) the digits CNN, or the model ``factory()`` builds, on the given digits."""
    import torch

    from kit.models import make_digits_cnn

    torch.manual_seed(SEED)
    model = (factory or make_digits_cnn)()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    generator = torch.Generator().manual_seed(SEED)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(xs), generator=generator).split(64):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(xs[batch]), ys[batch]).backward()
            optimizer.step()
    return model.eval()


CALIBRATION_SAMPLES = 300


@dataclass
class VariantResult:
    variant: str  # fp32 / int8 / fp16
    runtime: str
    model: str
    size_bytes: int | None
    accuracy: float
    delta: float  # accuracy minus PyTorch FP32's
    agreement: float  # top-1 agreement with PyTorch FP32
    max_abs: float  # largest logit difference from PyTorch FP32

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_demo(out_dir: str | os.PathLike, progress: Callable[[str], None] | None = None,
             bench_seconds: float = 1.0) -> dict[str, Any]:
    """Train, export, quantize (int8, fp16), run every variant on every usable backend, and
    benchmark them all (each in its own process)."""
    say = progress or (lambda message: None)
    _require("torch", "sklearn", "onnx", "onnxruntime")
    import torch

    from kit.export.onnx import export_onnx
    from kit.export.quantize import quantize

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
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
                           simplify=True, preprocess="color=gray,scale=0.00392156862745098")
    quantized = {}
    for precision, name in (("int8", "digits_cnn.int8.onnx"), ("fp16", "digits_cnn.fp16.onnx")):
        say(f"quantizing to {precision}")
        quantized[precision] = quantize(exported.path, out / name, precision=precision,
                                        calib=str(out / "digits_calib.npz"))

    # PyTorch FP32 first: it is the reference every variant is compared with.
    variants = [("fp32", "torch", FACTORY, {"weights": str(weights), "input_shapes": "1x1x8x8"}),
                ("fp32", "onnxruntime", str(exported.path), {}),
                *(((p, "onnxruntime", str(r.path), {}) for p, r in quantized.items()))]
    results: list[VariantResult] = []
    reference = None
    for variant, runtime, artifact, options in variants:
        say(f"running the held-out set: {variant} on {runtime}")
        logits = _held_out_logits(runtime, artifact, options, x_test)
        if logits is None:
            continue
        reference = logits if reference is None else reference
        accuracy = float((logits.argmax(1) == y_test).mean())
        results.append(VariantResult(
            variant, runtime, weights.name if runtime == "torch" else Path(artifact).name,
            Path(artifact).stat().st_size if Path(artifact).is_file() else weights.stat().st_size,
            accuracy, accuracy - results[0].accuracy if results else 0.0,
            float((logits.argmax(1) == reference.argmax(1)).mean()), float(np.abs(logits - reference).max())))
    say("benchmarking every variant (pytest-benchmark, one process each)")
    from kit.bench import bench

    measured = bench([FACTORY, str(exported.path), *(str(r.path) for r in quantized.values())],
                     data=str(out / "digits_test.npz"), max_time=bench_seconds,
                     options={"weights": str(weights), "input_shapes": "1x1x8x8"})
    return {"out_dir": str(out), "train_samples": len(x_train), "test_samples": len(x_test),
            "export": exported.to_dict(), "quantize": {p: r.to_dict() for p, r in quantized.items()},
            "results": [r.to_dict() for r in results], "bench": measured.document}


def _held_out_logits(runtime: str, artifact: str, options: dict, x: np.ndarray) -> np.ndarray | None:
    """The held-out logits on one backend, or None when that backend is not usable here."""
    from kit.runtimes.registry import get

    backend = get(runtime)
    if not backend.can_open(artifact) or not backend.availability().usable:
        return None
    with backend(artifact, **options) as rt:
        return rt.run({"input": x})["output"]


def _write_sample_images(out: Path, x: np.ndarray, y: np.ndarray, count: int = 5) -> None:
    """A few held-out digits as PNG files, to try ``kit run --image``."""
    try:
        import cv2
    except ImportError:
        return
    for index in range(count):
        target = out / f"digit_{index}_label{y[index]}.png"
        with atomic_output(target) as tmp:
            cv2.imwrite(str(tmp), np.round(x[index, 0] * 255).astype(np.uint8))


def _require(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise RuntimeUnavailableError(f"the demo needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                                      "not installed.", hint='Install it with: pip install "edge-inference-kit[all]"')
