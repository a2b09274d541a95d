"""Implicit INT8 calibration (a float model on a TensorRT that still has calibrators: deprecated
in 10.1, removed in 11, absent from TensorRT-RTX): the kit's calibration data fed through
IInt8EntropyCalibrator2, and a calibration cache beside the engine that a rebuild reuses only
when the model, the data and the TensorRT version are the ones it was made from."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from kit.runtimes.tensorrt import cuda

from kit.core import provenance
from kit.core.errors import RuntimeUnavailableError
from kit.core.fileio import sha256_of

CALIBRATION_CACHE = ".calib.cache"  # beside the engine, as its manifest (.kit.json) and build log (.build.log)


def attach_calibrator(trt, builder, config, network, model: Path, calib, output: Path, profile_shapes,
                       notes: list[str]):
    """Implicit int8 (TensorRT before 11): an entropy calibrator over the kit's data, with the
    calibration cache beside the engine reused when it was made from this model and this data."""
    from kit.core.specs import TensorSpec
    from kit.data.calibration import FeedReader, calibration_data

    cudart = cuda.cuda_runtime()
    if cudart is None or cuda.gpu_description() is None:
        raise RuntimeUnavailableError(f"implicit int8 calibration runs the model on the GPU: {cuda.no_gpu_reason()}.",
                                      hint="Calibrate on the device, or quantize explicitly: kit quantize --target "
                                           "tensorrt, then --precision int8.")
    inputs = []
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        dims = tuple(d if d >= 0 else "batch" for d in tensor.shape)
        inputs.append(TensorSpec(tensor.name, dims, "float32"))
    data = calibration_data(calib, inputs, provenance.read(model).get("preprocess"))
    # A dynamic network calibrates at batch 1 (its calibration profile); a fixed batch axis at its size.
    key = calibration_key(trt, model, FeedReader(data, inputs=inputs, batch_size=1))
    cache = reusable_cache(output, key, notes)
    calibrator = _calibrator(trt, cudart, FeedReader(data, inputs=inputs, batch_size=1), cache)
    config.set_flag(trt.BuilderFlag.INT8)
    config.int8_calibrator = calibrator
    if profile_shapes:  # a dynamic network calibrates at one fixed shape: batch 1
        profile = builder.create_optimization_profile()
        for name, shapes in profile_shapes.items():
            profile.set_shape(name, shapes["min"], shapes["min"], shapes["min"])
        config.set_calibration_profile(profile)
    source = str(calib) if isinstance(calib, (str, os.PathLike)) else data.description
    return {"method": "entropy (IInt8EntropyCalibrator2)", "cache": str(output) + CALIBRATION_CACHE,
            "source": source, "count": key["count"], "sha256": key["sha256"]}, calibrator


def calibration_key(trt, model: Path, reader) -> dict[str, Any]:
    """What a calibration cache depends on: the model, every calibration array (their SHA-256 and
    count, from one pass of ``reader`` before TensorRT asks for the cache) and TensorRT's version."""
    for _ in reader:
        pass
    return {"source_onnx_sha256": sha256_of(model), "sha256": reader.sha256(), "count": reader.count,
            "tensorrt": f"{trt.__name__} {trt.__version__}"}


def reusable_cache(output: Path, key: dict[str, Any], notes: list[str]) -> bytes | None:
    """The calibration cache beside the engine, when the engine's manifest (written with it) says it
    was made from what ``key`` describes; None (calibrate again, the new engine replaces it) otherwise."""
    path = output.with_name(output.name + CALIBRATION_CACHE)
    if not path.is_file():
        return None
    manifest = provenance.read(output) or {}
    calibration = manifest.get("calibration") or {}
    recorded = {"source_onnx_sha256": manifest.get("source_onnx_sha256"), "sha256": calibration.get("sha256"),
                "count": calibration.get("count"),
                "tensorrt": f"{manifest.get('tensorrt_module')} {manifest.get('tensorrt_version')}"}
    differs = [what for field, what in (("source_onnx_sha256", "another model"), ("sha256", "other data"),
                                        ("count", "another sample count"), ("tensorrt", "another TensorRT"))
               if recorded[field] != key[field]]
    if differs:
        why = ("no manifest beside it says what it was made from" if not calibration
               else "it was made from " + ", ".join(differs))
        notes.append(f"calibrated again: {path.name} does not fit this build ({why}); the new engine replaces it.")
        return None
    notes.append(f"reused {path.name}: made from this model and these {key['count']} samples.")
    return path.read_bytes()


def _calibrator(trt, cudart, reader, cache: bytes | None):
    """TensorRT's entropy calibrator over a FeedReader. ``cache`` is what read_calibration_cache gives
    TensorRT (it then skips calibration); what TensorRT writes is kept in ``.cache`` for the caller to
    write with the engine. ``free()`` releases the device buffers."""

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.device: dict[str, int] = {}
            self.cache = cache

        def get_batch_size(self):
            return 1  # explicit-batch networks: the buffers hold the whole input shape

        def get_batch(self, names):
            feeds = reader.get_next()
            if feeds is None:
                return None
            pointers = []
            for name in names:
                array = np.ascontiguousarray(feeds[name], dtype=np.float32)
                if name not in self.device:
                    self.device[name] = _cuda_during_calibration(cudart.cudaMalloc(array.nbytes))
                _cuda_during_calibration(cudart.cudaMemcpy(self.device[name], array.ctypes.data, array.nbytes,
                                        cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
                pointers.append(self.device[name])
            return pointers

        def read_calibration_cache(self):
            return self.cache

        def write_calibration_cache(self, written):
            self.cache = bytes(written)

        def free(self):
            for pointer in self.device.values():
                cudart.cudaFree(pointer)
            self.device.clear()

    return Calibrator()


def _cuda_during_calibration(result):
    return cuda.check(result, doing=" during calibration")
