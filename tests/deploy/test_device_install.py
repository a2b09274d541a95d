"""The device install: the `cpu` extra in a fresh virtual environment (a real pip install of
this checkout), with torch and matplotlib absent, runs doctor, run and bench on a bundle."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    """A virtual environment with `pip install ROOT[cpu]` and nothing else."""
    venv = tmp_path_factory.mktemp("device") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", f"{ROOT}[cpu]"],
                               capture_output=True, text=True, timeout=1200)
    assert installed.returncode == 0, installed.stderr[-2000:]
    return venv / "bin"


def device_kit(device, *argv, cwd=None):
    env = {**os.environ, "COLUMNS": "80"}
    env.pop("PYTHONPATH", None)  # the device sees its own install only
    return subprocess.run([str(device / "kit"), *argv], capture_output=True, text=True, timeout=600, env=env, cwd=cwd)


def test_the_cpu_extra_installs_no_torch_and_no_plotting(device):
    for module in ("torch", "matplotlib", "onnx"):
        probe = subprocess.run([str(device / "python"), "-c", f"import {module}"], capture_output=True, text=True)
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, module
    for module in ("onnxruntime", "ai_edge_litert", "cv2", "pytest_benchmark"):
        probe = subprocess.run([str(device / "python"), "-c", f"import {module}"], capture_output=True, text=True)
        assert probe.returncode == 0, probe.stderr


def test_doctor_run_and_bench_on_the_device(device, bundle, tmp_path):
    checked = device_kit(device, "doctor", str(bundle), "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    findings = {f["area"]: f for f in json.loads(checked.stdout)["findings"]}
    assert findings["runtime torch"]["status"] == "info"  # absent, and not needed
    assert all(findings[f"model {name}"]["status"] == "ok"
               for name in ("digits.onnx", "digits.int8.onnx", "digits.int8.tflite"))
    ran = device_kit(device, "run", str(bundle / "models" / "digits.int8.tflite"), "--random", "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["outputs"]
    benched = device_kit(device, "bench", str(bundle / "models" / "digits.onnx"),
                         str(bundle / "models" / "digits.int8.tflite"), "--max-time", "0.05", "--save-json",
                         str(tmp_path / "bench.json"))
    assert benched.returncode == 0, benched.stderr
    rows = json.loads((tmp_path / "bench.json").read_text())["benchmarks"]
    assert len(rows) == 2 and all(row["stats"]["median"] > 0 for row in rows)
