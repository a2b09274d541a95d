"""Every backend on the same model, each in its own process, through `kit bench` itself."""

import pytest


@pytest.mark.parametrize("width", [16])
def test_every_backend_on_the_same_conv_net(tmp_path, width):
    from kit.bench import bench
    from kit.export import export_onnx
    from kit.models import make_mobilenet_style
    from kit.runtimes.registry import get

    factory = "kit.models:make_mobilenet_style"
    onnx_path = tmp_path / "mobilenet.onnx"
    export_onnx(make_mobilenet_style(3, 10, width).eval(), onnx_path, input_shapes="1x3x64x64")
    if not get("torch").availability().usable:
        pytest.skip("torch is not installed")
    report = bench([factory, str(onnx_path)], threads=1, max_time=1.0, options={"input_shapes": "1x3x64x64"})
    medians = {row["runtime"]: row["latency_s"]["median"] for row in report.rows()}
    print(f"median latency on one thread: {', '.join(f'{k} {v * 1e3:.3f} ms' for k, v in medians.items())}; "
          f"onnxruntime / torch = {medians['onnxruntime'] / medians['torch']:.2f}")
    # Different weights (the factory is untrained and seeded differently) do not change the speed.
    assert set(medians) == {"torch", "onnxruntime"}
