"""The device side on aarch64 without a board: an arm64 Debian 12 root (.ci/arm64-root) run
through qemu-user-static, with this checkout's kit installed from a wheel, runs kit doctor
(the golden check included), kit run and kit bench on a bundle made here on x86-64.

Measured: float32 ONNX outputs match x86 within 5e-6; int8 TFLite differs by one output
quantization step (SQNR about 80 dB), which is why int8 is judged by SQNR. Emulated timings
mean nothing: the test checks that bench ran, never how fast."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.arm64

ROOT = Path(os.environ.get("KIT_ARM64_ROOT", "/opt/kit-arm64"))
CHECKOUT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def arm64(tmp_path_factory):
    """The root with this checkout's kit installed in its /venv; a scratch folder inside it."""
    if not (ROOT / "venv" / "bin" / "python").exists() or os.geteuid() != 0:
        pytest.skip(f"no arm64 root at {ROOT} (as root: .ci/arm64-root {ROOT})")
    wheels = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", str(CHECKOUT), "-w", str(wheels)],
                   check=True, timeout=600, capture_output=True)
    scratch = ROOT / "tmp" / f"kit-test-{os.getpid()}"
    scratch.mkdir(parents=True)
    (wheel,) = wheels.glob("*.whl")
    shutil.copyfile(wheel, scratch / wheel.name)
    installed = inside("/venv/bin/pip", "install", "--quiet", "--no-deps", "--force-reinstall",
                       f"/tmp/{scratch.name}/{wheel.name}")
    assert installed.returncode == 0, installed.stderr
    yield scratch
    shutil.rmtree(scratch, ignore_errors=True)


def inside(*argv):
    """A command in the arm64 root, with a clean environment (nothing of the host's Python)."""
    return subprocess.run(["chroot", str(ROOT), "/usr/bin/env", "-i", "PATH=/venv/bin:/usr/bin:/bin", "HOME=/root",
                           "COLUMNS=80", *argv], capture_output=True, text=True, timeout=900)


def test_the_root_is_aarch64(arm64):
    ran = inside("/venv/bin/python", "-c", "import platform; print(platform.machine())")
    assert ran.stdout.strip() == "aarch64"


def test_doctor_run_and_bench_on_aarch64(arm64, bundle):
    shutil.copytree(bundle, arm64 / "b.kitbundle")
    where = f"/tmp/{arm64.name}/b.kitbundle"
    checked = inside("/venv/bin/kit", "doctor", where, "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    findings = {f["area"]: f for f in json.loads(checked.stdout)["findings"]}
    assert findings["cpu"]["detail"].startswith("aarch64")
    for name in ("digits.onnx", "digits.int8.onnx", "digits.int8.tflite"):
        assert findings[f"model {name}"]["status"] == "ok", findings[f"model {name}"]
    ran = inside("/venv/bin/kit", "run", where, "--random", "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["bundle"]["model"].startswith("digits.int8.")
    benched = inside("/venv/bin/kit", "bench", where, "--max-time", "0.02")
    assert benched.returncode == 0, benched.stderr
    assert "on aarch64" in benched.stdout and "digits.int8.tflite[tflite]" in benched.stdout
    assert "these timings may not describe any real device" in benched.stdout  # emulated: said where they appear
