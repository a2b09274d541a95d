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
FACTORY = "kit.demo:make_digits_cnn"


def make_digits_cnn():
    """The demo architecture: conv + batch-norm + depthwise conv + linear, 8x8 grayscale in, 10 logits out."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.Conv2d(16, 32, 1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
    )


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train/held-out split of the bundled digits as NCHW float32 in [0, 1]; deterministic."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    return train_test_split(images, digits.target.astype(np.int64), test_size=0.25, random_state=SEED,
                            stratify=digits.target)


def train_digits_cnn(x: np.ndarray, y: np.ndarray, epochs: int = 12):
    import torch

    torch.manual_seed(SEED)
    model = make_digits_cnn()
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


@dataclass
class BackendResult:
    runtime: str
    model: str
    accuracy: float
    agreement: float  # top-1 agreement with PyTorch
    max_abs: float  # largest logit difference from PyTorch

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_demo(out_dir: str | os.PathLike, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    say = progress or (lambda message: None)
    _require("torch", "sklearn", "onnx", "onnxruntime")
    import torch

    from kit.export.onnx import export_onnx
    from kit.runtimes.registry import candidates, get

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say("training a small CNN on scikit-learn's digits")
    x_train, x_test, y_train, y_test = digits_split()
    model = train_digits_cnn(x_train, y_train)
    weights = out / "digits_cnn.pt"
    with atomic_output(weights) as tmp:
        torch.save(model.state_dict(), tmp)
    with atomic_output(out / "digits_test.npz") as tmp, open(tmp, "wb") as handle:
        np.savez(handle, x=x_test, y=y_test)
    _write_sample_images(out, x_test, y_test)

    say("exporting to ONNX")
    exported = export_onnx(FACTORY, out / "digits_cnn.onnx", weights=str(weights), input_shapes="1x1x8x8",
                           simplify=True, preprocess="color=gray,scale=0.00392156862745098")

    # torch first: it is the reference every other backend is compared with.
    artifacts = {"torch": FACTORY, "onnxruntime": str(exported.path)}
    labels = {"torch": f"{FACTORY} + {weights.name}"}
    options = {"torch": {"weights": str(weights), "input_shapes": "1x1x8x8"}}
    feeds = {"input": x_test}
    results, reference = [], None
    for name, artifact in artifacts.items():
        if name not in candidates(artifact) or not get(name).availability().usable:
            continue
        say(f"running the held-out set on {name}")
        with get(name)(artifact, **options.get(name, {})) as rt:
            logits = rt.run(feeds)["output"]
        reference = logits if reference is None else reference
        results.append(BackendResult(name, labels.get(name, Path(artifact).name), float((logits.argmax(1) == y_test).mean()),
                                     float((logits.argmax(1) == reference.argmax(1)).mean()),
                                     float(np.abs(logits - reference).max())))
    return {"out_dir": str(out), "train_samples": len(x_train), "test_samples": len(x_test),
            "export": exported.to_dict(), "results": [r.to_dict() for r in results]}


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
