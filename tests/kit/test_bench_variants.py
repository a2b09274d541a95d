"""Runtime targets as benchmark variants (onnxruntime:PROVIDER, openvino:DEVICE) through the real
kit: one table, a target this machine lacks skipped with what it needs, and bad targets refused."""

import json

import pytest
from helpers import run_kit

pytest.importorskip("openvino", reason='needs OpenVINO: pip install "edge-inference-kit[openvino]"')


# The digits fixture's ONNX file is model.onnx.


def test_providers_and_devices_in_one_table(digits):
    ran = run_kit("bench", digits.onnx, "--runtime", "onnxruntime:XNNPACK,onnxruntime:CPU,openvino:CPU",
                  "--data", digits.test, "--max-time", "0.1", "--json")
    assert ran.returncode == 0, ran.stderr
    document = json.loads(ran.stdout)
    rows = {entry["name"]: entry["extra_info"]["kit"] for entry in document["benchmarks"]}
    assert list(rows) == ["model.onnx[onnxruntime:CPU]", "model.onnx[openvino:CPU]"]
    assert rows["model.onnx[onnxruntime:CPU]"]["runtime_info"]["providers"] == ["CPUExecutionProvider"]
    openvino = rows["model.onnx[openvino:CPU]"]
    assert openvino["runtime_info"]["device"] == "CPU" and openvino["runtime_info"]["precision"] == "f32"
    assert openvino["fidelity"][0]["sqnr_db"] > 80  # f32 against ONNX Runtime's f32
    assert openvino["accuracy"]["top1"] == rows["model.onnx[onnxruntime:CPU]"]["accuracy"]["top1"]
    # PyPI's onnxruntime has no XNNPACK provider: a skip that says what it needs, not a failure.
    assert [s["name"] for s in document["kit_skipped"]] == ["model.onnx[onnxruntime:XNNPACK]"]
    assert document["kit_skipped"][0]["reason"].startswith("XnnpackExecutionProvider is not in this ONNX Runtime "
                                                          "build (available: ")
    assert "--use_xnnpack" in document["kit_skipped"][0]["needs"]


def test_the_table_says_what_was_skipped(digits):
    ran = run_kit("bench", digits.onnx, "--runtime", "onnxruntime:CUDA,onnxruntime", "--max-time", "0.1")
    assert ran.returncode == 0, ran.stderr
    assert "model.onnx[onnxruntime] (baseline)" in ran.stdout
    assert ("skipped model.onnx[onnxruntime:CUDA]: CUDAExecutionProvider is not in this ONNX Runtime build "
            "(available: ") in ran.stdout
    assert "It needs pip install onnxruntime-gpu (with CUDA and cuDNN)." in ran.stdout


@pytest.mark.parametrize("runtimes, message", [
    ("onnxruntime:CUDA,openvino:NPU", "no variant can run here (model.onnx[onnxruntime:CUDA]: CUDAExecutionProvider "
                                      "is not in this ONNX Runtime build"),
    ("onnxruntime:FPGA", "expected an ONNX Runtime execution provider among CPU, XNNPACK, CUDA"),
    ("openvino:TPU", "expected an OpenVINO device among CPU, GPU, NPU, AUTO"),
    ("tflite:GPU", "runtime 'tflite' takes no target; found 'tflite:GPU'."),
    ("openvino:", "expected a target after 'openvino:', found none."),
])
def test_bad_targets_are_refused_before_measuring(digits, runtimes, message):
    ran = run_kit("bench", digits.onnx, "--runtime", runtimes, "--max-time", "0.1")
    assert ran.returncode == 2 and message in " ".join(ran.stderr.split()), ran.stderr


def test_other_commands_take_a_target_too(digits):
    ran = run_kit("run", digits.onnx, "--runtime", "openvino:CPU", "--random", "--json")
    assert ran.returncode == 0 and json.loads(ran.stdout)["runtime"]["device"] == "CPU"
    absent = run_kit("run", digits.onnx, "--runtime", "onnxruntime:CUDA", "--random")
    assert absent.returncode == 2 and "execution provider CUDAExecutionProvider is not in this ONNX Runtime build" \
        in " ".join(absent.stderr.split())


