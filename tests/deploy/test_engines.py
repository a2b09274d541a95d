"""A bundle's TensorRT recipes and `kit doctor --build`: engines built by the real TensorRT-RTX
ahead of time for SM86 (no GPU here), beside the bundle so it still verifies; their state
(missing, fresh, stale) against the bundle's ONNX and the installed TensorRT; and which model a
device with a usable GPU would run. Running an engine needs a GPU (tests marked gpu)."""

import json
import shutil

import pytest
from helpers import run_kit

from kit.core import provenance
from kit.deploy.bundle import open_folder

SM = "SM86"


@pytest.fixture(scope="session")
def trt_variants(digits, tmp_path_factory):
    """The digits CNN as ONNX fp32, fp16, int8 for TensorRT and int8 of ORT's default QDQ."""
    from kit.export.quantize import quantize

    folder = tmp_path_factory.mktemp("trt_variants")
    shutil.copyfile(digits.onnx, folder / "digits.onnx")
    quantize(digits.onnx, folder / "digits.fp16.onnx", precision="fp16")
    quantize(digits.onnx, folder / "digits.trt.int8.onnx", calib=str(digits.calib), target="tensorrt")
    quantize(digits.onnx, folder / "digits.int8.onnx", calib=str(digits.calib))
    return [folder / name for name in ("digits.onnx", "digits.fp16.onnx", "digits.trt.int8.onnx", "digits.int8.onnx")]


@pytest.fixture
def trt_bundle(trt_variants, tmp_path):
    out = tmp_path / "digits.kitbundle"
    ran = run_kit("bundle", *trt_variants, "-o", out, "--data", "random:4")
    assert ran.returncode == 0, ran.stderr
    return out


def findings(ran) -> dict[str, dict]:
    return {f["area"]: f for f in json.loads(ran.stdout)["findings"]}


def test_each_onnx_records_the_recipe_its_precision_builds(trt_bundle):
    recipes = {m.name: m.tensorrt for m in open_folder(trt_bundle).models}
    assert recipes == {"digits.onnx": {"precision": "fp32", "source": "models/digits.onnx"},
                       "digits.fp16.onnx": {"precision": "fp16", "source": "models/digits.fp16.onnx"},
                       "digits.trt.int8.onnx": {"precision": "int8", "source": "models/digits.trt.int8.onnx"},
                       "digits.int8.onnx": None}  # ORT's default QDQ (int32 bias) does not build


def test_doctor_names_the_engines_not_built_yet(trt_bundle):
    pytest.importorskip("tensorrt_rtx")
    ran = run_kit("doctor", trt_bundle, "--json")
    assert ran.returncode == 0, ran.stdout + ran.stderr  # nothing to build without a GPU: not a fault
    found = findings(ran)
    for name in ("digits.engine", "digits.fp16.engine", "digits.trt.int8.engine"):
        assert found[f"engine {name}"]["status"] == "info"
        assert found[f"engine {name}"]["detail"].startswith("not built yet (in digits.kitbundle.engines/ beside")
    assert "engine digits.int8.engine" not in found


def test_build_without_a_gpu_is_a_problem_that_says_how(trt_bundle):
    pytest.importorskip("tensorrt_rtx")
    ran = run_kit("doctor", trt_bundle, "--build")
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "problem  engines: --build: no CUDA GPU is visible" in ran.stdout
    assert "fix: Build on the Jetson or GPU machine, or ahead of time with TensorRT-RTX: --compute-capability " \
           "SM86" in ran.stdout
    assert not (trt_bundle.parent / "digits.kitbundle.engines").exists()


def test_build_ahead_of_time_beside_the_bundle(trt_bundle):
    trt = pytest.importorskip("tensorrt_rtx")
    ran = run_kit("doctor", trt_bundle, "--build", "--compute-capability", SM, "--json")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    found = findings(ran)
    folder = trt_bundle.parent / "digits.kitbundle.engines"
    hashes = {f["path"]: f["sha256"] for f in json.loads((trt_bundle / "manifest.json").read_text())["files"]}
    for stem, precision in (("digits", "fp32"), ("digits.fp16", "fp16"), ("digits.trt.int8", "int8")):
        finding = found[f"engine {stem}.engine"]
        assert finding["status"] == "info", finding
        assert finding["detail"] == (f"built (tensorrt_rtx {trt.__version__}, {precision}, for any GPU of {SM} "
                                     "(ahead of time)); no GPU here runs it")
        manifest = provenance.read(folder / f"{stem}.engine")
        assert manifest["precision"] == precision and manifest["target"]["compute_capability"] == SM
        assert manifest["source_onnx_sha256"] == hashes[f"models/{stem}.onnx"]
    assert found["bundle"]["status"] == "ok"  # the bundle itself is untouched: it still verifies
    again = run_kit("doctor", trt_bundle, "--json")  # fresh engines are not built again
    assert findings(again)["engine digits.engine"]["detail"] == found["engine digits.engine"]["detail"]


