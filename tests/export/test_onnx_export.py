"""PyTorch -> ONNX export: architectures, source kinds, validation, provenance, bad input."""

import json

import models
import numpy as np
import pytest
import torch
from helpers import MODELS_FILE, factory, files_in
from kit.export import export_onnx

import kit
from kit.core import provenance
from kit.core.errors import DiskFullError, ExportError, InputError, ModelFileError, UnsafeFileError, ValidationError
from kit.core.fileio import sha256_of

ARCHITECTURES = {
    "make_conv": ["1x3x8x8"],
    "make_depthwise": ["1x3x8x8"],
    "make_linear": ["1x20"],
    "make_batchnorm": ["1x3x8x8"],
    "make_multi_input": ["image=1x3x8x8", "extra=1x7"],
    "make_multi_output": ["1x3x8x8"],
}


def torch_outputs(module, feeds: dict) -> dict:
    """What PyTorch itself computes, named the way the exporter names outputs."""
    with torch.no_grad():
        result = module(*(torch.from_numpy(a) for a in feeds.values()))
    if isinstance(result, dict):
        return {k: v.numpy() for k, v in result.items()}
    if isinstance(result, tuple):
        return {f"output{i}": v.numpy() for i, v in enumerate(result)}
    return {"output": result.numpy()}


def batch_of(spec_shapes: dict, batch: int, seed: int = 7) -> dict:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal((batch, *shape[1:])).astype(np.float32) for name, shape in spec_shapes.items()}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_factory_export_matches_pytorch_at_unseen_batch(tmp_path, name):
    result = export_onnx(factory(name), tmp_path / "m.onnx", input_shapes=ARCHITECTURES[name])

    assert result.exporter == "dynamo"
    assert result.batches == [1, 3]
    assert all(d.passed and d.max_abs < 1e-4 for d in result.validation)
    assert all(spec.shape[0] == "batch" for spec in result.inputs + result.outputs)
    # Independent check at batch 5, which export validation never saw.
    shapes = {spec.name: spec.shape for spec in result.inputs}
    feeds = batch_of(shapes, 5)
    with kit.load(result.path) as rt:
        got = rt.run(feeds)
    expected = torch_outputs(getattr(models, name)(), feeds)
    assert list(got) == list(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], atol=1e-5, rtol=1e-4)


def test_multi_output_keeps_dict_keys_as_output_names(tmp_path):
    result = export_onnx(factory("make_multi_output"), tmp_path / "m.onnx", input_shapes="1x3x8x8")
    assert [spec.name for spec in result.outputs] == ["logits", "features"]
    assert result.outputs[1].shape == ("batch", 256)


@pytest.mark.parametrize("name, shapes", [("make_multi_input", ["image=1x3x8x8", "extra=1x7"]),
                                          ("make_two_heads", ["1x3x8x8"])])
def test_multi_input_and_output_from_torchscript_and_pt2(tmp_path, name, shapes):
    module = getattr(models, name)()
    args = tuple(torch.randn(2, *(int(d) for d in s.split("=")[-1].split("x")[1:])) for s in shapes)
    torch.jit.trace(module, args, strict=False).save(str(tmp_path / "m.pt"))
    batch = torch.export.Dim("batch")
    program = torch.export.export(module, args, dynamic_shapes=tuple({0: batch} for _ in args))
    torch.export.save(program, str(tmp_path / "m.pt2"))
    feeds = {f"in{i}": np.random.default_rng(i).standard_normal((4, *a.shape[1:])).astype(np.float32)
             for i, a in enumerate(args)}
    expected = torch_outputs(module, feeds)

    for source in ("m.pt", "m.pt2"):
        result = export_onnx(tmp_path / source, tmp_path / f"{source}.onnx",
                             input_shapes=shapes if source == "m.pt" else None)
        assert [s.name for s in result.inputs] == ["image", "extra"] if name == "make_multi_input" else True
        with kit.load(result.path) as rt:
            got = rt.run(dict(zip([s.name for s in rt.inputs], feeds.values())))
        assert len(got) == len(expected)
        for g, e in zip(got.values(), expected.values()):
            np.testing.assert_allclose(g, e, atol=1e-5, rtol=1e-4)


