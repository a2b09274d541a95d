"""TensorRT backend (NVIDIA GPUs, Jetson): an engine built by ``kit build``, run with
execute_async_v3 on a CUDA stream through cuda-python.

Before touching the GPU, the engine's manifest is checked against the installed TensorRT
and the GPU: an engine built for another TensorRT version or GPU gets a clear error that
says to rebuild, or is rebuilt from the recorded ONNX with ``rebuild_if_stale=True``.
Device buffers are allocated once per input shape. ``stage_ms`` holds the last call's
host-to-device, compute and device-to-host times measured with CUDA events (trtexec's
split). Verified only on the CPU side here (no GPU); the GPU path is covered by tests
marked ``gpu``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from kit.runtimes.base import Availability, Runtime
from kit.runtimes.tensorrt import cuda, modules
from kit.runtimes.tensorrt.manifest import check_manifest
from kit.runtimes.tensorrt.modules import INSTALL

from kit.core.errors import InputError, ModelFileError, RunError, RuntimeUnavailableError
from kit.core.specs import TensorSpec


class TensorRTRuntime(Runtime):
    """Options: ``rebuild_if_stale`` (rebuild from the recorded ONNX when TensorRT or the GPU changed)."""

    name = "tensorrt"
    priority = 100
    suffixes = (".engine", ".plan")
    extra = "tensorrt"
    install_hint = INSTALL
    accepted_options = ("rebuild_if_stale",)

    @classmethod
    def availability(cls) -> Availability:

        module = modules.find_module()
        if module is None:
            return Availability(False, None, "no tensorrt or tensorrt_rtx module", INSTALL)
        gpu = cuda.gpu_description()
        if gpu is None:
            return Availability(False, module.__version__, f"{module.__name__} {module.__version__} is installed but "
                                f"{cuda.no_gpu_reason()}: it can build engines ahead of time (kit build), not run them",
                                INSTALL)
        return Availability(True, module.__version__, f"{module.__name__} on {gpu['gpu']} ({gpu['compute_capability']})")

    @classmethod
    def version(cls) -> str | None:
        module = modules.find_module()
        return module.__version__ if module else None

    def require(self) -> None:
        if modules.find_module() is None:
            raise RuntimeUnavailableError("runtime 'tensorrt' is not usable here (TensorRT is not installed).",
                                          hint=f"To fix it, {INSTALL}.")

    def _load(self):
        trt = modules.find_module()
        manifest = check_manifest(self.model_path, trt, rebuild=bool(self.options.get("rebuild_if_stale")))

        if cuda.gpu_description() is None:
            raise RuntimeUnavailableError(f"{cuda.no_gpu_reason()}; TensorRT engines run only on the GPU they were "
                                          "built for.", hint="Run on the Jetson or GPU machine, or use the ONNX model "
                                                             "with --runtime onnxruntime here.")
        self._cudart = cuda.cuda_runtime()
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
        self._events: list = []
        self._stream = None
        try:
            inputs, outputs = self._open_engine(trt)
            self._stream = cuda.check(self._cudart.cudaStreamCreate())
            for _ in range(4):
                self._events.append(cuda.check(self._cudart.cudaEventCreate()))
        except BaseException:
            self._close()  # the base class calls _close only for a loaded runtime: free what this one took
            raise
        self._manifest = manifest
        return inputs, outputs

    def _open_engine(self, trt):
        self._engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(
            Path(self.model_path).read_bytes())
        if self._engine is None:
            raise ModelFileError(f"TensorRT could not deserialize {self.model_path}.",
                                 hint="Rebuild it with kit build on this device.")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs, outputs = [], []
        for name in names:
            shape = tuple(d if d >= 0 else ("batch" if i == 0 else f"dim{i}")
                          for i, d in enumerate(self._engine.get_tensor_shape(name)))
            spec = TensorSpec(name, shape, np.dtype(trt.nptype(self._engine.get_tensor_dtype(name))).name)
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (inputs if is_input else outputs).append(spec)
        return inputs, outputs

    def _run(self, feeds):
        cudart = self._cudart
        for spec in self._inputs:
            if not self._context.set_input_shape(spec.name, feeds[spec.name].shape):
                low, _, high = self._engine.get_tensor_profile_shape(spec.name, 0)
                raise InputError(f"input {spec.name!r} of shape {list(feeds[spec.name].shape)} is outside the engine's "
                                 f"optimization profile (min {list(low)}, max {list(high)}).",
                                 hint="Rebuild with kit build --max-shape/--min-shape covering it.")
        results = {spec.name: np.empty(tuple(self._context.get_tensor_shape(spec.name)), spec.dtype)
                   for spec in self._outputs}
        start, copied_in, computed, copied_out = self._events
        cudart.cudaEventRecord(start, self._stream)
        staged = {name: np.ascontiguousarray(array) for name, array in feeds.items()}  # alive until synchronized
        for name, array in staged.items():
            pointer = self._buffer(name, array.nbytes)
            cudart.cudaMemcpyAsync(pointer, array.ctypes.data, array.nbytes,
                                   cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream)
            self._context.set_tensor_address(name, pointer)
        for name, array in results.items():
            self._context.set_tensor_address(name, self._buffer(name, array.nbytes))
        cudart.cudaEventRecord(copied_in, self._stream)
        if not self._context.execute_async_v3(self._stream):
            cudart.cudaStreamSynchronize(self._stream)  # the copies queued before read ``staged``: let them end
            raise RunError(f"TensorRT failed to execute {self.model_path} on inputs "
                           f"{', '.join(f'{k}{list(v.shape)}' for k, v in feeds.items())}.",
                           hint="TensorRT's log above names the cause; check the inputs and the GPU's free memory.")
        cudart.cudaEventRecord(computed, self._stream)
        for name, array in results.items():
            cudart.cudaMemcpyAsync(array.ctypes.data, self._buffers[name][0], array.nbytes,
                                   cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream)
        cudart.cudaEventRecord(copied_out, self._stream)
        cuda.check(cudart.cudaStreamSynchronize(self._stream), RunError)
        self.stage_ms = {"h2d_ms": cuda.elapsed_ms(cudart, start, copied_in), "compute_ms": cuda.elapsed_ms(cudart, copied_in,
                             computed), "d2h_ms": cuda.elapsed_ms(cudart, computed, copied_out)}
        return results

    def _buffer(self, name: str, size: int) -> int:
        """A device buffer per tensor, reallocated only when a larger shape arrives."""
        pointer, capacity = self._buffers.get(name, (0, 0))
        if size > capacity:
            if pointer:
                self._cudart.cudaFree(self._buffers.pop(name)[0])
            pointer = cuda.check(self._cudart.cudaMalloc(size), RunError)
            self._buffers[name] = (pointer, size)
        return pointer

    def _close(self):
        for pointer, _ in self._buffers.values():
            self._cudart.cudaFree(pointer)
        for event in self._events:
            self._cudart.cudaEventDestroy(event)
        if self._stream is not None:
            self._cudart.cudaStreamDestroy(self._stream)
        self._buffers, self._events, self._stream, self._context, self._engine = {}, [], None, None, None

    def _info(self) -> dict[str, Any]:
        return {"device": self._manifest["target"], "precision": self._manifest["precision"],
                "tensorrt_module": modules.find_module().__name__}