def test_streams_drive_every_runtime_concurrently(digits, digits_tflite):
    """--streams 2: a model ONNX Runtime and OpenVINO share between the callers (OpenVINO loaded
    with its throughput hint and two streams), an interpreter per caller for LiteRT; each row's
    rate relates to its own single-stream rate (no machine's absolute numbers)."""
    ran = run_kit("bench", digits.onnx, digits_tflite["fp32"].path, "--runtime", "onnxruntime,openvino,tflite",
                  "--streams", "2", "--max-time", "0.2", "--json")
    assert ran.returncode == 0, ran.stderr
    rows = {entry["name"]: entry["extra_info"]["kit"] for entry in json.loads(ran.stdout)["benchmarks"]}
    assert len(rows) == 4
    for name, row in rows.items():
        found = row["throughput"]
        assert found["streams"] == 2 and found["calls"] >= 2, name
        assert found["shared_model"] is (not name.endswith("[tflite]")), name
        single = 1 / row["latency_s"]["mean"]
        assert found["calls_per_s"] > 0.1 * single, name  # two callers on any machine: not a collapse
        assert found["latency_s"]["p99"] >= found["latency_s"]["median"] > 0
    assert rows["model.onnx[openvino]"]["throughput"]["options"] == {"hint": "throughput", "streams": 2}
    table = run_kit("bench", digits.onnx, "--streams", "2", "--max-time", "0.1")
    assert table.returncode == 0 and "median / p99 under load" in table.stdout


def test_a_failing_stream_stops_the_others_and_is_raised():
    """kit.bench.throughput with a test double: an instance per stream where calls may not share
    one, and a failure in one stream ends the measurement with that error (no hang)."""
    import numpy as np

    from kit.bench.throughput import measure
    from kit.core.errors import RunError
    from kit.runtimes.testing import FunctionRuntime

    made = []

    def make(**options):
        made.append(FunctionRuntime(lambda feeds: {"y": feeds["x"] * 2}, {"x": [1]}, {"y": [1]}).load())
        return made[-1]

    first = make()
    found = measure(first, make, {"x": np.ones(1, np.float32)}, streams=3, seconds=0.05, max_calls=50)
    assert len(made) == 3 and all(runtime.calls > 0 for runtime in made)  # each stream its own instance
    # one warm-up call each outside the window, then the measured calls
    assert found["calls"] + len(made) == sum(runtime.calls for runtime in made) and found["shared_model"] is False
    assert not any(runtime.loaded for runtime in made[1:]) and first.loaded  # the extra ones closed

    def broken(feeds):
        raise RunError("the device went away", hint="")

    failing = FunctionRuntime(broken, {"x": [1]}, {"y": [1]}).load()
    with pytest.raises(RunError, match="the device went away"):
        measure(failing, lambda: failing, {"x": np.ones(1, np.float32)}, streams=2, seconds=60, max_calls=10**6)


def test_the_call_cap_ends_every_stream_and_the_rate_counts_their_time_only():
    """A fast model reaches the cap long before the seconds asked: all streams stop there, and
    the rate is over the time they ran (dividing by the seconds asked reported x0.3 for x1)."""
    import numpy as np

    from kit.bench.throughput import measure
    from kit.runtimes.testing import FunctionRuntime

    def make(**options):
        return FunctionRuntime(lambda feeds: {"y": feeds["x"]}, {"x": [1]}, {"y": [1]}).load()

    found = measure(make(), make, {"x": np.ones(1, np.float32)}, streams=2, seconds=60, max_calls=50)
    assert found["capped"] is True and 50 <= found["calls"] <= 2 * 50
    assert found["calls_per_s"] > 100 * found["calls"] / 60  # over the calls' own time, not the 60 s


def test_a_runtime_that_fails_to_load_leaves_none_loaded():
    import numpy as np

    from kit.bench.throughput import measure
    from kit.core.errors import ModelFileError
    from kit.runtimes.testing import FunctionRuntime

    made = []

    def make(**options):
        if len(made) == 2:
            raise ModelFileError("no memory for a third copy", hint="")
        made.append(FunctionRuntime(lambda feeds: {"y": feeds["x"]}, {"x": [1]}, {"y": [1]}).load())
        return made[-1]

    first = FunctionRuntime(lambda feeds: {"y": feeds["x"]}, {"x": [1]}, {"y": [1]}).load()
    with pytest.raises(ModelFileError, match="no memory for a third copy"):
        measure(first, make, {"x": np.ones(1, np.float32)}, streams=4, seconds=1, max_calls=10)
    assert len(made) == 2 and not any(runtime.loaded for runtime in made) and first.loaded
