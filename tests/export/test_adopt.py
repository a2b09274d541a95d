"""kit adopt through the real kit: a third-party ONNX and TFLite (kit files with their
provenance removed) get inputs, preprocessing, task and labels recorded, give the original's
outputs, and then run, quantize and bundle like the kit's own exports."""

import json

import numpy as np
import onnx
import pytest
from helpers import files_in, run_kit

from kit.core import provenance


@pytest.fixture(scope="module")
def third_party(digits, digits_tflite, tmp_path_factory):
    """The digits CNN as a plain ONNX file and a plain TFLite file (no kit metadata), its labels,
    and one digit image."""
    import cv2

    folder = tmp_path_factory.mktemp("third")
    model = onnx.load(str(digits.onnx))
    del model.metadata_props[:]
    onnx.save(model, str(folder / "digits.onnx"))
    plain_tflite(digits_tflite["fp32"].path, folder / "digits.tflite")
    (folder / "labels.txt").write_text("".join(f"digit {i}\n" for i in range(10)))
    (folder / "five.txt").write_text("a\nb\nc\nd\ne\n")
    x = np.load(digits.test)["x"][0, 0]  # 8x8 in [0, 1]
    cv2.imwrite(str(folder / "digit.png"), (x * 255).round().astype(np.uint8))
    assert provenance.read(folder / "digits.onnx") == {} and provenance.read(folder / "digits.tflite") == {}
    return folder


def plain_tflite(source, target):
    """The .tflite without the kit's metadata entry: a file some other tool wrote."""
    from ai_edge_litert.tools import flatbuffer_utils

    flat = flatbuffer_utils.convert_bytearray_to_object(source.read_bytes())
    flat.metadata = [m for m in flat.metadata or [] if m.name.decode() != provenance.KEY]
    target.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(flat)))


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8-dynamic", "int8"])
def test_a_tflite_models_precision_is_read_from_its_tensors(digits_tflite, tmp_path, precision):
    plain_tflite(digits_tflite[precision].path, tmp_path / "m.tflite")
    ran = run_kit("adopt", str(tmp_path / "m.tflite"), "-o", str(tmp_path / "a.tflite"), "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["precision"] == precision == provenance.read(tmp_path / "a.tflite")["precision"]


@pytest.mark.parametrize("suffix", [".onnx", ".tflite"])
def test_adopting_records_what_the_kit_needs_and_keeps_the_outputs(third_party, tmp_path, suffix):
    source, adopted = third_party / f"digits{suffix}", tmp_path / f"adopted{suffix}"
    before = source.read_bytes()
    ran = run_kit("adopt", str(source), "-o", str(adopted), "--preprocess", "size=8,color=gray,scale=0.00392156862745098",
                  "--task", "classify", "--labels", str(third_party / "labels.txt"))
    assert ran.returncode == 0, ran.stderr
    assert f"adopted {adopted} ({suffix[1:]} fp32, task classify, 10 labels); outputs checked equal" in ran.stdout
    assert source.read_bytes() == before  # the original is left as it is
    recorded = provenance.read(adopted)
    assert recorded["stage"] == "adopt" and recorded["source_kind"] == "adopted"
    assert recorded["task"]["labels"][3] == "digit 3" and recorded["preprocess"]["size"] == [8, 8]
    runs = {name: json.loads(run_kit("run", str(path), "--image", str(third_party / "digit.png"),
                                     *(["--preprocess", "size=8,color=gray,scale=0.00392156862745098"]
                                       if name == "source" else []), "--json").stdout)
            for name, path in (("source", source), ("adopted", adopted))}
    assert runs["adopted"]["outputs"] == runs["source"]["outputs"]
    assert runs["adopted"]["results"][0]["label"].startswith("digit ")


def test_an_adopted_model_quantizes_and_bundles_like_an_export(third_party, digits, tmp_path):
    adopted = tmp_path / "adopted.onnx"
    assert run_kit("adopt", str(third_party / "digits.onnx"), "-o", str(adopted), "--task", "classify",
                   "--labels", str(third_party / "labels.txt")).returncode == 0
    ran = run_kit("quantize", str(adopted), "-o", str(tmp_path / "adopted.int8.onnx"), "--calib", str(digits.calib))
    assert ran.returncode == 0, ran.stderr
    assert provenance.read(tmp_path / "adopted.int8.onnx")["task"]["labels"][0] == "digit 0"
    bundled = run_kit("bundle", str(adopted), str(tmp_path / "adopted.int8.onnx"), "-o", str(tmp_path / "a.kitbundle"))
    assert bundled.returncode == 0, bundled.stderr
    assert (tmp_path / "a.kitbundle" / "labels.txt").read_text().splitlines()[9] == "digit 9"


@pytest.mark.parametrize("argv, message", [
    (["{d}/missing.onnx", "-o", "{t}/x.onnx"], "model file {d}/missing.onnx does not exist"),
    (["{d}/labels.txt", "-o", "{t}/x.onnx"], "expected an .onnx or .tflite model to adopt"),
    (["{d}/digits.onnx", "-o", "{t}/x.tflite"], "expected the output to be a .onnx file like the model"),
    (["{d}/digits.onnx", "-o", "{d}/digits.onnx"], "is the same file as the input"),
    (["{k}", "-o", "{t}/x.onnx"], "was made by the kit (export) and already records its provenance"),
    (["{d}/digits.onnx", "-o", "{t}/x.onnx", "--labels", "{d}/labels.txt"], "found no --task"),
    (["{d}/digits.onnx", "-o", "{t}/x.onnx", "--task", "classify", "--labels", "{d}/five.txt"],
     "--labels names 5 classes; the model scores 10"),
    (["{d}/digits.onnx", "-o", "{t}/x.onnx", "--task", "detect"], "expected detection outputs in a known layout"),
])
def test_bad_adopt_input_is_one_line_and_writes_nothing(third_party, digits, tmp_path, argv, message):
    fill = dict(d=third_party, t=tmp_path, k=digits.onnx)
    before = files_in(tmp_path), files_in(third_party)
    ran = run_kit("adopt", *[part.format(**fill) for part in argv])
    assert ran.returncode == 2 and message.format(**fill) in ran.stderr, ran.stderr
    assert (files_in(tmp_path), files_in(third_party)) == before
