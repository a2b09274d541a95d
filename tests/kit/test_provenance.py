"""Provenance travels inside the model file (ONNX metadata, TFLite metadata); old sidecars still
read; corrupt or hostile provenance is a clean error naming the file at fault, and never makes
the kit read or write outside the model's folder."""

import json
import shutil

import cv2
import numpy as np
import pytest
from helpers import files_in, run_kit

import kit
from kit.core import provenance
from kit.core.errors import ModelFileError

PREPROCESS = "color=gray,scale=0.00392156862745098"


@pytest.fixture(scope="module")
def embedded(digits, tmp_path_factory):
    """An int8 export with stored preprocessing, as the kit writes it now."""
    from kit.export.tflite import export_tflite
    folder = tmp_path_factory.mktemp("embedded")
    return export_tflite(digits.module, folder / "digits.tflite", precision="int8", input_shapes="1x1x8x8",
                         calib=str(digits.calib), preprocess=PREPROCESS).path


@pytest.fixture(scope="module")
def legacy(digits, tmp_path_factory):
    """The same export as older kits wrote it: the converter's .tflite untouched, provenance in a sidecar."""
    from kit.export.tflite import export_tflite
    folder = tmp_path_factory.mktemp("legacy")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(provenance, "write_tflite", provenance.write_sidecar)
        return export_tflite(digits.module, folder / "digits.tflite", precision="int8", input_shapes="1x1x8x8",
                             calib=str(digits.calib), preprocess=PREPROCESS).path


def digit_image(digits, folder):
    path = folder / "digit.png"
    cv2.imwrite(str(path), np.round(np.load(digits.test)["x"][0, 0] * 255).astype(np.uint8))
    return path


def plain(value):
    """A flatbuffer object (ModelT) as plain Python, to compare two models field by field."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "__dict__"):
        return {k: plain(v) for k, v in vars(value).items()}
    return value


def model_object(path):
    from ai_edge_litert.tools import flatbuffer_utils

    return plain(flatbuffer_utils.convert_bytearray_to_object(path.read_bytes()))


# ----- the provenance travels with the file --------------------------------------------------------


def test_a_tflite_copied_alone_keeps_its_names_and_preprocessing(embedded, digits, tmp_path):
    assert files_in(embedded.parent) == ["digits.tflite"]  # no sidecar any more
    device = tmp_path / "device"
    device.mkdir()
    shutil.copy(embedded, device / "model.tflite")
    stored = provenance.read(device / "model.tflite")
    assert stored["precision"] == "int8" and stored["preprocess"]["scale"] == pytest.approx(1 / 255)
    with kit.load(device / "model.tflite") as rt:
        assert [s.name for s in rt.inputs + rt.outputs] == ["input", "output"]
    image = digit_image(digits, tmp_path)
    here, there = (run_kit("run", model, "--image", image, "--json") for model in (embedded, device / "model.tflite"))
    assert here.returncode == there.returncode == 0, there.stderr
    assert json.loads(here.stdout)["outputs"] == json.loads(there.stdout)["outputs"]
    assert "output" in json.loads(there.stdout)["outputs"]


def test_embedding_changes_nothing_else_in_the_model(legacy, digits, tmp_path):
    from kit.runtimes.edgetpu.readiness import check_edgetpu

    copy = tmp_path / "copy.tflite"
    shutil.copy(legacy, copy)
    provenance.write_tflite(copy, provenance.read(legacy))
    provenance.write_tflite(copy, provenance.read(legacy) | {"note": "written twice: replaced, not added"})
    before, after = model_object(legacy), model_object(copy)
    kit_buffer = after["buffers"].pop()
    kit_entry = after["metadata"].pop()
    assert after == before  # operators, tensors, weights, signatures and the converter's own metadata
    assert kit_entry == {"name": b"kit.provenance", "buffer": len(before["buffers"])}
    assert json.loads(bytes(kit_buffer["data"]))["note"].startswith("written twice")
    assert not provenance.sidecar(copy).exists()

    x = np.load(digits.test)["x"][:20].transpose(0, 2, 3, 1)
    with kit.load(legacy, raw=True) as old, kit.load(copy, raw=True) as new:
        spec = old.inputs[0]
        for row in x:
            feeds = {"input": np.clip(np.round(row[None] / spec.scale) + spec.zero_point, -128, 127).astype(np.int8)}
            np.testing.assert_array_equal(old.run(feeds)["output"], new.run(feeds)["output"])
    readiness = [check_edgetpu(path, run_compiler=False).to_dict() for path in (legacy, copy)]
    assert [{k: v for k, v in r.items() if k not in ("path", "compiler_command")} for r in readiness] == \
        [{k: v for k, v in readiness[0].items() if k not in ("path", "compiler_command")}] * 2


def test_old_sidecars_are_still_read(legacy):
    assert provenance.sidecar(legacy).is_file()
    assert provenance.read(legacy)["precision"] == "int8"
    with kit.load(legacy) as rt:
        assert [s.name for s in rt.inputs + rt.outputs] == ["input", "output"]


def test_the_embedded_provenance_wins_over_a_stale_sidecar(embedded, tmp_path):
    shutil.copy(embedded, tmp_path / "m.tflite")
    provenance.sidecar(tmp_path / "m.tflite").write_text(json.dumps({"precision": "fp32", "inputs": []}))
    assert provenance.read(tmp_path / "m.tflite")["precision"] == "int8"


@pytest.mark.parametrize("original", ["embedded", "legacy"])
def test_a_compiled_model_without_metadata_falls_back_to_its_original(original, embedded, legacy, tmp_path):
    """edgetpu_compiler drops metadata; NAME_edgetpu.tflite is read through NAME.tflite beside it."""
    source = {"embedded": embedded, "legacy": legacy}[original]
    shutil.copy(source, tmp_path / "m.tflite")
    if original == "legacy":
        shutil.copy(provenance.sidecar(source), provenance.sidecar(tmp_path / "m.tflite"))
    shutil.copy(legacy, tmp_path / "m_edgetpu.tflite")  # a model without metadata, as the compiler writes
    assert provenance.read(tmp_path / "m_edgetpu.tflite") == provenance.read(tmp_path / "m.tflite") != {}


def test_models_with_weights_after_the_flatbuffer_get_a_sidecar(legacy, tmp_path):
    """Above 2 GB, TFLite stores buffers after the flatbuffer by offset; repacking would lose them."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(legacy.read_bytes())
    largest = max(range(len(model.buffers)), key=lambda i: 0 if model.buffers[i].data is None
                  else len(model.buffers[i].data))
    weights = model.buffers[largest].data.tobytes()
    model.buffers[largest].data, model.buffers[largest].offset, model.buffers[largest].size = None, 1, 1
    packed = bytearray(flatbuffer_utils.convert_object_to_bytearray(model))
    offset = -len(packed) % 16 + len(packed)
    packed += bytes(offset - len(packed)) + weights
    flatbuffer_utils.update_packed_buffer(flatbuffer_utils.Model.GetRootAs(packed, 0).Buffers(largest),
                                          offset=offset, size=len(weights))
    path = tmp_path / "large.tflite"
    path.write_bytes(bytes(packed))
    provenance.write_tflite(path, {"precision": "int8"})
    assert path.read_bytes() == bytes(packed)
    assert provenance.read(path) == {"precision": "int8"} and provenance.sidecar(path).is_file()
    with kit.load(path, raw=True) as rt:  # the interpreter reads the offset buffers
        (output,) = rt.run({rt.inputs[0].name: np.zeros((1, 8, 8, 1), np.int8)}).values()
    assert output.shape == (1, 10)