def test_integer_token_inputs(tmp_path):
    result = export_onnx(factory("make_token_classifier"), tmp_path / "m.onnx", input_shapes="1x5:int64")
    assert result.inputs[0].describe() == "'tokens' int64[batch,5]"
    tokens = np.array([[0, 9, 3, 3, 1]], np.int64)
    with kit.load(result.path) as rt:
        got = rt.run({"tokens": tokens})["output"]
    np.testing.assert_allclose(got, torch_outputs(models.make_token_classifier(), {"t": tokens})["output"], atol=1e-6)


def test_batch_axis_with_another_name_is_validated_at_two_sizes(tmp_path):
    result = export_onnx(factory("make_linear"), tmp_path / "m.onnx", input_shapes="1x20", static=False,
                         dynamic=["0=n"])
    assert result.inputs[0].shape == ("n", 20) and result.batches == [1, 3]


@pytest.mark.parametrize("kwargs, message", [
    ({"static": True, "dynamic": ["0=n"]}, "--static fixes the batch axis, but --dynamic makes axis 0 dynamic"),
    ({"dynamic": ["y:1=width"]}, "--dynamic names the input y, but .* takes input"),
    ({"opset": 99}, "expected --opset between 7 and"),
    ({"input_shapes": "99999999999x99999"}, "under 2\\*\\*31 elements"),
])
def test_contradictory_or_impossible_options(tmp_path, kwargs, message):
    kwargs = {"input_shapes": "1x20", **kwargs}
    with pytest.raises(InputError, match=message):
        export_onnx(factory("make_linear"), tmp_path / "m.onnx", **kwargs)
    assert files_in(tmp_path) == []


def test_torchscript_source(tmp_path):
    module = models.make_batchnorm()
    traced = torch.jit.trace(module, torch.randn(2, 3, 8, 8))
    traced.save(str(tmp_path / "bn.pt"))

    result = export_onnx(tmp_path / "bn.pt", tmp_path / "bn.onnx", input_shapes="1x3x8x8")

    feeds = batch_of({result.inputs[0].name: (1, 3, 8, 8)}, 4)
    with kit.load(result.path) as rt:
        got = rt.run(feeds)["output"]
    np.testing.assert_allclose(got, torch_outputs(module, feeds)["output"], atol=1e-5, rtol=1e-4)
    assert provenance.read(result.path)["source_kind"] == "torchscript"


def test_exported_program_source_brings_its_own_shapes(tmp_path):
    module = models.make_depthwise()
    program = torch.export.export(module, (torch.randn(2, 3, 8, 8),),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(tmp_path / "dw.pt2"))

    result = export_onnx(tmp_path / "dw.pt2", tmp_path / "dw.onnx")  # no input shapes needed

    assert result.inputs[0].shape == ("batch", 3, 8, 8)
    feeds = batch_of({result.inputs[0].name: (1, 3, 8, 8)}, 6)
    with kit.load(result.path) as rt:
        got = rt.run(feeds)["output"]
    np.testing.assert_allclose(got, torch_outputs(module, feeds)["output"], atol=1e-5, rtol=1e-4)


def test_static_export_fixes_the_batch(tmp_path):
    result = export_onnx(factory("make_linear"), tmp_path / "m.onnx", input_shapes="2x20", static=True)
    assert result.inputs[0].shape == (2, 20)
    assert result.batches == [2]
    with kit.load(result.path) as rt, pytest.raises(InputError, match=r"expected shape \[2,20\], found \[3, 20\]"):
        rt.run({"input": np.zeros((3, 20), np.float32)})


def test_more_dynamic_axes_by_name(tmp_path):
    result = export_onnx(factory("make_fully_convolutional"), tmp_path / "m.onnx", input_shapes="1x3x8x8",
                         dynamic=["2=height", "x:3=width"])
    assert result.inputs[0].shape == ("batch", 3, "height", "width")
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 3, 5, 11)).astype(np.float32)}
    with kit.load(result.path) as rt:
        got = rt.run(feeds)["output"]
    np.testing.assert_allclose(got, torch_outputs(models.make_fully_convolutional(), feeds)["output"], atol=1e-5)


def test_old_opset_uses_the_torchscript_exporter(tmp_path):
    result = export_onnx(factory("make_conv"), tmp_path / "m.onnx", input_shapes="1x3x8x8", opset=13)
    assert (result.exporter, result.opset) == ("torchscript", 13)
    assert "opset 13" in result.notes[0]
    assert all(d.passed for d in result.validation)


