"""The GPU through cuda-python: finding it, describing it, and checking every call's result."""

from __future__ import annotations

from typing import Any

from kit.core.errors import RuntimeUnavailableError


def cuda_runtime():
    """cuda-python's runtime module (its new and old import paths), or None when it is not installed."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python before 12.6
        except ImportError:
            return None
    return cudart


def no_gpu_reason() -> str:
    """Why gpu_description() found nothing, in words for an error message."""
    if cuda_runtime() is None:
        return ("no CUDA GPU is visible (cuda-python, which the kit uses to see it, is not installed: "
                'pip install "edge-inference-kit[tensorrt]"; JetPack does not ship it)')
    return "no CUDA GPU is visible"


def gpu_description() -> dict[str, Any] | None:
    """Name and compute capability of CUDA device 0, or None when there is none."""
    cudart = cuda_runtime()
    if cudart is None:
        return None
    error, count = cudart.cudaGetDeviceCount()
    if int(error) != 0 or count == 0:
        return None
    error, props = cudart.cudaGetDeviceProperties(0)
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return {"gpu": name.strip("\x00"), "compute_capability": f"SM{props.major}{props.minor}"}


def check(result, error_class=RuntimeUnavailableError, doing: str = ""):
    """The value of a cuda-python call, or ``error_class`` with its code. A failure while loading
    or building means the GPU is not usable; while running, the caller passes RunError."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        raise error_class(f"a CUDA call failed{doing} ({error}).", hint="Check the GPU driver and the CUDA runtime.")
    return values[0] if values else None


def elapsed_ms(cudart, start, end) -> float:
    return float(check(cudart.cudaEventElapsedTime(start, end)))
