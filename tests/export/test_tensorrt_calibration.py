"""Implicit int8 calibration for TensorRT, checked without a GPU.

TensorRT-RTX (what builds here) has no implicit calibrators and nothing here has CUDA, so the
calibrator is built on a stand-in for TensorRT's calibrator base class and a fake cuda-python
runtime (host-side bookkeeping of device pointers): the only fakes, where no GPU leaves a choice.
What is real: the kit's data reading, batching, hashing, cache keying and the engine manifest.
The build itself is covered on a GPU by tests/runtimes/test_tensorrt_gpu.py."""

import hashlib
from types import SimpleNamespace

from fake_cuda import FakeCudart
from kit.runtimes.tensorrt.calibrator import _calibrator, calibration_key, reusable_cache

from kit.core import provenance
from kit.core.specs import TensorSpec
from kit.data.calibration import FeedReader, calibration_data


class CalibratorBase:  # stands for tensorrt.IInt8EntropyCalibrator2, which TensorRT-RTX does not have
    def __init__(self):
        pass


FAKE_TRT = SimpleNamespace(IInt8EntropyCalibrator2=CalibratorBase, __name__="tensorrt", __version__="10.3.0")
FIXED_4 = [TensorSpec("input", (4, 1, 8, 8))]


def reader(data, inputs=FIXED_4, limit=None):
    return FeedReader(calibration_data(str(data), inputs), inputs=inputs, batch_size=1, limit=limit)


def test_the_calibrator_feeds_a_fixed_batch_of_4_and_frees_its_buffers(digits):
    """A model exported with --static at batch 4 calibrates from a 300-sample .npz in 75 batches."""
    cudart = FakeCudart()
    calibrator = _calibrator(FAKE_TRT, cudart, reader(digits.calib), cache=None)
    batches = 0
    while calibrator.get_batch(["input"]):
        batches += 1
    assert batches == 75 and cudart.copied == [4 * 1 * 8 * 8 * 4] * 75
    assert len(cudart.live) == 1  # one device buffer, reused for every batch
    assert calibrator.read_calibration_cache() is None  # nothing to reuse: TensorRT calibrates
    calibrator.write_calibration_cache(b"TRT-10.3-EntropyCalibration2")
    assert calibrator.cache == b"TRT-10.3-EntropyCalibration2"  # kept for the engine's atomic write
    calibrator.free()
    assert cudart.live == {}


def test_a_dynamic_batch_calibrates_one_sample_at_a_time(digits):
    cudart = FakeCudart()
    calibrator = _calibrator(FAKE_TRT, cudart, reader(digits.calib, [TensorSpec("input", (-1, 1, 8, 8))]), None)
    assert sum(1 for _ in iter(lambda: calibrator.get_batch(["input"]), None)) == 300


def test_the_cache_key_counts_and_hashes_the_data_first(digits):
    key = calibration_key(FAKE_TRT, digits.onnx, reader(digits.calib))
    assert key["count"] == 300 and key["sha256"] == hashlib.sha256(digits.calib_x.tobytes()).hexdigest()
    assert key["tensorrt"] == "tensorrt 10.3.0" and len(key["source_onnx_sha256"]) == 64
    fewer = calibration_key(FAKE_TRT, digits.onnx, reader(digits.calib, limit=200))
    assert fewer["count"] == 200 and fewer["sha256"] == hashlib.sha256(digits.calib_x[:200].tobytes()).hexdigest()


def manifest_for(key):
    return provenance.new(format="tensorrt-engine", tensorrt_module="tensorrt", tensorrt_version="10.3.0",
                          source_onnx_sha256=key["source_onnx_sha256"],
                          calibration={"count": key["count"], "sha256": key["sha256"]})


def test_a_calibration_cache_is_reused_only_for_its_model_and_data(digits, tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"an engine")  # the manifest describes an engine that exists
    (tmp_path / "m.engine.calib.cache").write_bytes(b"the cache")
    key = calibration_key(FAKE_TRT, digits.onnx, reader(digits.calib))

    notes = []
    assert reusable_cache(engine, key, notes) is None  # a cache nobody vouches for
    assert notes == ["calibrated again: m.engine.calib.cache does not fit this build "
                     "(no manifest beside it says what it was made from); the new engine replaces it."]

    provenance.write_sidecar(engine, manifest_for(key))
    notes = []
    assert reusable_cache(engine, key, notes) == b"the cache"
    assert notes == ["reused m.engine.calib.cache: made from this model and these 300 samples."]

    fewer = calibration_key(FAKE_TRT, digits.onnx, reader(digits.calib, limit=200))
    notes = []
    assert reusable_cache(engine, fewer, notes) is None
    assert notes == ["calibrated again: m.engine.calib.cache does not fit this build (it was made from other data, "
                     "another sample count); the new engine replaces it."]

    other_model = {**key, "source_onnx_sha256": "0" * 64, "tensorrt": "tensorrt 10.4.0"}
    notes = []
    assert reusable_cache(engine, other_model, notes) is None
    assert "it was made from another model, another TensorRT" in notes[0]