def test_simplify_keeps_outputs_and_shrinks_the_torchscript_graph(tmp_path):
    from kit.inspect_model import inspect_model

    kwargs = {"input_shapes": "1x3x8x8", "exporter": "torchscript"}
    plain = export_onnx(factory("make_reshape_by_shape"), tmp_path / "a.onnx", **kwargs)
    slim = export_onnx(factory("make_reshape_by_shape"), tmp_path / "b.onnx", simplify=True, **kwargs)
    assert slim.simplified and all(d.passed and d.max_abs < 1e-5 for d in slim.validation)
    # Measured: 10 nodes (Shape/Gather/Unsqueeze/Concat feeding Reshape) become 3.
    assert inspect_model(plain.path)["nodes"] == 10
    assert inspect_model(slim.path)["nodes"] == 3


def test_provenance_is_recorded(tmp_path):
    result = export_onnx(factory("make_conv"), tmp_path / "m.onnx", input_shapes="1x3x8x8",
                         preprocess="size=8x8,mean=0.485/0.456/0.406,std=0.229/0.224/0.225,resize=letterbox")
    stored = provenance.read(result.path)
    assert stored["kit_version"] == kit.__version__
    assert stored["source"] == factory("make_conv")
    assert stored["source_sha256"] == sha256_of(MODELS_FILE)
    assert stored["inputs"] == [{"name": "input", "shape": ["batch", 3, 8, 8], "dtype": "float32"}]
    assert stored["outputs"] == [{"name": "output", "shape": ["batch", 5], "dtype": "float32"}]
    assert stored["preprocess"]["mean"] == [0.485, 0.456, 0.406]
    assert stored["preprocess"]["resize"] == "letterbox"
    assert stored["precision"] == "fp32" and stored["exporter"] == "dynamo"
    assert stored["validation"]["outputs"][0]["passed"] is True
    json.dumps(stored)  # plain JSON all the way down


def test_weights_are_loaded_into_the_factory(tmp_path):
    trained = models.make_linear()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.3)
    torch.save(trained.state_dict(), tmp_path / "w.pt")

    result = export_onnx(factory("make_linear"), tmp_path / "m.onnx", input_shapes="1x20", weights=str(tmp_path / "w.pt"))

    feeds = batch_of({"input": (1, 20)}, 2)
    with kit.load(result.path) as rt:
        got = rt.run(feeds)["output"]
    np.testing.assert_allclose(got, torch_outputs(trained, feeds)["output"], atol=1e-5)
    assert np.abs(got - torch_outputs(models.make_linear(), feeds)["output"]).max() > 0.1
    assert provenance.read(result.path)["weights_sha256"] == sha256_of(tmp_path / "w.pt")


# ----- validation catches a real mismatch ------------------------------------------------


def test_validation_catches_a_traced_branch_and_writes_nothing(tmp_path):
    out = tmp_path / "m.onnx"
    with pytest.raises(ValidationError, match=r"'output' max abs error [0-9.e+-]+") as caught:
        export_onnx(factory("make_batch_dependent"), out, input_shapes="1x4", exporter="torchscript")
    assert "atol=0.0001" in str(caught.value)
    assert files_in(tmp_path) == []


