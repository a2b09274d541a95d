"""How much of this machine's single-precision matrix-multiply rate the best FP32 backend reaches
on a conv net: numpy's SGEMM on the same single core, in the same run, is the yardstick.
The backends measured here are ONNX Runtime and PyTorch eager, each on one thread.

The conv net's work is counted from its ONNX graph (2 FLOPs per multiply-accumulate of
every Conv and Gemm/MatMul).
"""

import numpy as np
import pytest
from conftest import image_feeds

import kit

MEASURED: dict[str, float] = {}
SIZE = 512


def count_flops(path) -> int:
    import onnx
    from onnx import numpy_helper, shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = {v.name: [d.dim_value or 1 for d in v.type.tensor_type.shape.dim]
              for v in [*model.graph.value_info, *model.graph.input, *model.graph.output]}
    weights = {t.name: numpy_helper.to_array(t).shape for t in model.graph.initializer}
    flops = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            out = shapes[node.output[0]]  # N, Cout, H, W
            cout, cin_per_group, kh, kw = weights[node.input[1]]
            flops += 2 * int(np.prod(out)) * cin_per_group * kh * kw
        elif node.op_type in ("Gemm", "MatMul"):
            k, n = weights[node.input[1]] if node.input[1] in weights else shapes[node.input[1]][-2:]
            rows = int(np.prod(shapes[node.input[0]][:-1]))
            flops += 2 * rows * k * n
    return flops


def test_numpy_sgemm_rate(benchmark):
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).standard_normal((SIZE, SIZE)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((SIZE, SIZE)).astype(np.float32)
    benchmark.group = "machine fraction"
    with threadpool_limits(1):
        benchmark(np.matmul, a, b)
    if benchmark.stats is not None:
        MEASURED["sgemm_flops_per_s"] = 2 * SIZE ** 3 / benchmark.stats.stats.median


@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
def test_fp32_backend_on_a_conv_net(benchmark, millisecond_cnn, runtime):
    benchmark.group = "machine fraction"
    model = str(millisecond_cnn) if runtime == "onnxruntime" else "kit.models:make_mobilenet_style"
    options = {"input_shapes": "1x3x64x64"} if runtime == "torch" else {}
    with kit.load(model, runtime, threads=1, **options) as loaded:
        feeds = image_feeds(loaded)
        benchmark(loaded.run, feeds)
    if benchmark.stats is not None:
        MEASURED[runtime] = count_flops(millisecond_cnn) / benchmark.stats.stats.median


def test_fraction_of_the_machine():
    if len(MEASURED) < 3:
        pytest.skip("needs this run's timings (benchmarking enabled)")
    best = max(("onnxruntime", "torch"), key=MEASURED.get)
    fraction = MEASURED[best] / MEASURED["sgemm_flops_per_s"]
    print(f"numpy SGEMM {MEASURED['sgemm_flops_per_s'] / 1e9:.1f} GFLOP/s on one thread; on the conv net "
          f"onnxruntime {MEASURED['onnxruntime'] / 1e9:.1f}, torch {MEASURED['torch'] / 1e9:.1f} GFLOP/s; the best, "
          f"{best}, reaches {fraction:.0%} of the machine's rate")
    assert 0 < fraction < 2  # a counting or timing error shows up as an impossible fraction
