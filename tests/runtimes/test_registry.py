"""The registry: built-ins, lazy lookup, file-based choice, and plugins through entry points."""

import json
import textwrap

import numpy as np
import pytest
from kit.runtimes import registry

import kit
from kit.cli import main
from kit.core.errors import InputError, ModelFileError, RuntimeUnavailableError

PLUGIN = '''
import json
import numpy as np
from kit.runtimes.base import Runtime
from kit.core.specs import TensorSpec


class ToyRuntime(Runtime):
    """Runs a ".toy" file: JSON holding a weight matrix, y = x @ W."""

    name = "toy"
    suffixes = (".toy",)
    extra = "toy"

    def _load(self):
        with open(self.model_path) as handle:
            self._weight = np.asarray(json.load(handle)["weight"], dtype=np.float32)
        rows, cols = self._weight.shape
        return [TensorSpec("x", ("batch", rows))], [TensorSpec("y", ("batch", cols))]

    def _run(self, feeds):
        return {"y": feeds["x"] @ self._weight}


class OnnxToo(ToyRuntime):
    """A plugin that also claims .onnx files, at the default priority."""
    name = "onnx-too"
    suffixes = (".onnx",)


class OnnxFirst(OnnxToo):
    """A plugin that asks to be the default for .onnx, above the built-in."""
    name = "onnx-first"
    priority = 101


class NeedsMissingLibrary(ToyRuntime):
    name = "needs-lib"
    suffixes = (".needs",)
    extra = "needs-lib"
    modules = ("kit_test_library_that_is_not_installed",)
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """Install a third-party backend the way pip would: a module plus entry points in dist-info."""
    (tmp_path / "kit_toy_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "kit_toy_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kit-toy-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""
        [kit.runtimes]
        toy = kit_toy_plugin:ToyRuntime
        needs-lib = kit_toy_plugin:NeedsMissingLibrary
        broken = kit_toy_plugin_missing_module:Whatever
        onnxruntime = kit_toy_plugin:ToyRuntime
        a-onnx-too = kit_toy_plugin:OnnxToo
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    model = tmp_path / "double.toy"
    model.write_text(json.dumps({"weight": [[2.0, 0.0], [0.0, 2.0]]}))
    return model


def test_builtins_are_lazy_strings():
    assert registry.BUILTIN == {"onnxruntime": "kit.runtimes.ort:OnnxRuntime", "torch": "kit.runtimes.pytorch:TorchRuntime",
                                "edgetpu": "kit.runtimes.edgetpu.runtime:EdgeTPURuntime",
                                "tflite": "kit.runtimes.tflite:TFLiteRuntime",
                                "tensorrt": "kit.runtimes.tensorrt.runtime:TensorRTRuntime",
                                "openvino": "kit.runtimes.openvino:OpenVinoRuntime"}
    assert registry.get("onnxruntime").__name__ == "OnnxRuntime"


def test_unknown_runtime_lists_the_known_ones():
    with pytest.raises(InputError, match="expected a runtime among onnxruntime, torch, edgetpu, tflite.*found 'tensorflow'"):
        registry.get("tensorflow")


def test_choice_by_file(tmp_path):
    assert registry.candidates("m.onnx") == ["onnxruntime"]
    assert registry.candidates("m.onnx", named=True) == ["onnxruntime", "openvino"]  # OpenVINO when named
    assert registry.candidates("m.pt2") == ["torch"]
    assert registry.candidates("m.tflite") == ["tflite"]
    assert registry.candidates("m.tflite", named=True) == ["tflite", "openvino"]
    assert registry.candidates("m_edgetpu.tflite") == ["edgetpu"]
    assert registry.candidates("m.xml") == ["openvino"]
    with pytest.raises(ModelFileError, match=r"no runtime opens m.bin; expected one of the suffixes .onnx, .pt"):
        registry.create("m.bin")


def test_plugin_is_found_loaded_and_run(plugin):
    assert registry.known()["toy"] == "kit_toy_plugin:ToyRuntime"
    with kit.load(plugin) as rt:
        assert rt.name == "toy"
        np.testing.assert_array_equal(rt.run({"x": np.array([[1.0, 3.0]], np.float32)})["y"], [[2.0, 6.0]])
        with pytest.raises(InputError, match=r"expected dtype float32, found float64"):
            rt.run({"x": np.array([[1.0, 3.0]])})  # the base class checks plugin feeds too


def test_plugin_cannot_shadow_a_builtin(plugin):
    assert registry.known()["onnxruntime"] == "kit.runtimes.ort:OnnxRuntime"


def test_plugin_whose_library_is_missing(plugin, tmp_path):
    (tmp_path / "m.needs").write_text(json.dumps({"weight": [[1.0]]}))
    with pytest.raises(RuntimeUnavailableError,
                       match=r"runtime 'needs-lib' is not usable here \(ModuleNotFoundError: .*\). "
                             r'Install it with: pip install "edge-inference-kit\[needs-lib\]"'):
        kit.load(tmp_path / "m.needs", runtime="needs-lib")
    with pytest.raises(RuntimeUnavailableError, match="needs one of the runtimes needs-lib, and none is usable"):
        kit.load(tmp_path / "m.needs")


def test_broken_plugin_entry(plugin):
    with pytest.raises(RuntimeUnavailableError, match="registered as kit_toy_plugin_missing_module:Whatever but could"):
        registry.get("broken")
    assert registry.candidates(plugin) == ["toy"]  # the broken entry does not hide the others


def test_kit_runtimes_reports_every_backend(plugin, capsys):
    assert main(["runtimes", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["onnxruntime"]["usable"] and rows["onnxruntime"]["version"]
    assert "CPUExecutionProvider" in rows["onnxruntime"]["detail"]
    assert rows["toy"]["usable"] and rows["toy"]["suffixes"] == [".toy"]
    assert not rows["needs-lib"]["usable"]
    assert rows["needs-lib"]["install"] == 'pip install "edge-inference-kit[needs-lib]"'
    assert not rows["broken"]["usable"] and "could not be imported" in rows["broken"]["detail"]


def test_routing_follows_declared_priority_not_registration_order(plugin):
    """The plugin registered as "a-onnx-too" sorts before onnxruntime by name and comes after it in
    the table, yet the built-in (priority 100) stays the default for .onnx over it (priority 0)."""
    assert registry.candidates("m.onnx") == ["onnxruntime", "a-onnx-too"]


def test_equal_priorities_go_by_name(plugin, monkeypatch):
    monkeypatch.setitem(registry.BUILTIN, "b-onnx-too", "kit_toy_plugin:OnnxToo")  # in the table before a-
    assert registry.candidates("m.onnx") == ["onnxruntime", "a-onnx-too", "b-onnx-too"]


def test_a_plugin_that_declares_a_higher_priority_becomes_the_default(plugin, monkeypatch):
    monkeypatch.setitem(registry.BUILTIN, "zz-onnx-first", "kit_toy_plugin:OnnxFirst")
    assert registry.candidates("m.onnx") == ["zz-onnx-first", "onnxruntime", "a-onnx-too"]
