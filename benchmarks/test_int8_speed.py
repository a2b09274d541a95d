"""INT8 (static QDQ) against FP32 on ONNX Runtime's CPU provider, on a MobileNet-style net.

The three variants share one process and alternate chunk by chunk, so drift on a shared
machine hits all of them; the last test asserts INT8 is clearly faster from the pooled
medians of this run: a ratio from one run on one machine, never an absolute time.
"""

import warnings

import pytest
from conftest import image_feeds, pooled_median

import kit

VARIANTS = ("fp32", "int8-avx2", "int8-auto")
CHUNKS = 5
TIMINGS: dict[str, list[list[float]]] = {}
GROUP = "INT8 QDQ vs FP32, ONNX Runtime CPU, MobileNet-style 3x64x64, 1 thread"


@pytest.fixture(scope="module")
def runtimes(tmp_path_factory, millisecond_cnn):
    from kit.export.quantize import quantize

    from kit.core.errors import KitWarning

    folder = tmp_path_factory.mktemp("int8-speed")
    paths = {"fp32": millisecond_cnn}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KitWarning)  # synthetic calibration: speed does not depend on the ranges
        for target in ("avx2", "auto"):
            paths[f"int8-{target}"] = quantize(millisecond_cnn, folder / f"int8-{target}.onnx", calib="random:32",
                                               target=target).path
    opened = {name: kit.load(path, threads=1, optimization="all") for name, path in paths.items()}
    yield opened
    for runtime in opened.values():
        runtime.close()


@pytest.mark.parametrize("chunk, variant", [(c, v) for c in range(CHUNKS) for v in VARIANTS])
def test_latency(benchmark, runtimes, chunk, variant):
    runtime = runtimes[variant]
    feeds = image_feeds(runtime)
    benchmark.group = GROUP
    benchmark.pedantic(runtime.run, args=(feeds,), rounds=150, warmup_rounds=5)
    if benchmark.stats is not None:
        TIMINGS.setdefault(variant, []).append(list(benchmark.stats.stats.data))


def test_int8_is_clearly_faster_than_fp32():
    if len(TIMINGS) < len(VARIANTS):
        pytest.skip("needs this run's timings (benchmarking enabled)")
    fp32 = pooled_median(TIMINGS["fp32"])
    for variant in VARIANTS[1:]:
        ratio = pooled_median(TIMINGS[variant]) / fp32
        print(f"{variant} / fp32 median latency: {ratio:.2f} (fp32 {fp32 * 1e3:.3f} ms)")
        assert ratio < 0.9, f"{variant} is not clearly faster than fp32: ratio {ratio:.2f}"
