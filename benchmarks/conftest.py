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


@pytest.fixture(scope="session")
def digits_tflite(tmp_path_factory):
    """The digits CNN as TFLite fp32 (NCHW) and full int8 (NHWC, int8 I/O, calibrated on real digits)."""
    from kit.export.tflite import export_tflite
    from kit.demo import digits_split
    from kit.models import make_digits_cnn

    folder = tmp_path_factory.mktemp("bench-tflite")
    np.savez(folder / "calib.npz", x=digits_split()[0][:200])
    model = make_digits_cnn().eval()
    return {precision: export_tflite(model, folder / f"digits.{precision}.tflite", precision=precision,
                                     input_shapes="1x1x8x8",
                                     calib=str(folder / "calib.npz") if precision == "int8" else None).path
            for precision in ("fp32", "int8")}


def image_feeds(runtime):
    from kit.core.specs import random_feeds

    return random_feeds(runtime.inputs, seed=0)


def pooled_median(chunks: list[list[float]]) -> float:
    return float(np.median(np.concatenate(chunks)))
