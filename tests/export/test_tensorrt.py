"""TensorRT engines, verified without a GPU: TensorRT-RTX parses and builds every model the
kit exports and quantizes, ahead of time for an RTX 30xx (SM86). Running engines needs a GPU:
those tests are marked ``gpu`` and skip here."""

import json
import shutil

import pytest
from helpers import files_in

trt = pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX (pip install tensorrt-rtx) builds engines here")

from kit.export.quantize import quantize  # noqa: E402
from kit.runtimes.tensorrt.build import build_engine  # noqa: E402
from kit.runtimes.tensorrt.runtime import TensorRTRuntime  # noqa: E402

import kit  # noqa: E402
from kit.core.errors import ExportError, InputError, ModelFileError, RuntimeUnavailableError  # noqa: E402
from kit.core.fileio import sha256_of  # noqa: E402

TARGET = "SM86"


@pytest.fixture(scope="module", params=["digits", "mobilenet"])
def variants(request, tmp_path_factory):
    """The float model, its fp16 conversion and its QDQ int8 with the tensorrt preset."""
    trained = request.getfixturevalue(request.param)
    folder = tmp_path_factory.mktemp(f"trt-{request.param}")
    return {"fp32": trained.onnx,
            "fp16": quantize(trained.onnx, folder / "fp16.onnx", precision="fp16").path,
            "int8": quantize(trained.onnx, folder / "int8.onnx", calib=str(trained.calib), target="tensorrt").path,
            "folder": folder}


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_every_precision_builds_with_a_dynamic_batch_profile(variants, precision):
    engine = variants["folder"] / f"{precision}.engine"
    result = build_engine(variants[precision], engine, precision=precision, compute_capability=TARGET)
    manifest = json.loads((variants["folder"] / f"{precision}.engine.kit.json").read_text())
    assert engine.stat().st_size > 10_000 and manifest == result.manifest
    assert manifest["tensorrt_module"] == "tensorrt_rtx" and manifest["tensorrt_version"] == trt.__version__
    assert manifest["precision"] == precision and manifest["target"]["compute_capability"] == TARGET
    assert manifest["source_onnx_sha256"] == sha256_of(variants[precision])
    (profile,) = manifest["profile"].values()
    assert profile["min"][0] == 1 and profile["opt"][0] == 1 and profile["max"][0] == 8
    assert manifest["quantization"] == ("explicit QDQ" if precision == "int8" else None)
    assert (variants["folder"] / f"{precision}.engine.build.log").exists()


def test_default_qdq_with_int32_bias_is_refused_node_by_node(digits, tmp_path):
    avx2 = quantize(digits.onnx, tmp_path / "avx2.onnx", calib=str(digits.calib), target="avx2").path
    with pytest.raises(ExportError, match=r"could not parse avx2.onnx: node '.*bias_DequantizeLinear' "
                                          r"\(DequantizeLinear\): .*Int32 .*--target tensorrt"):
        build_engine(avx2, tmp_path / "m.engine", precision="int8", compute_capability=TARGET)
    assert files_in(tmp_path) == ["avx2.onnx"]


@pytest.mark.parametrize("shapes, message", [
    ({"opt_shapes": ["16x1x8x8"]}, r"needs min <= opt <= max on every axis; found min \[1, 1, 8, 8\], opt \[16"),
    ({"max_shapes": ["8x3x8x8"]}, r"does not fit the input's shape \[-1, 1, 8, 8\]"),
    ({"min_shapes": ["images=1x1x8x8"]}, r"names the input images, which the model does not have"),
])
def test_profiles_that_cannot_cover_the_shape(digits, tmp_path, shapes, message):
    with pytest.raises(InputError, match=message):
        build_engine(digits.onnx, tmp_path / "m.engine", compute_capability=TARGET, **shapes)
    assert files_in(tmp_path) == []


def test_precision_must_match_the_graph(digits, variants, tmp_path):
    with pytest.raises(InputError, match="int8 needs an explicitly quantized .QDQ. model; .* and tensorrt_rtx .* has "
                                         "no implicit calibrators"):
        build_engine(digits.onnx, tmp_path / "m.engine", precision="int8", compute_capability=TARGET)
    with pytest.raises(InputError, match="is a QDQ .int8. model; build it with --precision int8"):
        build_engine(variants["int8"], tmp_path / "m.engine", compute_capability=TARGET)
    with pytest.raises(InputError, match="tensorrt_rtx is strongly typed: .* is float32.*--precision fp16"):
        build_engine(digits.onnx, tmp_path / "m.engine", precision="fp16", compute_capability=TARGET)
    assert files_in(tmp_path) == []


def test_no_gpu_is_a_clear_error(digits, tmp_path):
    if TensorRTRuntime.availability().usable:
        pytest.skip("a GPU is present: the error cannot be shown")
    with pytest.raises(RuntimeUnavailableError, match="no CUDA GPU is visible.*and TensorRT builds for the GPU it "
                                                      "runs on.*--compute-capability SM86"):
        build_engine(digits.onnx, tmp_path / "m.engine")
    build_engine(digits.onnx, tmp_path / "m.engine", compute_capability=TARGET)
    with pytest.raises(RuntimeUnavailableError, match="no CUDA GPU is visible.*; TensorRT engines run only on the GPU"):
        kit.load(tmp_path / "m.engine", runtime="tensorrt")