def test_validation_failure_keeps_an_existing_output(tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous good model")
    with pytest.raises(ValidationError):
        export_onnx(factory("make_batch_dependent"), out, input_shapes="1x4", exporter="torchscript")
    assert out.read_bytes() == b"previous good model"
    assert files_in(tmp_path) == ["m.onnx"]


# ----- bad input ----------------------------------------------------------------------------


def test_pickled_model_is_refused_without_opt_in(tmp_path):
    torch.save(models.make_linear(), tmp_path / "whole.pt")
    with pytest.raises(UnsafeFileError, match="pickled Python object.*--allow-pickle"):
        export_onnx(tmp_path / "whole.pt", tmp_path / "m.onnx", input_shapes="1x20")
    assert files_in(tmp_path) == ["whole.pt"]

    result = export_onnx(tmp_path / "whole.pt", tmp_path / "m.onnx", input_shapes="1x20", allow_pickle=True)
    assert all(d.passed for d in result.validation)


def test_weights_with_pickled_objects_are_refused(tmp_path):
    torch.save({"state_dict": models.make_linear().state_dict(), "extra": models.make_linear()}, tmp_path / "w.pt")
    with pytest.raises(UnsafeFileError, match="weights_only=True"):
        export_onnx(factory("make_linear"), tmp_path / "m.onnx", input_shapes="1x20", weights=str(tmp_path / "w.pt"))


def test_state_dict_as_source_points_to_a_factory(tmp_path):
    torch.save(models.make_linear().state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ExportError, match=r"weights only \(a state_dict\).*--weights"):
        export_onnx(tmp_path / "sd.pt", tmp_path / "m.onnx", input_shapes="1x20")


def test_weights_that_do_not_fit_name_the_keys(tmp_path):
    torch.save(models.make_conv().state_dict(), tmp_path / "w.pt")
    with pytest.raises(ExportError, match=r"do not fit .*size mismatch for 0\.weight"):
        export_onnx(factory("make_linear"), tmp_path / "m.onnx", input_shapes="1x20", weights=str(tmp_path / "w.pt"))


def test_factory_that_raises(tmp_path):
    with pytest.raises(ExportError, match="raised ValueError: the factory cannot find its config"):
        export_onnx(factory("make_raises"), tmp_path / "m.onnx", input_shapes="1x4")
    assert files_in(tmp_path) == []


def test_factory_that_returns_no_module(tmp_path):
    with pytest.raises(ExportError, match="returned int; expected a torch.nn.Module"):
        export_onnx(factory("make_not_a_module"), tmp_path / "m.onnx", input_shapes="1x4")


def test_factory_name_missing(tmp_path):
    with pytest.raises(ExportError, match="expected a function 'make_nothing'"):
        export_onnx(factory("make_nothing"), tmp_path / "m.onnx", input_shapes="1x4")


def test_package_module_factory(tmp_path):
    result = export_onnx("kit.models:make_digits_cnn", tmp_path / "m.onnx", input_shapes="1x1x8x8")
    assert result.inputs[0].shape == ("batch", 1, 8, 8)


def test_file_that_is_no_model(tmp_path):
    (tmp_path / "notes.pt").write_text("these are my notes, not a model")
    with pytest.raises(ModelFileError, match="notes.pt is not a PyTorch model file"):
        export_onnx(tmp_path / "notes.pt", tmp_path / "m.onnx", input_shapes="1x4")
    (tmp_path / "notes.pt2").write_text("not a program")
    with pytest.raises(ModelFileError, match="is not a torch.export program"):
        export_onnx(tmp_path / "notes.pt2", tmp_path / "m.onnx")
    with pytest.raises(ModelFileError, match="expected a PyTorch source"):
        export_onnx(MODELS_FILE, tmp_path / "m.onnx", input_shapes="1x4")


@pytest.mark.parametrize("shapes, message", [
    (None, "expected --input-shape for the input 'input'"),
    (["1x3x0"], "expected a shape like 1x3x224x224"),
    (["image=1x3x8x8"], r"takes the inputs image, extra; --input-shape gave image"),
    (["1x3x8x8"], "takes 2 inputs"),
])
def test_input_shape_errors(tmp_path, shapes, message):
    name = "make_multi_input" if shapes and "image" in shapes[0] or shapes == ["1x3x8x8"] else "make_linear"
    with pytest.raises(InputError, match=message):
        export_onnx(factory(name), tmp_path / "m.onnx", input_shapes=shapes)


def test_wrong_example_shape_for_the_model(tmp_path):
    with pytest.raises(InputError, match=r"rejected inputs 'input' float32\[batch,21\]: RuntimeError: mat1 and mat2"):
        export_onnx(factory("make_linear"), tmp_path / "m.onnx", input_shapes="1x21")
    assert files_in(tmp_path) == []


def test_output_must_be_onnx_and_never_the_input(tmp_path):
    with pytest.raises(InputError, match="ending in .onnx"):
        export_onnx(factory("make_linear"), tmp_path / "m.tflite", input_shapes="1x20")
    with pytest.raises(InputError, match="does not exist"):
        export_onnx(factory("make_linear"), tmp_path / "missing" / "m.onnx", input_shapes="1x20")


def test_module_in_memory(tmp_path):
    module = models.make_multi_input()
    result = export_onnx(module, tmp_path / "m.onnx", input_shapes=["image=1x3x8x8", "extra=1x7"])
    assert [s.name for s in result.inputs] == ["image", "extra"]
    assert provenance.read(result.path)["source"] == "<in-memory TwoInputs>"


def test_fallback_to_torchscript_when_dynamo_fails_says_why(tmp_path, capfd):
    result = export_onnx(factory("make_item_in_forward"), tmp_path / "m.onnx", input_shapes="1x4")
    assert result.exporter == "torchscript"
    assert result.notes[0].startswith("dynamo exporter failed (")
    assert "\x1b[" not in result.notes[0] and result.notes[0].endswith("used the TorchScript exporter.")
    assert all(d.passed for d in result.validation)
    assert provenance.read(result.path)["exporter"] == "torchscript"
    captured = capfd.readouterr()
    assert "def forward" not in captured.out + captured.err  # the exporters' chatter is kept from the user


def test_exporter_can_be_forced(tmp_path):
    with pytest.raises(ExportError, match="the dynamo exporter failed: .*Try --exporter torchscript"):
        export_onnx(factory("make_item_in_forward"), tmp_path / "m.onnx", input_shapes="1x4", exporter="dynamo")
    assert files_in(tmp_path) == []


# ----- what lands beside the model ----------------------------------------------------------


def _save_with_external_data(path):
    """Rewrite the model at ``path`` with its weights in ``path.data``, as big models are exported."""
    import onnx
    from onnx.external_data_helper import convert_model_to_external_data

    model = onnx.load(path)
    convert_model_to_external_data(model, location=path.name + ".data", size_threshold=0)
    onnx.save(model, path)


def test_a_single_file_export_removes_the_data_of_the_model_it_replaces(tmp_path):
    out = tmp_path / "m.onnx"
    export_onnx(factory("make_conv"), out, input_shapes="1x3x8x8")
    _save_with_external_data(out)
    (tmp_path / "notes.data").write_text("unrelated")
    assert files_in(tmp_path) == ["m.onnx", "m.onnx.data", "notes.data"]

    result = export_onnx(factory("make_conv"), out, input_shapes="1x3x8x8")
    assert files_in(tmp_path) == ["m.onnx", "notes.data"]
    assert result.size_bytes == out.stat().st_size


def test_a_data_file_the_old_model_did_not_reference_is_kept_and_not_counted(tmp_path):
    out = tmp_path / "m.onnx"
    (tmp_path / "m.onnx.data").write_bytes(b"\0" * 5_000_000)  # someone else's file with a companion's name
    result = export_onnx(factory("make_conv"), out, input_shapes="1x3x8x8")
    assert files_in(tmp_path) == ["m.onnx", "m.onnx.data"]
    assert result.size_bytes == out.stat().st_size < 100_000


def test_a_full_disk_during_export_is_named_and_leaves_nothing(tmp_path, monkeypatch):
    import errno

    import onnx

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx, "save_model", full)
    with pytest.raises(DiskFullError, match=rf"^no space left on the disk holding {tmp_path} while writing m.onnx\. "
                                            "Nothing was written"):
        export_onnx(factory("make_conv"), tmp_path / "m.onnx", input_shapes="1x3x8x8")
    assert files_in(tmp_path) == []


def test_a_full_file_system_through_the_cli(tmp_path):
    from helpers import disk_full_line, run_on_full_disk

    result = run_on_full_disk(tmp_path, f'"$KIT" export {factory("make_depthwise")} --input-shape 1x3x8x8 '
                                        '-o "$DISK/m.onnx"; code=$?; ls -A "$DISK"; exit $code')
    assert result.returncode == 2
    assert result.stdout == ""  # nothing left on the full disk
    assert result.stderr.splitlines() == [disk_full_line(tmp_path / "disk", "m.onnx")]


def test_export_help_names_every_format():
    from helpers import run_kit

    commands, export = run_kit("--help"), run_kit("export", "--help")
    assert "export a PyTorch model to ONNX, TFLite or OpenVINO IR (validated)" in " ".join(commands.stdout.split())
    assert ("output file: model.onnx, model.tflite or model.xml (OpenVINO IR; the suffix picks the format)"
            in " ".join(export.stdout.split()))
