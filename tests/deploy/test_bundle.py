"""kit bundle and kit doctor through the real kit: the digits models bundled with their golden
outputs, reproducible, read back on a "device" (this machine), and refused when tampered with,
unsafe or swapped."""

import io
import json
import shutil
import tarfile
from importlib.metadata import version
from pathlib import Path

import pytest
from helpers import files_in, run_kit

from kit.deploy.bundle import BundleError, _listing, open_bundle


def test_a_bundle_holds_models_golden_outputs_requirements_and_a_manifest(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["format"] == "kit-bundle" and manifest["kit_version"]
    entries = {m["name"]: m for m in manifest["models"]}
    assert entries["digits.onnx"]["devices"] == ["cpu", "jetson"] and entries["digits.onnx"]["tensorrt"] == {
        "precision": "fp32", "source": "models/digits.onnx"}
    assert entries["digits.int8.onnx"]["precision"] == "int8"
    assert entries["digits.int8.onnx"]["tensorrt"] is None  # ORT's default QDQ: TensorRT needs the tensorrt preset
    assert entries["digits.int8.tflite"]["devices"] == ["coral", "cpu"]
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) == {"README.md", "models/digits.onnx", "models/digits.int8.onnx", "models/digits.int8.tflite",
                           "golden/digits.onnx.npz", "golden/digits.int8.onnx.npz", "golden/digits.int8.tflite.npz",
                           "requirements/coral.txt", "requirements/cpu.txt", "requirements/jetson.txt"}
    assert listed["models/digits.onnx"]["size"] == (bundle / "models/digits.onnx").stat().st_size
    cpu = (bundle / "requirements/cpu.txt").read_text().splitlines()
    assert f"onnxruntime=={version('onnxruntime')}" in cpu and f"ai-edge-litert=={version('ai-edge-litert')}" in cpu
    assert not any(line.startswith("torch") for line in cpu)


def test_bundling_again_gives_the_same_bytes(variants, variant_models, bundle, tmp_path):
    again = tmp_path / "digits.kitbundle"
    assert run_kit("bundle", *variant_models, "-o", str(again)).returncode == 0
    assert (again / "manifest.json").read_bytes() == (bundle / "manifest.json").read_bytes()
    archives = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        archives.append(tmp_path / name / "digits.kitbundle.tar.gz")
        assert run_kit("bundle", *variant_models, "-o", str(archives[-1]), "--archive").returncode == 0
    assert archives[0].read_bytes() == archives[1].read_bytes()


def test_doctor_finds_the_device_ready_and_every_model_matching_its_golden_outputs(bundle):
    ran = run_kit("doctor", str(bundle), "--json")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    report = json.loads(ran.stdout)
    assert report["ready"]
    checks = {f["area"]: f for f in report["findings"]}
    for name in ("digits.onnx", "digits.int8.onnx", "digits.int8.tflite"):
        assert checks[f"model {name}"]["status"] == "ok", checks[f"model {name}"]
        assert "8 golden samples" in checks[f"model {name}"]["detail"]
    assert checks["bundle"]["status"] == "ok" and "10 files match the manifest" in checks["bundle"]["detail"]
    assert {"python", "runtime onnxruntime", "runtime tflite", "opencv"} <= set(checks)
    text = run_kit("doctor", str(bundle))
    assert text.returncode == 0 and text.stdout.rstrip().endswith("ready")


def test_doctor_from_an_archive(variants, variant_models, tmp_path):
    archive = tmp_path / "digits.kitbundle.tar.gz"
    assert run_kit("bundle", *variant_models, "-o", str(archive), "--archive").returncode == 0
    before = files_in(tmp_path)
    ran = run_kit("doctor", str(archive), "--json")
    assert ran.returncode == 0 and json.loads(ran.stdout)["ready"], ran.stdout
    assert files_in(tmp_path) == before  # extracted to a temporary folder, removed after


def copy_of(bundle, tmp_path):
    target = tmp_path / "copy.kitbundle"
    shutil.copytree(bundle, target)
    return target


