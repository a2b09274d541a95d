"""kit run BUNDLE, kit.load(BUNDLE) and kit bench BUNDLE: the model this device runs, chosen
and explained, --model to override, every runnable variant benchmarked; a tampered or packed
bundle is refused before any model loads."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import run_kit

import kit
from kit.core.errors import InputError


def test_run_chooses_a_faithful_int8_model_and_says_why(bundle):
    ran = run_kit("run", str(bundle), "--random", "--json")
    assert ran.returncode == 0, ran.stderr
    chosen = json.loads(ran.stdout)["bundle"]
    assert chosen["model"] in ("digits.int8.onnx", "digits.int8.tflite")
    assert "int8, which kept its float model's outputs" in chosen["why"] and "--model NAME" in chosen["why"]
    text = run_kit("run", str(bundle), "--random")
    assert text.returncode == 0 and text.stdout.startswith(f"bundle: chose {chosen['model']} on ")


def test_model_overrides_the_choice_and_names_what_exists(bundle):
    ran = run_kit("run", str(bundle), "--model", "digits.onnx", "--random", "--json")
    assert ran.returncode == 0 and json.loads(ran.stdout)["bundle"]["model"] == "digits.onnx"
    wrong = run_kit("run", str(bundle), "--model", "nope.onnx", "--random")
    assert wrong.returncode == 2 and "the bundle has no model 'nope.onnx'; it has digits.onnx," in wrong.stderr


def test_an_unfaithful_int8_variant_is_passed_over_for_float(sensitive, tmp_path):
    """The quantization-hostile CNN quantized per-tensor keeps 10% top-1: fp32 is chosen."""
    from kit.export.quantize import quantize

    shutil.copyfile(sensitive.onnx, tmp_path / "s.onnx")
    with pytest.warns(Warning):
        quantize(sensitive.onnx, tmp_path / "s.int8.onnx", calib=str(sensitive.calib), per_channel=False)
    assert run_kit("bundle", str(tmp_path / "s.onnx"), str(tmp_path / "s.int8.onnx"), "-o",
                   str(tmp_path / "s.kitbundle")).returncode == 0
    chosen = json.loads(run_kit("run", str(tmp_path / "s.kitbundle"), "--random", "--json").stdout)["bundle"]
    assert chosen["model"] == "s.onnx" and "int8 variants are not faithful" in chosen["why"]


def test_kit_load_of_a_bundle_runs_the_chosen_model(bundle):
    x = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)
    with kit.load(bundle, model="digits.onnx") as from_bundle, kit.load(bundle / "models" / "digits.onnx") as direct:
        feeds = {direct.inputs[0].name: x}
        for name, array in direct.run(feeds).items():
            np.testing.assert_array_equal(from_bundle.run(feeds)[name], array)
    with kit.load(bundle) as chosen:
        assert Path(chosen.model_path).parent == bundle / "models" and ".int8." in Path(chosen.model_path).name
    with pytest.raises(InputError, match="the bundle has no model 'x'"):
        kit.load(bundle, model="x")


def test_bench_of_a_bundle_measures_every_model_this_device_runs(bundle, tmp_path):
    ran = run_kit("bench", str(bundle), "--max-time", "0.05", "--save-json", str(tmp_path / "b.json"))
    assert ran.returncode == 0, ran.stderr
    names = [row["extra_info"]["kit"]["name"] for row in json.loads((tmp_path / "b.json").read_text())["benchmarks"]]
    assert names == ["digits.onnx[onnxruntime]", "digits.int8.onnx[onnxruntime]", "digits.int8.tflite[tflite]"]


def test_run_refuses_a_tampered_bundle_and_an_archive(bundle, tmp_path):
    target = tmp_path / "t.kitbundle"
    shutil.copytree(bundle, target)
    (target / "models" / "digits.int8.tflite").write_bytes(b"tampered")
    for argv in (["run", str(target), "--random"], ["bench", str(target)]):
        ran = run_kit(*argv)
        assert ran.returncode == 2 and "does not match its manifest: models/digits.int8.tflite changed" in ran.stderr
    packed = tmp_path / "p.kitbundle.tar.gz"
    packed.write_bytes(b"")
    ran = run_kit("run", str(packed), "--random")
    assert ran.returncode == 2 and f"Unpack it first: tar -xzf {packed}" in ran.stderr


def test_runtime_restricts_the_choice(bundle):
    ran = run_kit("run", str(bundle), "--runtime", "onnxruntime", "--random", "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["bundle"]["model"] in ("digits.onnx", "digits.int8.onnx")


def test_a_bundle_with_nothing_for_this_device(digits_tflite, tmp_path):
    """An Edge TPU model alone, and no Edge TPU: doctor says the device cannot run the bundle,
    run and bench say so in one line."""
    shutil.copyfile(digits_tflite["int8"].path, tmp_path / "only_edgetpu.tflite")
    out = tmp_path / "e.kitbundle"
    assert run_kit("bundle", str(tmp_path / "only_edgetpu.tflite"), "-o", str(out)).returncode == 0
    doctor = run_kit("doctor", str(out), "--json")
    assert doctor.returncode == 1
    problems = [f["detail"] for f in json.loads(doctor.stdout)["findings"] if f["status"] == "problem"]
    assert problems == ["no model in the bundle can run on this device"]
    for argv, message in ((["run", str(out), "--random"], "no model in the bundle runs on this device"),
                          (["bench", str(out)], f"no model in the bundle {out} runs on this device")):
        ran = run_kit(*argv)
        assert ran.returncode == 2 and message in ran.stderr, ran.stderr


def test_run_writes_nothing_into_a_bundle(bundle):
    before = (bundle / "golden" / "digits.onnx.npz").read_bytes()
    ran = run_kit("run", str(bundle), "--random", "-o", str(bundle / "golden" / "digits.onnx.npz"))
    assert ran.returncode == 2 and "is inside the bundle" in ran.stderr
    assert (bundle / "golden" / "digits.onnx.npz").read_bytes() == before


def test_a_bundles_onnx_runs_on_openvino_when_named(bundle):
    """An Intel box runs a bundle's ONNX on OpenVINO: --runtime openvino (and a target) picks it."""
    pytest.importorskip("openvino", reason='needs OpenVINO: pip install "edge-inference-kit[openvino]"')
    for runtime in ("openvino", "openvino:CPU"):
        ran = run_kit("run", bundle, "--runtime", runtime, "--random", "--json")
        assert ran.returncode == 0, ran.stderr
        summary = json.loads(ran.stdout)
        assert summary["runtime"]["runtime"] == "openvino" and summary["runtime"]["device"] == "CPU"
        assert summary["bundle"]["runtime"] == runtime and summary["bundle"]["model"].endswith(".onnx")
