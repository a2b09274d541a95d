"""The exporter registry: the format from its name or the output's suffix, clear errors, one
result type, and a new format added with one module and one line."""

import json

import numpy as np
import pytest

import kit.export
from kit.core.errors import InputError
from kit.export import registry
from kit.export.result import ExportResult

TOY_EXPORTER = '''
import json
from pathlib import Path
from kit.core.specs import TensorSpec
from kit.export.result import ExportResult


def export_toy(source, output, *, scale=1.0, **ignored):
    """Writes y = scale * x as JSON: a format in one small module."""
    Path(output).write_text(json.dumps({"scale": scale, "source": str(source)}))
    return ExportResult(Path(output), "toy", [TensorSpec("x", ("batch", 2))], [TensorSpec("y", ("batch", 2))], [],
                        Path(output).stat().st_size, 0.0, notes=["a toy"])
'''


def test_the_format_comes_from_the_name_or_the_suffix():
    assert registry.formats() == ["onnx", "tflite", "openvino"]
    assert registry.format_for("m.onnx") == "onnx"
    assert registry.format_for("M.TFLITE") == "tflite"
    assert registry.format_for("m.xml") == "openvino"
    assert registry.format_for("m.onnx", "tflite") == "tflite"  # a named format wins; its exporter checks the suffix
    with pytest.raises(InputError, match=r"expected an output path ending in \.onnx or \.tflite or \.xml, found "
                                         r"m\.txt"):
        registry.format_for("m.txt")
    with pytest.raises(InputError, match=r"expected a format among onnx, tflite, openvino, found 'tensorflow'"):
        registry.format_for("m.pb", "tensorflow")


def test_the_exporters_are_imported_only_when_asked_for():
    assert registry.EXPORTERS["onnx"] == ((".onnx",), "kit.export.onnx:export_onnx")
    assert registry.exporter("onnx") is kit.export.export_onnx


def test_a_new_format_is_one_module_and_one_line(tmp_path, monkeypatch):
    (tmp_path / "kit_toy_exporter.py").write_text(TOY_EXPORTER)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry.EXPORTERS, "toy", ((".toy",), "kit_toy_exporter:export_toy"))
    result = kit.export.export("model.py:make", tmp_path / "m.toy", scale=2.0)
    assert isinstance(result, ExportResult) and result.format == "toy"
    assert json.loads((tmp_path / "m.toy").read_text()) == {"scale": 2.0, "source": "model.py:make"}
    data = result.to_dict()
    assert data["format"] == "toy" and data["notes"] == ["a toy"] and data["size_bytes"] == result.size_bytes
    assert [spec["name"] for spec in data["inputs"]] == ["x"]


def test_onnx_through_the_registry_is_the_onnx_exporter(tmp_path):
    """One result type: the ONNX export read through the registry, with its own fields in its JSON."""
    import torch

    model = torch.nn.Linear(3, 2).eval()
    result = kit.export.export(model, tmp_path / "m.onnx", input_shapes="1x3")
    data = result.to_dict()
    assert data["format"] == "onnx" and data["exporter"] in ("dynamo", "torchscript") and data["opset"] >= 17
    assert data["validation"]["batches"] == [1, 3]
    assert "precision" not in data  # a TFLite field
    with kit.load(result.path) as rt:
        x = np.ones((1, 3), np.float32)
        np.testing.assert_allclose(rt.run({rt.inputs[0].name: x})[rt.outputs[0].name],
                                   model(torch.from_numpy(x)).detach().numpy(), atol=1e-5)
