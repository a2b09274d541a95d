"""What a measurement ran on: every benchmark result carries it.

Reads files and the standard library only; runtime versions come from package metadata,
so describing the environment imports no runtime library.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
from pathlib import Path
from typing import Any

# Distributions whose versions matter to a result (absent ones are left out).
PACKAGES = ("edge-inference-kit", "numpy", "onnxruntime", "onnxruntime-gpu", "onnx", "torch", "ai-edge-litert",
            "tflite-runtime", "tensorrt", "tensorrt-rtx", "openvino", "pytest-benchmark")
# L4T release -> JetPack release (NVIDIA's published pairs), newest first.
JETPACK = [((36, 4), "6.1/6.2"), ((36, 3), "6.0"), ((36, 2), "6.0 DP"), ((35, 6), "5.1.4"), ((35, 5), "5.1.3"),
           ((35, 4), "5.1.2"), ((35, 3), "5.1.1"), ((35, 2), "5.1"), ((35, 1), "5.0.2"), ((32, 7), "4.6.x"),
           ((32, 6), "4.6")]
# The CPU flags that decide which int8 and float kernels run.
INTERESTING_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8",
                     "neon", "asimd", "asimddp", "i8mm", "sve")


def describe(threads: int | None = None) -> dict[str, Any]:
    return {
        "hostname": platform.node(),
        "board": (_read("/proc/device-tree/model") or "").rstrip("\x00") or None,  # Jetson, Raspberry Pi
        "cpu": _cpu(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads_used": threads,
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "packages": _versions(),
        **_jetson(),
    }


def _cpu() -> dict[str, Any]:
    info = {"model": platform.processor() or platform.machine(), "flags": []}
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("model name", "Model", "Hardware") and info["model"] in ("", platform.machine(), None):
            info["model"] = value
        elif key in ("flags", "Features") and not info["flags"]:
            present = set(value.split())
            info["flags"] = [flag for flag in INTERESTING_FLAGS if flag in present]
    frequency = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq")
    if frequency:
        info["max_mhz"] = int(frequency) // 1000
    return info


def _versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _jetson() -> dict[str, Any]:
    """L4T release and power mode on an NVIDIA Jetson, when those files exist."""
    release = _read("/etc/nv_tegra_release")
    if release is None:
        return {}
    info: dict[str, Any] = {"l4t": release.splitlines()[0]}
    match = re.search(r"R(\d+) \(release\), REVISION: (\d+)\.(\d+)", release)
    if match:
        version = (int(match[1]), int(match[2]))
        info["jetpack"] = next((jp for l4t, jp in JETPACK if version >= l4t), "unknown (older than 4.6)")
    power = _read("/var/lib/nvpmodel/status")
    if power:
        info["power_mode"] = power_mode(power, _read("/etc/nvpmodel.conf") or "")
    locked = clocks_locked()
    if locked is not None:
        info["jetson_clocks"] = locked
    return info


def power_mode(status: str, conf: str) -> str:
    """nvpmodel's mode (``pmode:0002`` in its status file) with its name from nvpmodel.conf's
    ``< POWER_MODEL ID=2 NAME=15W >`` lines: ``15W (mode 2)``."""
    match = re.search(r"pmode:\s*(\d+)", status)
    if match is None:
        return status
    number = int(match[1])
    names = {int(i): name for i, name in re.findall(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=([^\s>]+)", conf)}
    return f"{names[number]} (mode {number})" if number in names else f"mode {number}"


def clocks_locked(cpus: str = "/sys/devices/system/cpu") -> bool | None:
    """Whether every online CPU's frequency is pinned (scaling_min_freq equals scaling_max_freq),
    as jetson_clocks leaves them; None where cpufreq is not exposed."""
    pairs = []
    for policy in sorted(Path(cpus).glob("cpu[0-9]*/cpufreq")):
        low, high = _read(str(policy / "scaling_min_freq")), _read(str(policy / "scaling_max_freq"))
        if low and high:
            pairs.append(low == high)
    return all(pairs) if pairs else None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None
