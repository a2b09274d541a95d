"""The TensorRT runtime's lifecycle and errors, checked without a GPU.

An engine only deserializes and runs on an NVIDIA GPU, so this file stands in for TensorRT's
engine and execution context and for cuda-python (tests/fake_cuda.py tracks every device
buffer, stream and event). These are the only fakes, where no GPU leaves a choice; what is
real is the kit's manifest check, feed check, buffer management and error handling. The same
paths on a real GPU: tests/runtimes/test_tensorrt_gpu.py (marked gpu)."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from fake_cuda import FakeCudart

import kit
from kit.core.errors import RunError, RuntimeUnavailableError


class FakeContext:
    def __init__(self, executes: bool):
        self.executes = executes
        self.shapes: dict[str, tuple] = {}

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        return self.shapes["input"] if name == "input" else (self.shapes["input"][0], 2)

    def set_tensor_address(self, name, pointer):
        pass

    def execute_async_v3(self, stream):
        return self.executes


class FakeEngine:
    """y = some function of x, x float32[batch, 3] -> float32[batch, 2] (values are not checked)."""

    num_io_tensors = 2

    def __init__(self, executes: bool):
        self.executes = executes

    def get_tensor_name(self, index):
        return ("input", "output")[index]

    def get_tensor_shape(self, name):
        return (-1, 3) if name == "input" else (-1, 2)

    def get_tensor_dtype(self, name):
        return "float32"

    def get_tensor_mode(self, name):
        return "INPUT" if name == "input" else "OUTPUT"

    def create_execution_context(self):
        return FakeContext(self.executes)


def fake_tensorrt(executes: bool = True):
    class Logger:
        WARNING = 2

        def __init__(self, severity):
            pass

    engine = FakeEngine(executes)
    return SimpleNamespace(__name__="tensorrt", __version__="10.3.0", Logger=Logger,
                           Runtime=lambda logger: SimpleNamespace(deserialize_cuda_engine=lambda data: engine),
                           nptype=np.dtype, TensorIOMode=SimpleNamespace(INPUT="INPUT"))


@pytest.fixture
def gpu(monkeypatch, tmp_path):
    """An engine file with its manifest, and a machine that seems to have TensorRT 10.3 on an SM87 GPU."""
    from kit.runtimes.tensorrt import cuda, modules

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"an engine")
    (tmp_path / "m.engine.kit.json").write_text(json.dumps({
        "format": "tensorrt-engine", "tensorrt_module": "tensorrt", "tensorrt_version": "10.3.0", "precision": "fp32",
        "target": {"gpu": "Orin", "compute_capability": "SM87", "ahead_of_time": False}}))
    state = SimpleNamespace(engine=engine, cudart=FakeCudart(), trt=fake_tensorrt())
    monkeypatch.setattr(modules, "find_module", lambda: state.trt)
    monkeypatch.setattr(cuda, "gpu_description", lambda: {"gpu": "Orin", "compute_capability": "SM87"})
    monkeypatch.setattr(cuda, "cuda_runtime", lambda: state.cudart)
    return state


def test_runs_reallocate_larger_buffers_and_close_frees_everything(gpu):
    with kit.load(gpu.engine, runtime="tensorrt") as engine:
        assert engine.run({"input": np.ones((2, 3), np.float32)})["output"].shape == (2, 2)
        assert engine.run({"input": np.ones((5, 3), np.float32)})["output"].shape == (5, 2)  # larger: new buffers
        assert engine.run({"input": np.ones((1, 3), np.float32)})["output"].shape == (1, 2)  # smaller: reused
        assert sorted(gpu.cudart.live.values()) == ["buffer", "buffer"] + ["event"] * 4 + ["stream"]
        assert set(engine.stage_ms) == {"h2d_ms", "compute_ms", "d2h_ms"}
    assert gpu.cudart.live == {}


@pytest.mark.parametrize("failing_call", [{"cudaEventCreate": 3}, {"cudaStreamCreate": 1}])
def test_a_failed_load_frees_what_it_took(gpu, failing_call):
    gpu.cudart.fail_on = failing_call
    with pytest.raises(RuntimeUnavailableError, match="CUDA call failed"):
        kit.load(gpu.engine, runtime="tensorrt")
    assert gpu.cudart.live == {}  # the stream and the events created before the failure are gone


def test_an_execution_failure_is_a_run_error(gpu):
    gpu.trt = fake_tensorrt(executes=False)
    engine = kit.load(gpu.engine, runtime="tensorrt")
    with pytest.raises(RunError, match=r"TensorRT failed to execute .*m.engine on inputs input\[2, 3\]"):
        engine.run({"input": np.ones((2, 3), np.float32)})
    engine.close()
    assert gpu.cudart.live == {}


def test_a_cuda_failure_while_running_is_a_run_error(gpu):
    gpu.cudart.fail_on = {"cudaStreamSynchronize": 1}
    with kit.load(gpu.engine, runtime="tensorrt") as engine:
        with pytest.raises(RunError, match="CUDA call failed"):
            engine.run({"input": np.ones((2, 3), np.float32)})
    assert gpu.cudart.live == {}