@pytest.mark.parametrize("damage, message", [
    (lambda b: (b / "models/digits.onnx").write_bytes((b / "models/digits.onnx").read_bytes()[:-1] + b"\0"),
     "models/digits.onnx changed (SHA-256 differs from the manifest)"),
    (lambda b: (b / "golden/digits.int8.onnx.npz").unlink(), "golden/digits.int8.onnx.npz is missing"),
    (lambda b: (b / "models/extra.onnx").write_bytes(b"x"), "models/extra.onnx is not in the manifest"),
    (lambda b: ((b / "README.md").unlink(), (b / "README.md").symlink_to("/etc/hostname")), "README.md is a link"),
])
def test_a_tampered_bundle_is_refused_before_any_model_loads(bundle, tmp_path, damage, message):
    target = copy_of(bundle, tmp_path)
    damage(target)
    ran = run_kit("doctor", str(target), "--json")
    assert ran.returncode == 1
    findings = json.loads(ran.stdout)["findings"]
    (problem,) = [f for f in findings if f["status"] == "problem"]
    assert problem["area"] == "bundle" and message in problem["detail"]
    assert not any(f["area"].startswith("model ") for f in findings)  # nothing was run
    with pytest.raises(BundleError, match="does not match its manifest"), open_bundle(target):
        pass


@pytest.mark.parametrize("swap, detail", [
    ("int8", "fp32 on onnxruntime: 8 golden samples"),  # the int8 model under the fp32 name: close, not equal
    ("mobilenet", "failed on onnxruntime"),  # another network: its input is not the golden file's
])
def test_a_model_swapped_for_another_fails_its_golden_check(bundle, mobilenet, tmp_path, swap, detail):
    """A consistent manifest around the wrong model (bundled by mistake): the file checks pass
    and the golden outputs catch it."""
    target = copy_of(bundle, tmp_path)
    shutil.copyfile(target / "models/digits.int8.onnx" if swap == "int8" else mobilenet.onnx,
                    target / "models/digits.onnx")
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["files"] = _listing(target)
    (target / "manifest.json").write_text(json.dumps(manifest))
    ran = run_kit("doctor", str(target), "--json")
    assert ran.returncode == 1
    checks = {f["area"]: f for f in json.loads(ran.stdout)["findings"]}
    assert checks["bundle"]["status"] == "ok"
    assert checks["model digits.onnx"]["status"] == "problem" and detail in checks["model digits.onnx"]["detail"]
    assert checks["model digits.int8.onnx"]["status"] == "ok"
    assert "not ready: 1 problem(s)" in run_kit("doctor", str(target)).stdout


def write_archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]):
    with tarfile.open(path, "w:gz") as tar:
        for info, content in members:
            tar.addfile(info, io.BytesIO(content) if content is not None else None)


