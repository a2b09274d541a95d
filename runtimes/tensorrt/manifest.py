"""An engine's manifest (``ENGINE.kit.json``, written by the build): checked on load against the
installed TensorRT and the GPU, since engines only load where they were built. A stale engine
is a clear error, or, when asked, is rebuilt from the ONNX it records (refused when that ONNX
changed since, which would make the rebuild another model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kit.runtimes.tensorrt import cuda

from kit.core import provenance
from kit.core.errors import ModelFileError
from kit.core.fileio import sha256_of


def stale_reasons(manifest: dict[str, Any], trt, gpu: dict[str, Any] | None) -> list[str]:
    """Why an engine with this manifest will not load here: another TensorRT, or another GPU
    than ``gpu`` (cuda.gpu_description(); None: no GPU to compare with). Empty when it loads."""
    reasons = []
    if manifest.get("tensorrt_version") != trt.__version__ or manifest.get("tensorrt_module") != trt.__name__:
        reasons.append(f"built with {manifest.get('tensorrt_module')} {manifest.get('tensorrt_version')}, this "
                       f"machine has {trt.__name__} {trt.__version__}")
    wanted = (manifest.get("target") or {}).get("compute_capability")
    if gpu is not None and wanted and gpu["compute_capability"] != wanted:
        reasons.append(f"built for {wanted}, this GPU is {gpu['gpu']} ({gpu['compute_capability']})")
    return reasons


def check_manifest(engine: str, trt, *, rebuild: bool = False) -> dict[str, Any]:
    """The engine's manifest, checked against the installed TensorRT and GPU (or rebuilt when stale)."""
    manifest = provenance.read(engine)
    if not manifest or manifest.get("format") != "tensorrt-engine":
        raise ModelFileError(f"{engine} has no kit manifest ({Path(engine).name}.kit.json), so its TensorRT version "
                             "and GPU are unknown.", hint="Build it with kit build, which writes the manifest.")
    gpu = cuda.gpu_description()
    problems = stale_reasons(manifest, trt, gpu)
    wanted = manifest["target"].get("compute_capability")
    if not problems:
        return manifest
    if not rebuild:
        raise ModelFileError(f"{engine} is stale: {'; '.join(problems)}. TensorRT engines only load where they were "
                             "built.", hint=f"Rebuild: kit build {manifest['source_onnx']} --runtime tensorrt -o {engine} "
                                            "(or pass --rebuild-if-stale).")
    source = manifest["source_onnx"]
    if not Path(source).is_file():
        raise ModelFileError(f"{engine} is stale ({'; '.join(problems)}) and its ONNX source {source} is gone.",
                             hint="Rebuild from the ONNX model with kit build.")
    if sha256_of(source) != manifest["source_onnx_sha256"]:
        raise ModelFileError(f"{engine} is stale ({'; '.join(problems)}), and {source} changed since the engine was "
                             "built, so a rebuild would not be the same model.",
                             hint=f"Rebuild deliberately: kit build {source} --runtime tensorrt -o {engine}")
    shapes = manifest.get("profile") or {}
    calibration = manifest.get("calibration") or {}
    from kit.runtimes.tensorrt.build import build_engine  # only when rebuilding

    build_engine(source, engine, precision=manifest["precision"], workspace_mb=manifest.get("workspace_mb"),
                 dla_core=manifest.get("dla_core"), calib=calibration.get("source"),
                 min_shapes=[f"{n}={'x'.join(map(str, s['min']))}" for n, s in shapes.items()],
                 opt_shapes=[f"{n}={'x'.join(map(str, s['opt']))}" for n, s in shapes.items()],
                 max_shapes=[f"{n}={'x'.join(map(str, s['max']))}" for n, s in shapes.items()],
                 compute_capability=None if gpu else wanted)
    return provenance.read(engine)
