"""How int8 is laid out for each kind of hardware (Optimum-style presets), picked for this
machine by detect_target(), and the recipe of one quantization, recorded verbatim in the
result's provenance so a later stage or the device knows exactly what was done."""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PRECISIONS = ("int8", "int8-dynamic", "fp16")


METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class QuantPreset:
    """How int8 is laid out for one kind of hardware (Optimum-style hardware presets)."""

    name: str
    activation_type: str  # "uint8" or "int8"
    reduce_range: bool = False
    activation_symmetric: bool = False
    weight_symmetric: bool = True
    quantize_bias: bool = True
    op_types: tuple[str, ...] | None = None  # quantize only these ops' inputs (None: every op ORT can)
    why: str = ""

    def extra_options(self) -> dict[str, Any]:
        return {"ActivationSymmetric": self.activation_symmetric, "WeightSymmetric": self.weight_symmetric,
                "QuantizeBias": self.quantize_bias}


PRESETS = {
    "avx2": QuantPreset("avx2", "uint8", reduce_range=True,
                        why="x86-64 without VNNI: U8S8 kernels saturate, so weights use 7 bits"),
    "vnni": QuantPreset("vnni", "uint8", why="x86-64 with AVX-512 VNNI or AVX-VNNI: full-range U8S8"),
    "arm64": QuantPreset("arm64", "int8", why="ARM64: S8S8, ONNX Runtime's default QDQ layout"),
    # NVIDIA's Q/DQ placement: quantize the inputs of weighted layers and let TensorRT propagate
    # and fuse the rest. Q/DQ on element-wise ops with constants (a detector's decoding: x stride)
    # makes TensorRT-RTX refuse the graph ("Quantized constant ... only allowed before DQ").
    "tensorrt": QuantPreset("tensorrt", "int8", activation_symmetric=True, quantize_bias=False,
                            op_types=("Conv", "ConvTranspose", "Gemm", "MatMul"),
                            why="TensorRT: symmetric int8 on weighted layers' inputs, float bias (it rejects "
                                "int32 bias)"),
}


def detect_target() -> str:
    """The preset for this machine: arm64, vnni when the CPU has VNNI, else avx2."""
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "arm64"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    return "vnni" if ("avx512_vnni" in flags or "avx_vnni" in flags) else "avx2"


@dataclass(frozen=True)
class Recipe:
    """Everything that decided how one model was quantized, recorded verbatim in its provenance
    (the preset with every setting, not only its name: presets may change between versions)."""

    precision: str
    preset: QuantPreset | None = None  # None for fp16
    method: str | None = None  # how static int8 chose its ranges
    per_channel: bool | None = None
    excluded: tuple[str, ...] = ()  # nodes kept in float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