def test_a_stale_engine_is_named_and_rebuilt(trt_bundle):
    pytest.importorskip("tensorrt_rtx")
    assert run_kit("doctor", trt_bundle, "--build", "--compute-capability", SM).returncode == 0
    folder = trt_bundle.parent / "digits.kitbundle.engines"
    for suffix in ("", ".kit.json"):  # the fp16 engine where the fp32 one belongs
        shutil.copyfile(folder / f"digits.fp16.engine{suffix}", folder / f"digits.engine{suffix}")
    ran = run_kit("doctor", trt_bundle, "--json")
    assert ran.returncode == 0  # stale, and no GPU here would run it: worth knowing, not a fault
    assert findings(ran)["engine digits.engine"]["detail"] == ("stale: built from another ONNX than the bundle's "
                                                               "digits.onnx; built as fp16, the recipe says fp32")
    rebuilt = run_kit("doctor", trt_bundle, "--build", "--compute-capability", SM, "--json")
    assert findings(rebuilt)["engine digits.engine"]["detail"].startswith("built (tensorrt_rtx")
    assert provenance.read(folder / "digits.engine")["precision"] == "fp32"
    other = run_kit("doctor", trt_bundle, "--build", "--compute-capability", "SM89", "--json")  # another GPU
    assert other.returncode == 0, other.stdout
    assert provenance.read(folder / "digits.engine")["target"]["compute_capability"] == "SM89"


def test_an_archive_gets_its_engines_beside_it(trt_variants, tmp_path):
    pytest.importorskip("tensorrt_rtx")
    archive = tmp_path / "digits.kitbundle.tar.gz"
    assert run_kit("bundle", trt_variants[0], "-o", archive, "--archive", "--data", "random:2").returncode == 0
    ran = run_kit("doctor", archive, "--build", "--compute-capability", SM)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert sorted(p.name for p in (tmp_path / "digits.kitbundle.engines").iterdir()) == [
        "digits.engine", "digits.engine.build.log", "digits.engine.kit.json"]


def test_build_arguments_are_checked(trt_bundle):
    no_bundle = run_kit("doctor", "--build")
    assert no_bundle.returncode == 2
    assert "error: --build builds a bundle's TensorRT engines; found no bundle." in no_bundle.stderr
    no_build = run_kit("doctor", trt_bundle, "--compute-capability", SM)
    assert no_build.returncode == 2
    assert "--compute-capability says which GPU --build builds for; found no --build." in no_build.stderr
    pytest.importorskip("tensorrt_rtx")
    wrong = run_kit("doctor", trt_bundle, "--build", "--compute-capability", "SM1")
    assert wrong.returncode == 2
    assert "error: expected a compute capability among SM" in wrong.stderr and "found 'SM1'" in wrong.stderr
    assert not (trt_bundle.parent / "digits.kitbundle.engines").exists()  # nothing left behind


def test_a_bundle_without_recipes_has_nothing_to_build(variants, tmp_path):
    out = tmp_path / "tflite.kitbundle"
    assert run_kit("bundle", variants / "digits.int8.tflite", "-o", out, "--data", "random:2").returncode == 0
    ran = run_kit("doctor", out, "--build", "--json")
    assert ran.returncode == 0
    assert findings(ran)["engines"]["detail"].startswith("nothing to build: the bundle has no TensorRT recipe")


def test_a_usable_gpu_would_run_the_engine_built_here(trt_bundle, monkeypatch):
    """The choice alone (no engine runs here): with TensorRT counted as usable, fresh engines come
    first, the faithful int8 one before fp16 before fp32, and --runtime tensorrt keeps only them."""
    pytest.importorskip("tensorrt_rtx")
    from kit.deploy import choose

    bundle = open_folder(trt_bundle)
    monkeypatch.setattr(choose, "usable_here", lambda: {"onnxruntime", "tensorrt"})
    before = choose.choose(bundle)
    assert before.runtime == "onnxruntime"
    assert before.why.endswith("; the GPU is usable, but no TensorRT engine is built for this bundle "
                               "(kit doctor BUNDLE --build)")
    assert run_kit("doctor", trt_bundle, "--build", "--compute-capability", SM).returncode == 0
    picked = choose.choose(bundle)
    assert (picked.runtime, picked.path.name) == ("tensorrt", "digits.trt.int8.engine")
    assert picked.why.startswith("digits.trt.int8.onnx on tensorrt: the GPU is present and the int8 engine "
                                 "digits.trt.int8.engine was built here")
    engines = [c.path.name for c in choose.runnable(bundle, "tensorrt", {"tensorrt"})]
    assert engines == ["digits.trt.int8.engine", "digits.fp16.engine", "digits.engine"]
    named = choose.choose(bundle, "digits.fp16.engine")
    assert named.why == "digits.fp16.engine on tensorrt (built here from digits.fp16.onnx), as --model asked"
    onnx = choose.choose(bundle, "digits.fp16.onnx")  # the file itself, not its engine
    assert (onnx.runtime, onnx.path.name) == ("onnxruntime", "digits.fp16.onnx")


@pytest.mark.gpu
def test_on_a_gpu_doctor_builds_checks_and_run_uses_the_engine(trt_bundle):
    from kit.runtimes.tensorrt.runtime import TensorRTRuntime

    if not TensorRTRuntime.availability().usable:
        pytest.skip("needs an NVIDIA GPU with TensorRT and cuda-python")
    ran = run_kit("doctor", trt_bundle, "--build", "--json")
    assert ran.returncode == 0, ran.stdout
    found = findings(ran)
    for name in ("digits.engine", "digits.fp16.engine", "digits.trt.int8.engine"):
        assert found[f"engine {name}"]["status"] == "ok" and "golden samples" in found[f"engine {name}"]["detail"]
    run = run_kit("run", trt_bundle, "--json")
    assert run.returncode == 0 and json.loads(run.stdout)["bundle"]["runtime"] == "tensorrt", run.stderr