def entry(name, content=b"x", kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(content) if kind == tarfile.REGTYPE else 0
    return info, content if kind == tarfile.REGTYPE else None


@pytest.mark.parametrize("members, message", [
    ([entry("b.kitbundle/manifest.json"), entry("b.kitbundle/../../escaped")], "points outside the bundle"),
    ([entry("/tmp/absolute")], "points outside the bundle"),
    ([entry("b.kitbundle/models/x.onnx", kind=tarfile.SYMTYPE, link="/etc/passwd")], "is a link or a device file"),
    ([entry("b.kitbundle/hard", kind=tarfile.LNKTYPE, link="/etc/passwd")], "is a link or a device file"),
    ([entry("a/manifest.json"), entry("b/manifest.json")], "expected one bundle folder"),
])
def test_unsafe_archives_are_refused_before_extracting(tmp_path, members, message):
    archive = tmp_path / "evil.kitbundle.tar.gz"
    write_archive(archive, members)
    before = files_in(tmp_path.parent)
    ran = run_kit("doctor", str(archive), "--json")
    assert ran.returncode == 1
    (problem,) = [f for f in json.loads(ran.stdout)["findings"] if f["status"] == "problem"]
    assert message in problem["detail"], problem
    assert files_in(tmp_path.parent) == before


@pytest.mark.parametrize("argv, message", [
    (["{v}/missing.onnx", "-o", "{t}/x.kitbundle"], "model file {v}/missing.onnx does not exist"),
    (["{v}/digits.onnx", "-o", "{t}/x.bundle"], "expected the output to end in .kitbundle"),
    (["{v}/digits.onnx", "-o", "{t}/x.kitbundle", "--archive"], "expected the output to end in .kitbundle.tar.gz"),
    (["{v}/digits.onnx", "{v}/digits.onnx", "-o", "{t}/x.kitbundle"], "two models are named digits.onnx"),
    (["{t}/model.engine", "-o", "{t}/x.kitbundle"], "expected .onnx or .tflite models"),
    (["{v}/digits.onnx", "-o", "{t}/taken.kitbundle"], "exists and is not an intact kit bundle"),
    (["{v}/digits.onnx", "-o", "{t}/fake.kitbundle"], "exists and is not an intact kit bundle"),
    (["{v}/digits.onnx", "-o", "{t}/taken.kitbundle/inner.kitbundle"], "is inside the bundle"),
    (["{v}/digits.onnx", "-o", "{t}/nowhere/x.kitbundle"], "the output's folder"),
])
def test_bad_bundle_input_is_one_line_and_leaves_nothing(variants, tmp_path, argv, message):
    (tmp_path / "model.engine").write_bytes(b"engine")
    (tmp_path / "taken.kitbundle").mkdir()
    (tmp_path / "taken.kitbundle" / "mine.txt").write_text("keep")
    (tmp_path / "fake.kitbundle").mkdir()  # a manifest.json that is not a kit bundle's, beside a user's file
    (tmp_path / "fake.kitbundle" / "manifest.json").write_text('{"name": "app"}')
    (tmp_path / "fake.kitbundle" / "notes.txt").write_text("keep")
    before = files_in(tmp_path)
    ran = run_kit("bundle", *[a.format(v=variants, t=tmp_path) for a in argv])
    assert ran.returncode == 2 and message.format(v=variants, t=tmp_path) in ran.stderr, ran.stderr
    assert "Traceback" not in ran.stderr and files_in(tmp_path) == before
    assert (tmp_path / "taken.kitbundle" / "mine.txt").read_text() == "keep"
    assert (tmp_path / "fake.kitbundle" / "notes.txt").read_text() == "keep"


def test_bundling_over_an_existing_bundle_replaces_it(variants, variant_models, tmp_path):
    out = tmp_path / "d.kitbundle"
    assert run_kit("bundle", str(variants / "digits.onnx"), "-o", str(out)).returncode == 0
    assert run_kit("bundle", *variant_models, "-o", str(out)).returncode == 0
    assert len(json.loads((out / "manifest.json").read_text())["models"]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.kitbundle"]  # nothing left aside


def rewrite_manifest(bundle, tmp_path, change):
    target = copy_of(bundle, tmp_path)
    manifest = json.loads((target / "manifest.json").read_text())
    change(manifest)
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def outside_model(manifest):
    manifest["models"][0]["name"] = "../../outside.onnx"


def outside_golden(manifest):
    manifest["models"][0]["golden"] = "../outside.npz"


@pytest.mark.parametrize("change, message", [
    (outside_model, "the model '../../outside.onnx' is not a file the manifest lists in models/"),
    (outside_golden, "the golden file '../outside.npz' is not a file the manifest lists in golden/"),
    (lambda m: m.update(files=["a"]), "expected files as a list of {path, sha256, size}"),
    (lambda m: m.update(files=5), "expected files as a list of {path, sha256, size}"),
    (lambda m: m.pop("models"), "expected models as a non-empty list"),
    (lambda m: m["models"][0].pop("format"), "expected each model with name, format, precision, devices"),
    (lambda m: m["files"][0].update(path="a\0b"), "is not a path a bundle holds"),
])
def test_a_manifest_that_points_outside_or_is_malformed_is_refused(bundle, tmp_path, change, message):
    """Only files the manifest hashes are ever opened: a model or golden file named outside
    them, or a manifest of the wrong shape, is refused (doctor: a problem; run: exit 2)."""
    target = rewrite_manifest(bundle, tmp_path, change)
    doctor = run_kit("doctor", str(target), "--json")
    assert doctor.returncode == 1, doctor.stderr
    (problem,) = [f for f in json.loads(doctor.stdout)["findings"] if f["status"] == "problem"]
    assert "is not a valid kit manifest" in problem["detail"] and message in problem["detail"], problem
    ran = run_kit("run", str(target), "--random")
    assert ran.returncode == 2 and message in ran.stderr and "Traceback" not in ran.stderr


def test_models_with_external_data_or_different_tasks_are_refused(variants, digits, tmp_path):
    import onnx

    model = onnx.load(str(variants / "digits.onnx"))
    onnx.save(model, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="ext.onnx.data",
              size_threshold=0)
    ran = run_kit("bundle", str(tmp_path / "ext.onnx"), "-o", str(tmp_path / "e.kitbundle"))
    assert ran.returncode == 2 and "keeps its weights in external data files" in ran.stderr
    (tmp_path / "labels.txt").write_text("".join(f"{i}\n" for i in range(10)))
    labelled = tmp_path / "labelled.onnx"
    assert run_kit("adopt", str(tmp_path / "ext.onnx"), "-o", str(labelled), "--task", "classify",
                   "--labels", str(tmp_path / "labels.txt")).returncode == 2  # external data: adopt refuses too
    from kit.export import export_onnx

    other = tmp_path / "other.onnx"
    export_onnx(digits.module, labelled, input_shapes="1x1x8x8", task={"name": "classify", "labels": list("abcdefghij")})
    export_onnx(digits.module, other, input_shapes="1x1x8x8", task={"name": "classify", "labels": list("ABCDEFGHIJ")})
    mixed = run_kit("bundle", str(labelled), str(other), "-o", str(tmp_path / "m.kitbundle"))
    assert mixed.returncode == 2 and "record different tasks or labels" in mixed.stderr
    assert not (tmp_path / "m.kitbundle").exists() and not (tmp_path / "e.kitbundle").exists()


def test_bundles_made_from_another_folder_are_the_same(variants, variant_models, bundle, tmp_path):
    """The golden files name the model as the bundle holds it, not as the command was typed."""
    import os

    (tmp_path / "sub").mkdir()
    relative = [os.path.relpath(path, tmp_path / "sub") for path in variant_models]
    ran = run_kit("bundle", *relative, "-o", "digits.kitbundle", cwd=tmp_path / "sub")
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "sub" / "digits.kitbundle" / "manifest.json").read_bytes() == (
        bundle / "manifest.json").read_bytes()


def test_a_missing_bundle_is_named(tmp_path):
    for command in (["run", str(tmp_path / "nosuch.kitbundle"), "--random"], ["doctor", str(tmp_path / "nosuch.kitbundle")]):
        ran = run_kit(*command)
        assert ran.returncode == 2 and f"bundle {tmp_path}/nosuch.kitbundle does not exist" in ran.stderr


def test_golden_samples_bound_what_a_large_data_set_adds(digits, variants, tmp_path):
    """The golden files keep the first N samples of --data (8 by default), however many it has."""
    import numpy as np

    available = len(np.load(digits.test)["x"])
    assert available > 8
    out = tmp_path / "few.kitbundle"
    ran = run_kit("bundle", variants / "digits.onnx", "-o", out, "--data", digits.test, "--golden-samples", "3")
    assert ran.returncode == 0, ran.stderr
    with np.load(out / "golden/digits.onnx.npz") as golden:
        inputs = [name for name in golden.files if name.startswith("input")]
        assert [golden[name].shape[0] for name in inputs] == [3]
        assert np.array_equal(golden[inputs[0]], np.load(digits.test)["x"][:3])
    doctor = run_kit("doctor", out, "--json")
    assert "3 golden samples" in {f["area"]: f for f in json.loads(doctor.stdout)["findings"]}["model digits.onnx"][
        "detail"]
    default = run_kit("bundle", variants / "digits.onnx", "-o", tmp_path / "default.kitbundle", "--data", digits.test)
    assert default.returncode == 0
    with np.load(tmp_path / "default.kitbundle/golden/digits.onnx.npz") as golden:
        assert golden[inputs[0]].shape[0] == 8
    zero = run_kit("bundle", variants / "digits.onnx", "-o", tmp_path / "zero.kitbundle", "--golden-samples", "0")
    assert zero.returncode == 2 and not (tmp_path / "zero.kitbundle").exists()