def test_stale_manifests_are_detected_and_rebuilt(digits, tmp_path):
    engine = tmp_path / "m.engine"
    build_engine(digits.onnx, engine, compute_capability=TARGET)
    manifest_path = tmp_path / "m.engine.kit.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.update(tensorrt_module="tensorrt", tensorrt_version="10.3.0")  # built on a JetPack 6 Jetson
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match=r"m.engine is stale: built with tensorrt 10.3.0, this machine has "
                                             r"tensorrt_rtx .*Rebuild: kit build .* --runtime tensorrt"):
        kit.load(engine, runtime="tensorrt")
    if TensorRTRuntime.availability().usable:
        kit.load(engine, runtime="tensorrt", rebuild_if_stale=True).close()
    else:
        with pytest.raises(RuntimeUnavailableError, match="no CUDA GPU"):
            kit.load(engine, runtime="tensorrt", rebuild_if_stale=True)  # rebuilt, then no GPU to run it
    rebuilt = json.loads(manifest_path.read_text())
    assert rebuilt["tensorrt_version"] == trt.__version__ and rebuilt["profile"] == manifest["profile"]


def test_engine_without_manifest(digits, tmp_path):
    build_engine(digits.onnx, tmp_path / "m.engine", compute_capability=TARGET)
    shutil.copy(tmp_path / "m.engine", tmp_path / "copied.engine")
    with pytest.raises(ModelFileError, match="has no kit manifest"):
        kit.load(tmp_path / "copied.engine", runtime="tensorrt")


def test_kit_runtimes_explains_how_to_get_tensorrt(capsys):
    from kit.cli import main

    main(["runtimes", "--json"])
    row = next(r for r in json.loads(capsys.readouterr().out) if r["name"] == "tensorrt")
    assert "JetPack" in row["install"] and "python3-libnvinfer" in row["install"]


def test_build_options_and_bad_files(digits, tmp_path, capsys):
    from kit.cli import main

    cache = tmp_path / "trt.cache"
    assert main(["build", str(digits.onnx), "-o", str(tmp_path / "m.engine"), "--compute-capability", TARGET,
                 "--workspace", "256", "--timing-cache", str(cache), "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["manifest"]["workspace_mb"] == 256 and cache.stat().st_size > 0
    assert main(["build", str(digits.onnx), "-o", str(tmp_path / "m2.engine"), "--compute-capability", TARGET,
                 "--timing-cache", str(digits.onnx)]) == 2  # would overwrite the model
    assert "model.onnx is the model; the cache would overwrite it" in capsys.readouterr().err
    assert main(["build", str(digits.onnx), "-o", str(tmp_path / "m3.engine"), "--compute-capability", TARGET,
                 "--dla-core", "0"]) == 2
    assert "sees 0 DLA cores here" in capsys.readouterr().err
    (tmp_path / "broken.onnx").write_bytes(digits.onnx.read_bytes()[:100])
    assert main(["build", str(tmp_path / "broken.onnx"), "-o", str(tmp_path / "b.engine"), "--compute-capability",
                 TARGET]) == 2
    assert "is not a readable ONNX model" in capsys.readouterr().err
    assert sorted(files_in(tmp_path)) == ["broken.onnx", "m.engine", "m.engine.build.log", "m.engine.kit.json",
                                          "trt.cache"]


def test_the_timing_cache_is_never_another_file(digits, tmp_path):
    """`kit build --timing-cache precious.npz` replaced the file with an empty timing cache."""
    import numpy as np
    from helpers import run_kit

    precious = tmp_path / "precious.npz"
    np.savez(precious, x=np.arange(5))
    before = precious.read_bytes()
    done = run_kit("build", digits.onnx, "-o", tmp_path / "m.engine", "--compute-capability", TARGET,
                   "--timing-cache", precious)
    assert done.returncode == 2 and done.stdout == ""
    assert "precious.npz exists and is not a tensorrt_rtx timing cache (it starts with b'PK\\x03\\x04'" in done.stderr
    assert precious.read_bytes() == before and files_in(tmp_path) == ["precious.npz"]

    for cache, role in ((tmp_path / "m.engine.kit.json", "the engine's .kit.json"),
                        (tmp_path / "m.engine.build.log", "the engine's .build.log"),
                        (digits.calib, "the calibration data")):
        with pytest.raises(InputError, match=f"--timing-cache .*{cache.name} is {role}; the cache would overwrite it"):
            build_engine(digits.onnx, tmp_path / "m.engine", compute_capability=TARGET, timing_cache=cache,
                         calib=str(digits.calib))

    cache = tmp_path / "model.timing.cache"
    first = build_engine(digits.onnx, tmp_path / "a.engine", compute_capability=TARGET, timing_cache=cache)
    assert first.notes == [f"tensorrt_rtx {trt.__version__} does not use timing caches (its timing-cache calls do "
                           f"nothing); {cache} is written empty for a TensorRT that does."]
    build_engine(digits.onnx, tmp_path / "b.engine", compute_capability=TARGET, timing_cache=cache)  # read back
    assert cache.read_bytes()[:4] == b"ptrt"


def test_a_fixed_batch_of_4_quantizes_for_tensorrt_and_builds(digits, tmp_path):
    """A model exported with --static at batch 4, calibrated from a 300-sample .npz."""
    from kit.export import export_onnx

    static = tmp_path / "static4.onnx"
    export_onnx(digits.module, static, input_shapes="4x1x8x8", static=True)
    int8 = quantize(static, tmp_path / "int8.onnx", calib=str(digits.calib), target="tensorrt")
    assert int8.calibration["count"] == 300 and int8.fidelity[0].top1 >= 0.95
    result = build_engine(int8.path, tmp_path / "m.engine", precision="int8", compute_capability=TARGET)
    assert result.manifest["profile"] == {} and result.manifest["quantization"] == "explicit QDQ"
