"""Shared pieces of the project's own benchmark suite (run: python -m pytest benchmarks/).

Rules from measuring on 2 shared cores: one intra-op thread, variants compared in the
same run, interleaved where they share a process, and only ratios reported.
"""

import numpy as np
import pytest


@pytest.fixture(scope="session")
def millisecond_cnn(tmp_path_factory):
    """A MobileNet-style conv net that takes about a millisecond per image on one core."""
    from kit.export import export_onnx
    from kit.models import make_mobilenet_style

    path = tmp_path_factory.mktemp("bench-models") / "mobilenet_1ms.onnx"
    export_onnx(make_mobilenet_style(3, 10, 16).eval(), path, input_shapes="1x3x64x64")
    return path


@pytest.fixture(scope="session")
def digits_onnx(tmp_path_factory):
    """The demo's digits CNN (about 10 us per call): where fixed per-call costs show most."""
    from kit.export import export_onnx
    from kit.models import make_digits_cnn

    path = tmp_path_factory.mktemp("bench-models") / "digits.onnx"
    export_onnx(make_digits_cnn().eval(), path, input_shapes="1x1x8x8")
    return path


def image_feeds(runtime):
    from kit.specs import random_feeds

    return random_feeds(runtime.inputs, seed=0)


def pooled_median(chunks: list[list[float]]) -> float:
    return float(np.median(np.concatenate(chunks)))
