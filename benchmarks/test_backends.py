"""Every backend on the same model, each in its own process, through `kit bench` itself."""


def test_every_backend_on_the_same_conv_net(millisecond_cnn):
    from kit.bench.driver import bench
    # The factory builds the same architecture (untrained weights do not change the speed).
    report = bench(["kit.models:make_mobilenet_style", str(millisecond_cnn)], threads=1, max_time=1.0,
                   options={"input_shapes": "1x3x64x64"})
    medians = {row["runtime"]: row["latency_s"]["median"] for row in report.rows()}
    print(f"median latency on one thread: {', '.join(f'{k} {v * 1e3:.3f} ms' for k, v in medians.items())}; "
          f"onnxruntime / torch = {medians['onnxruntime'] / medians['torch']:.2f}")
    assert medians["onnxruntime"] < medians["torch"]  # measured 0.13x: a graph runtime beats eager PyTorch