# ----- corrupt provenance: one clean line that names the file at fault ------------------------------


def one_error_line(result, *fragments):
    assert result.returncode == 2, (result.returncode, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    text = " ".join(result.stderr.split())
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in text, (fragment, result.stderr)


def corrupt_onnx(folder, value):
    import onnx

    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 8, 8])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 1, 8, 8])])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = "kit.provenance", value
    path = folder / "corrupt.onnx"
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("value, problem", [("{not json", "is not valid JSON"), ("[1, 2]", "is a JSON array, not an "
                                                                                           "object")])
def test_corrupt_provenance_inside_an_onnx(value, problem, digits, tmp_path):
    model = corrupt_onnx(tmp_path, value)
    with pytest.raises(ModelFileError, match=f"the kit provenance in .*corrupt.onnx is corrupt \\(its metadata "
                                             f"property kit.provenance {problem}"):
        provenance.read(model)
    image = digit_image(digits, tmp_path)
    for argv in (("inspect", model), ("run", model, "--image", image), ("compare", model, model)):
        one_error_line(run_kit(*argv), f"the kit provenance in {model} is corrupt", "Re-export the model")
    assert sorted(files_in(tmp_path)) == ["corrupt.onnx", "digit.png"]


def test_corrupt_provenance_inside_a_tflite(embedded, tmp_path):
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(embedded.read_bytes())
    (entry,) = [m for m in model.metadata if m.name == b"kit.provenance"]
    model.buffers[entry.buffer].data = np.frombuffer(b'{"inputs": [', np.uint8)
    path = tmp_path / "m.tflite"
    path.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    one_error_line(run_kit("run", path, "--random"), f"the kit provenance in {path} is corrupt (its metadata entry "
                                                     "kit.provenance is not valid JSON")


def test_a_corrupt_sidecar_is_named_not_the_model(legacy, tmp_path):
    shutil.copy(legacy, tmp_path / "m.tflite")
    sidecar = provenance.sidecar(tmp_path / "m.tflite")
    sidecar.write_text('{"inputs": [')
    for argv in (("run", tmp_path / "m.tflite", "--random"), ("inspect", tmp_path / "m.tflite")):
        one_error_line(run_kit(*argv), f"the kit provenance in {sidecar} is corrupt (it is not valid JSON",
                       "Delete or fix this file")


