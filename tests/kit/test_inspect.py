"""kit inspect on a device: without the onnx package it still works through ONNX Runtime, and its
hints never send a device user to the [export] extra (PyTorch)."""

import json

from helpers import run_kit


def without(tmp_path, *modules):
    """An environment in which importing these modules fails, as on a device that lacks them."""
    blockers = tmp_path / "blocked"
    for module in modules:
        (blockers / module).mkdir(parents=True)
        (blockers / module / "__init__.py").write_text(f"raise ImportError('{module} is not installed here')\n")
    return {"PYTHONPATH": str(blockers)}


def test_inspect_without_onnx_reads_through_onnx_runtime(conv_onnx, tmp_path):
    result = run_kit("inspect", conv_onnx, "--json", env=without(tmp_path, "onnx"))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["inputs"] == [{"name": "input", "shape": ["batch", 3, 8, 8], "dtype": "float32"}]
    assert data["metadata"]["preprocess"]["mean"] == [0.5, 0.5, 0.5]  # read through ONNX Runtime's metadata
    assert data["runtime"]["runtime"] == "onnxruntime"
    note = " ".join(result.stderr.split())
    assert "note: the onnx package is not installed, so opsets, op counts are not shown" in note
    assert 'pip install "edge-inference-kit[quantize]"' in note and "[export]" not in note


def test_inspect_without_onnx_or_onnx_runtime_names_the_light_extra(conv_onnx, tmp_path):
    result = run_kit("inspect", conv_onnx, env=without(tmp_path, "onnx", "onnxruntime"))
    assert result.returncode == 2
    text = " ".join(result.stderr.split())
    assert "inspecting ONNX models needs the onnx package or ONNX Runtime; neither is installed" in text
    assert 'Install them (no PyTorch) with: pip install "edge-inference-kit[quantize]"' in text
    assert "[export]" not in text and "Traceback" not in text
