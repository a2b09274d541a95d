"""The Edge TPU runtime's failure paths, with a stub delegate library (no Edge TPU here), and
the real device test for machines that have one."""

import shutil
import subprocess

import pytest
from kit.runtimes.edgetpu.runtime import EdgeTPURuntime

import kit
from kit.core.errors import KitWarning, RuntimeUnavailableError


@pytest.fixture
def uncompiled(digits_tflite, tmp_path):
    path = tmp_path / "digits_edgetpu.tflite"  # named as compiled, but it is not
    path.write_bytes(digits_tflite["int8"].path.read_bytes())
    return path


def test_library_that_finds_no_device(uncompiled, stub_edgetpu_library):
    with pytest.warns(KitWarning, match="was not compiled for the Edge TPU .* it runs on the CPU"), \
            pytest.raises(RuntimeUnavailableError, match=r"loaded but found no Edge TPU at device 'usb' \(Failed to "
                                                         r"open device: no Edge TPU found\)\. Plug in the Coral"):
        EdgeTPURuntime(uncompiled, library=str(stub_edgetpu_library), device="usb").load()


def test_missing_library(uncompiled, tmp_path):
    with pytest.warns(KitWarning), pytest.raises(RuntimeUnavailableError,
                                                 match=r"could not be loaded .* To fix it, install libedgetpu"):
        EdgeTPURuntime(uncompiled, library=str(tmp_path / "libedgetpu.so.1")).load()


def test_compiled_models_open_on_the_edge_tpu_only(uncompiled):
    if EdgeTPURuntime.availability().usable:
        pytest.skip("an Edge TPU is present: the error path cannot be shown")
    with pytest.raises(RuntimeUnavailableError, match="needs one of the runtimes edgetpu, and none is usable here"):
        kit.load(uncompiled)
    state = EdgeTPURuntime.availability()
    assert not state.usable and "libedgetpu" in state.install


@pytest.mark.edgetpu
def test_on_a_real_edge_tpu(mobilenet, tmp_path):
    """Runs where libedgetpu, an Edge TPU and edgetpu_compiler are present; skipped elsewhere."""
    if not EdgeTPURuntime.availability().usable or shutil.which("edgetpu_compiler") is None:
        pytest.skip("needs an Edge TPU with libedgetpu and edgetpu_compiler")
    from kit.export.tflite import export_tflite
    from kit.check.harness import evaluate

    result = export_tflite(mobilenet.module, tmp_path / "m.tflite", precision="int8", input_shapes="1x1x8x8",
                           calib=str(mobilenet.calib))
    subprocess.run(["edgetpu_compiler", "-o", str(tmp_path), str(result.path)], check=True)
    compiled = tmp_path / "m_edgetpu.tflite"  # the compiler drops metadata: provenance from m.tflite
    on_tpu = evaluate(compiled, str(mobilenet.test), runtime="edgetpu")[0].top1
    on_cpu = evaluate(result.path, str(mobilenet.test), runtime="tflite")[0].top1
    assert on_cpu > 0.9 and abs(on_tpu - on_cpu) <= 0.01


# ----- availability never opens the device ---------------------------------------------------------


def test_listing_runtimes_finds_the_library_without_opening_the_device(stub_edgetpu_library, uncompiled, tmp_path):
    import json

    from helpers import run_kit

    marker = tmp_path / "opened"
    env = {"LD_LIBRARY_PATH": str(stub_edgetpu_library.parent), "STUB_MARKER": str(marker)}
    listed = run_kit("runtimes", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    (edgetpu,) = [row for row in json.loads(listed.stdout) if row["name"] == "edgetpu"]
    assert edgetpu["usable"] and edgetpu["detail"] == "Edge TPU delegate libedgetpu.so.1 (the device opens on load)"
    assert not marker.exists()  # nothing touched the device

    ran = run_kit("run", uncompiled, "--random", env=env)  # chosen as usable; the device opens in load()
    assert ran.returncode == 2 and marker.read_text() == "opened\n"
    assert "loaded but found no Edge TPU (Failed to open device: no Edge TPU found)" in " ".join(ran.stderr.split())


def test_a_library_that_is_not_a_delegate_is_not_usable(monkeypatch):
    import ctypes.util

    libm = ctypes.util.find_library("m")
    if libm is None:
        pytest.skip("no libm to stand in for a wrong library")
    monkeypatch.setattr(EdgeTPURuntime, "default_library", classmethod(lambda cls: libm))
    state = EdgeTPURuntime.availability()
    assert not state.usable and state.detail == f"{libm} is not a TFLite delegate library (it lacks " \
                                                "tflite_plugin_create_delegate)"
