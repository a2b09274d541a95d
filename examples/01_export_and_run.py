"""Export a PyTorch model to ONNX, run it on ONNX Runtime, and check it against PyTorch.

Run from any folder: python examples/01_export_and_run.py
It writes tiny_cnn.onnx into the current folder.
"""

import numpy as np
import torch
from torch import nn

import kit
from kit.export import export_onnx


def make_tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()


def main() -> None:
    model = make_tiny_cnn()
    # A model in memory is a source; so are .pt/.pt2 files and "file.py:factory" references.
    result = export_onnx(model, "tiny_cnn.onnx", input_shapes="1x3x32x32", simplify=True,
                         preprocess="mean=0.485/0.456/0.406,std=0.229/0.224/0.225")
    print(f"exported {result.path} with the {result.exporter} exporter, opset {result.opset}")
    for diff in result.validation:
        print(f"  output {diff.name}: max abs error {diff.max_abs:.2e} vs PyTorch (batches {result.batches})")

    images = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    with kit.load("tiny_cnn.onnx") as runtime:  # ONNX Runtime, chosen from the suffix
        print(f"  inputs: {[s.describe() for s in runtime.inputs]}  info: {runtime.info}")
        logits = runtime.run({"input": images})["output"]
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    print(f"  batch of 4: max |ONNX Runtime - PyTorch| = {np.abs(logits - expected).max():.2e}")


if __name__ == "__main__":
    main()
