"""INT8 (static QDQ) against FP32 on ONNX Runtime's CPU provider, on a MobileNet-style net.

Run: python -m pytest benchmarks/test_int8_speed.py --benchmark-group-by=group
The last test reads the medians this run measured and asserts INT8 is clearly faster:
a ratio from one run on one machine, never an absolute time.
"""

import warnings

import numpy as np
import pytest

import kit

MEDIANS: dict[str, float] = {}
GROUP = "INT8 QDQ vs FP32, ONNX Runtime CPU, MobileNet-style 3x64x64, 1 thread"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from kit.errors import KitWarning
    from kit.export import export_onnx
    from kit.export.quantize import quantize
    from kit.models import make_mobilenet_style

    folder = tmp_path_factory.mktemp("int8-speed")
    fp32 = folder / "fp32.onnx"
    export_onnx(make_mobilenet_style(3, 10, 32).eval(), fp32, input_shapes="1x3x64x64")
    paths = {"fp32": fp32}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KitWarning)  # synthetic calibration: speed does not depend on ranges
        for target in ("avx2", "auto"):
            paths[f"int8-{target}"] = quantize(fp32, folder / f"int8-{target}.onnx", calib="random:32",
                                               target=target).path
    return paths


@pytest.fixture(scope="module")
def feeds():
    return {"x": np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)}


@pytest.mark.parametrize("variant", ["fp32", "int8-avx2", "int8-auto"])
def test_latency(benchmark, models, feeds, variant):
    benchmark.group = GROUP
    with kit.load(models[variant], threads=1, optimization="all") as rt:
        rt.run(feeds)  # warm-up outside the timing
        benchmark(rt.run, feeds)
    if benchmark.stats is not None:  # None under --benchmark-disable
        MEDIANS[variant] = benchmark.stats.stats.median


def test_int8_is_clearly_faster_than_fp32():
    if len(MEDIANS) < 3:
        pytest.skip("needs the latency benchmarks of this run (run benchmarks/ with benchmarking enabled)")
    for variant in ("int8-avx2", "int8-auto"):
        ratio = MEDIANS[variant] / MEDIANS["fp32"]
        print(f"{variant} / fp32 median latency: {ratio:.2f}")
        assert ratio < 0.9, f"{variant} is not clearly faster than fp32: ratio {ratio:.2f}"