def test_a_file_that_is_not_onnx_is_a_clean_error_everywhere(digits, tmp_path):
    text = tmp_path / "text.onnx"
    text.write_text("a text file, not a model\n")
    with pytest.raises(ModelFileError, match="text.onnx is not a readable ONNX model"):
        provenance.read(text)
    one_error_line(run_kit("compare", digits.onnx, text), f"{text} is not a readable ONNX model")
    one_error_line(run_kit("run", text, "--random"), str(text))


# ----- nothing outside the model's folder ---------------------------------------------------------


def test_onnx_external_data_outside_the_folder_is_refused(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    weights = np.arange(6, dtype=np.float32).reshape(3, 2)
    (tmp_path / "secret.bin").write_bytes(weights.tobytes())  # readable, had the kit followed the location
    tensor = numpy_helper.from_array(weights, "W")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", str(weights.nbytes))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [tensor])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (tmp_path / "models").mkdir()
    path = tmp_path / "models" / "evil.onnx"
    path.write_bytes(model.SerializeToString())

    one_error_line(run_kit("inspect", path), f"{path} keeps tensor 'W' in '../secret.bin', outside the model's folder")
    for argv in (("run", path, "--random", "-o", tmp_path / "models" / "out.npz"), ("compare", path, path)):
        one_error_line(run_kit(*argv), str(path))  # ONNX Runtime refuses the location itself
    assert files_in(tmp_path / "models") == ["evil.onnx"]


def test_a_sidecar_linked_from_outside_is_not_followed(legacy, tmp_path):
    (tmp_path / "models").mkdir()
    shutil.copy(legacy, tmp_path / "models" / "m.tflite")
    outside = tmp_path / "elsewhere.json"
    outside.write_text(provenance.sidecar(legacy).read_text())
    provenance.sidecar(tmp_path / "models" / "m.tflite").symlink_to(outside)
    with pytest.raises(ModelFileError, match="m.tflite.kit.json leads outside the model's folder"):
        provenance.read(tmp_path / "models" / "m.tflite")


def test_traversal_in_sidecar_fields_writes_nothing_outside(legacy, tmp_path):
    """Names and recorded paths are data: an output named ../../escape stays a key in the .npz."""
    folder = tmp_path / "a" / "b"
    folder.mkdir(parents=True)
    shutil.copy(legacy, folder / "m.tflite")
    stored = provenance.read(legacy)
    stored.update(source="../../../etc/passwd", parent="../../x.onnx", outputs=[{"name": "../../escape"}],
                  calibration={"source": "../../calib.npz", "count": 1, "sha256": "0"})
    provenance.write_sidecar(folder / "m.tflite", stored)
    result = run_kit("run", folder / "m.tflite", "--random", "--json", "-o", folder / "out.npz")
    assert result.returncode == 0, result.stderr
    assert list(np.load(folder / "out.npz")) == ["../../escape"]
    assert files_in(tmp_path) == ["a"] and files_in(tmp_path / "a") == ["b"]
    assert files_in(folder) == ["m.tflite", "m.tflite.kit.json", "out.npz"]


def test_writing_replaces_a_link_instead_of_following_it(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    (tmp_path / "m.engine").write_bytes(b"engine")
    provenance.sidecar(tmp_path / "m.engine").symlink_to(precious)
    provenance.write_sidecar(tmp_path / "m.engine", {"format": "tensorrt-engine"})
    assert precious.read_text() == "keep me"
    assert provenance.read(tmp_path / "m.engine") == {"format": "tensorrt-engine"}
    assert sorted(files_in(tmp_path)) == ["m.engine", "m.engine.kit.json", "precious.txt"]


def test_malformed_names_in_provenance_are_a_clean_error(legacy, tmp_path):
    shutil.copy(legacy, tmp_path / "m.tflite")
    provenance.write_sidecar(tmp_path / "m.tflite", provenance.read(legacy) | {"inputs": 5})
    one_error_line(run_kit("run", tmp_path / "m.tflite", "--random"),
                   f"the kit provenance of {tmp_path / 'm.tflite'} lists its inputs as 5")


def test_every_tflite_export_is_an_ordinary_file(digits_tflite):
    """ai-edge-quantizer writes with os.open's default mode (0777 & ~umask); rewriting the model to store
    its provenance makes every variant an ordinary, non-executable file."""
    for result in digits_tflite.values():
        assert result.path.stat().st_mode & 0o111 == 0, (result.precision, oct(result.path.stat().st_mode))


def test_the_metadata_key_is_part_of_the_file_format():
    """Models exported by every earlier version carry their provenance under this name: renaming
    it (a module move once did) would make all of them unreadable."""
    from kit.core import provenance

    assert provenance.KEY == "kit.provenance"
