"""Which TensorRT Python module is installed: the standard ``tensorrt`` (JetPack's on a Jetson,
NVIDIA's wheels on an x86 GPU machine) first, since it can also run engines, then TensorRT-RTX
(``tensorrt_rtx`` from PyPI, which builds ahead of time without a GPU)."""

from __future__ import annotations

import importlib

from kit.core.errors import RuntimeUnavailableError

MODULES = ("tensorrt", "tensorrt_rtx")
INSTALL = ("on a Jetson, TensorRT comes with JetPack (apt install python3-libnvinfer; JetPack 6.x ships 10.3); on "
           "an x86 GPU machine: pip install tensorrt cuda-python; engines also need an NVIDIA GPU and its driver")


def find_module():
    """The first TensorRT module that imports, or None."""
    for name in MODULES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def tensorrt_module():
    """The TensorRT module installed here, or a clear error."""
    module = find_module()
    if module is None:
        raise RuntimeUnavailableError(
            "TensorRT is not installed.",
            hint="On a Jetson, TensorRT comes with JetPack (apt install python3-libnvinfer; JetPack 6.x ships 10.3), "
                 "not from pip; on an x86 GPU machine: pip install tensorrt; to build engines ahead of time without "
                 "a GPU: pip install tensorrt-rtx.")
    return module
