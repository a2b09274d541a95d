"""How much the kit's Runtime.run adds over the raw ONNX Runtime call (same model, same process).

Run: pytest benchmarks/ --benchmark-group-by=group
Read the ratio of the two means within one run; absolute numbers depend on the machine.
"""

import numpy as np
import pytest

import kit


@pytest.fixture(scope="module")
def small_cnn(tmp_path_factory):
    """A conv net that takes about a millisecond per image on one core."""
    import torch
    from torch import nn

    from kit.export import export_onnx
    
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10)).eval()
    path = tmp_path_factory.mktemp("bench") / "small_cnn.onnx"
    export_onnx(model, path, input_shapes="1x3x64x64")
    return path


@pytest.fixture(scope="module")
def runtime(small_cnn):
    with kit.load(small_cnn, threads=1) as rt:
        yield rt


@pytest.fixture(scope="module")
def feeds():
    return {"input": np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)}


@pytest.mark.benchmark(group="overhead: Runtime.run vs raw session.run")
def test_raw_session_run(benchmark, runtime, feeds):
    session = runtime._session  # the raw ONNX Runtime call, for comparison only
    benchmark(session.run, None, feeds)


@pytest.mark.benchmark(group="overhead: Runtime.run vs raw session.run")
def test_kit_runtime_run(benchmark, runtime, feeds):
    benchmark(runtime.run, feeds)
