"""PyTorch -> TFLite with litert-torch: the four variants against PyTorch and ONNX Runtime,
Edge TPU readiness, and bad input."""

import json

import numpy as np
import pytest
import torch
from helpers import factory, files_in, run_kit
from kit.export.tflite import export_tflite
from kit.runtimes.edgetpu.readiness import check_edgetpu

import kit
from kit.check.harness import compare_models, evaluate
from kit.core import provenance
from kit.core.errors import ExportError, InputError, ModelFileError


def test_four_variants_against_pytorch(digits, digits_tflite):
    fp32, fp16, dynamic, int8 = (digits_tflite[p] for p in ("fp32", "fp16", "int8-dynamic", "int8"))
    assert fp32.validation[0].max_abs < 1e-4  # measured 3e-5
    assert fp16.validation[0].max_abs < 2e-2 and dynamic.validation[0].top1 >= 0.97
    assert (fp32.layout, int8.layout) == ("nchw", "nhwc")
    assert fp32.inputs[0].describe() == "'input' float32[1,1,8,8]"
    assert int8.inputs[0].describe() == "'input' float32[1,8,8,1]"  # int8 inside, quantized transparently
    assert int8.calibration["count"] == 300
    sizes = {p: r.size_bytes for p, r in digits_tflite.items()}
    assert sizes["int8"] < 0.6 * sizes["fp32"] and sizes["fp16"] < 0.75 * sizes["fp32"]


def test_int8_keeps_99_percent_of_fp32_accuracy(digits, digits_tflite):
    fp32 = evaluate(digits.onnx, str(digits.test))[0].top1
    for precision, result in digits_tflite.items():
        top1 = evaluate(result.path, str(digits.test))[0].top1  # NCHW arrays moved to NHWC for int8
        assert top1 >= 0.99 * fp32, (precision, top1, fp32)


def test_tflite_agrees_with_onnx_runtime(digits, digits_tflite):
    same = compare_models(str(digits.onnx), str(digits_tflite["fp32"].path), data=str(digits.test),
                          atol=1e-4, rtol=1e-3)
    assert same.passed and same.samples == 450 and same.outputs[0].max_abs < 1e-4
    quantized = compare_models(str(digits.onnx), str(digits_tflite["int8"].path), data=str(digits.test),
                               atol=1.0, rtol=0.0, stat="mean")
    assert quantized.outputs[0].top1 >= 0.97 and quantized.outputs[0].sqnr_db > 25


def test_provenance(digits_tflite):
    result = digits_tflite["int8"]
    stored = provenance.read(result.path)
    assert not provenance.sidecar(result.path).exists()  # inside the model (tests/kit/test_provenance.py)
    assert stored["format"] == "tflite" and stored["precision"] == "int8" and stored["layout"] == "nhwc"
    assert stored["inputs"] == [{"name": "input", "shape": [1, 8, 8, 1], "dtype": "float32"}]
    assert stored["calibration"]["count"] == 300 and stored["validation"]["outputs"][0]["passed"]
    quantized = {spec["name"]: spec for spec in stored["integer_io"]}
    assert quantized["input"]["dtype"] == "int8" and quantized["input"]["scale"] > 0
    assert quantized["output"]["dtype"] == "int8" and "zero_point" in quantized["output"]


def test_raw_integer_io_matches_the_transparent_path(digits, digits_tflite):
    path = digits_tflite["int8"].path
    x = np.load(digits.test)["x"][:1].transpose(0, 2, 3, 1)
    with kit.load(path) as real, kit.load(path, raw=True) as raw:
        (spec,) = raw.inputs
        assert spec.dtype == "int8" and spec.scale > 0
        quantized = np.clip(np.round(x / spec.scale) + spec.zero_point, -128, 127).astype(np.int8)
        out = raw.outputs[0]
        logits = (raw.run({"input": quantized})["output"].astype(np.float32) - out.zero_point) * out.scale
        np.testing.assert_allclose(logits, real.run({"input": x})["output"], atol=1e-6)


def test_concurrent_calls_are_safe(digits, digits_tflite):
    from concurrent.futures import ThreadPoolExecutor

    x = np.load(digits.test)["x"][:40]
    with kit.load(digits_tflite["fp32"].path) as runtime:
        alone = [runtime.run({"input": x[i:i + 1]})["output"] for i in range(40)]
        with ThreadPoolExecutor(4) as pool:
            together = list(pool.map(lambda i: runtime.run({"input": x[i:i + 1]})["output"], range(40)))
    np.testing.assert_array_equal(np.concatenate(alone), np.concatenate(together))


# ----- Edge TPU readiness ----------------------------------------------------------------------


def test_full_int8_nhwc_mobilenet_is_ready(mobilenet, tmp_path):
    result = export_tflite(mobilenet.module, tmp_path / "mobilenet.tflite", precision="int8",
                           input_shapes="1x1x8x8", calib=str(mobilenet.calib))
    readiness = check_edgetpu(result.path)
    assert readiness.ready and readiness.blockers == []
    assert readiness.tpu_ops_before_first_blocker == len(readiness.ops) > 10


def test_blockers_of_float_nchw_and_dynamic_models(digits, digits_tflite, tmp_path):
    fp32 = check_edgetpu(digits_tflite["fp32"].path)
    kinds = {b.kind for b in fp32.blockers}
    assert not fp32.ready and {"float-io", "float-tensor"} <= kinds and fp32.tpu_ops_before_first_blocker == 0

    # Three channels (one would make the layout change a mere reshape), global pooling at the end.
    from kit.models import make_mobilenet_style

    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(0).random((32, 3, 16, 16)).astype(np.float32))
    torch.manual_seed(0)
    nchw = export_tflite(make_mobilenet_style(3, 10, 8).eval(), tmp_path / "nchw.tflite", precision="int8",
                         layout="nchw", input_shapes="1x3x16x16", calib=str(tmp_path / "calib.npz"))
    nchw_check = check_edgetpu(nchw.path)
    transposes = [b for b in nchw_check.blockers if "TRANSPOSE" in b.message]
    assert transposes and transposes[0].op_index == 0  # the input's NCHW->NHWC transpose comes first
    assert nchw_check.tpu_ops_before_first_blocker == 0

    # litert-torch 0.10 fails to convert these models with a dynamic batch (a JAX shape error), so the
    # input's shape signature is made dynamic in the flatbuffer, as a dynamic export writes it.
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(digits_tflite["int8"].path.read_bytes(), 0))
    graph = model.subgraphs[0]
    graph.tensors[graph.inputs[0]].shapeSignature = [-1, 8, 8, 1]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    (tmp_path / "dynamic.tflite").write_bytes(builder.Output())
    blockers = check_edgetpu(tmp_path / "dynamic.tflite").blockers
    assert any(b.kind == "dynamic-shape" and "[-1, 8, 8, 1]" in b.message for b in blockers)


def test_check_edgetpu_cli_exit_codes(mobilenet, digits_tflite, tmp_path, capsys):
    from kit.cli import main

    assert main(["check", "edgetpu", str(digits_tflite["fp32"].path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ready"] is False and report["blockers"][0]["kind"] == "float-io"
    (tmp_path / "junk.tflite").write_bytes(b"not a flatbuffer at all")
    assert main(["check", "edgetpu", str(tmp_path / "junk.tflite")]) == 2
    assert "is not a readable TFLite flatbuffer" in capsys.readouterr().err


# ----- bad input ------------------------------------------------------------------------------


def test_bad_input(digits, tmp_path):
    with pytest.raises(InputError, match="full-integer int8 needs calibration data"):
        export_tflite(digits.module, tmp_path / "m.tflite", precision="int8", input_shapes="1x1x8x8")
    with pytest.raises(InputError, match="--layout nhwc needs a 4-D"):
        export_tflite(factory("make_linear"), tmp_path / "m.tflite", input_shapes="1x20", layout="nhwc")
    traced = torch.jit.trace(digits.module, torch.zeros(1, 1, 8, 8))
    traced.save(str(tmp_path / "ts.pt"))
    with pytest.raises(ExportError, match="is TorchScript; litert-torch converts torch.export programs"):
        export_tflite(tmp_path / "ts.pt", tmp_path / "m.tflite", input_shapes="1x1x8x8")
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 1, 9, 9), np.float32))
    with pytest.raises(InputError, match=r"expected shape \[batch,1,8,8\], found \[1, 1, 9, 9\]"):
        export_tflite(digits.module, tmp_path / "m.tflite", precision="int8", input_shapes="1x1x8x8",
                      calib=str(tmp_path / "bad.npz"))
    with pytest.raises(ModelFileError, match="does not exist"):
        check_edgetpu(tmp_path / "absent.tflite")
    assert sorted(files_in(tmp_path)) == ["bad.npz", "ts.pt"]


def test_cli_export_and_eval_of_a_tflite_model(digits, tmp_path, capsys):
    from kit.cli import main

    out = tmp_path / "int8.tflite"
    assert main(["export", "kit.models:make_digits_cnn", "--weights", str(tmp_path / "w.pt"), "-o", str(out),
                 "--input-shape", "1x1x8x8", "--precision", "int8", "--calib", str(digits.calib), "--json"]) == 2
    assert "weights file" in capsys.readouterr().err  # no such weights yet
    torch.save(digits.module.state_dict(), tmp_path / "w.pt")
    assert main(["export", "kit.models:make_digits_cnn", "--weights", str(tmp_path / "w.pt"), "-o", str(out),
                 "--input-shape", "1x1x8x8", "--precision", "int8", "--calib", str(digits.calib), "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["layout"] == "nhwc" and exported["validation"]["outputs"][0]["top1"] >= 0.97
    assert main(["eval", str(out), "--data", str(digits.test), "--baseline", str(digits.onnx), "--max-drop", "0.01",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["against_baseline"]["passed"]
    assert main(["export", "kit.models:make_digits_cnn", "-o", str(tmp_path / "x.tflite"), "--input-shape",
                 "1x1x8x8", "--opset", "13"]) == 2
    assert "apply to ONNX" in capsys.readouterr().err


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8-dynamic", "int8"])
def test_cli_export_of_every_precision_as_a_real_process(digits, tmp_path, precision):
    """What a user types, human output included (the table printing once crashed after the file was written)."""
    torch.save(digits.module.state_dict(), tmp_path / "w.pt")
    out = tmp_path / f"m.{precision}.tflite"
    calib = ["--calib", digits.calib] if precision == "int8" else []
    result = run_kit("export", "kit.models:make_digits_cnn", "--weights", tmp_path / "w.pt", "--input-shape",
                     "1x1x8x8", "--precision", precision, *calib, "-o", out)
    assert result.returncode == 0, result.stderr
    layout = "NHWC" if precision == "int8" else "NCHW"
    text = " ".join(result.stdout.split())  # a long path wraps at 80 columns
    assert f"exported {out} (" in text and f"TFLite {precision}, {layout} input)" in text
    assert "validated against PyTorch on the TFLite interpreter" in text and "pass" in text
    assert "error:" not in result.stderr
    with kit.load(out) as rt:
        assert rt.outputs[0].name == "output"
    assert sorted(files_in(tmp_path)) == sorted(["w.pt", out.name])  # the provenance is inside the model


def test_export_reports_accuracy_on_labelled_data(digits, tmp_path):
    result = export_tflite(digits.module, tmp_path / "int8.tflite", precision="int8", input_shapes="1x1x8x8",
                           calib=str(digits.calib), eval_data=str(digits.test))
    assert result.accuracy["count"] == 450
    assert result.accuracy["pytorch_top1"] > 0.9  # it learned; the exact figure differs by CPU
    assert result.accuracy["tflite_top1"] >= 0.99 * result.accuracy["pytorch_top1"]
    assert provenance.read(result.path)["accuracy"] == result.accuracy


def test_images_preprocessed_the_same_for_onnx_and_tflite(digits, tmp_path):
    """Class folders of PNGs: the ONNX model (NCHW) and the int8 TFLite (NHWC) both read them through
    the recorded preprocessing, in either order of comparison."""
    import cv2
    from kit.export import export_onnx

    x, y = np.load(digits.test)["x"][:40], np.load(digits.test)["y"][:40]
    for index, (image, label) in enumerate(zip(x, y)):
        (tmp_path / "images" / str(label)).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "images" / str(label) / f"{index}.png"), np.round(image[0] * 255).astype(np.uint8))
    spec = "color=gray,scale=0.00392156862745098"
    onnx_path = export_onnx(digits.module, tmp_path / "m.onnx", input_shapes="1x1x8x8", preprocess=spec).path
    tflite = export_tflite(digits.module, tmp_path / "m.tflite", precision="int8", input_shapes="1x1x8x8",
                           calib=str(tmp_path / "images"), preprocess=spec)
    for reference, candidate in ((onnx_path, tflite.path), (tflite.path, onnx_path)):
        result = compare_models(str(reference), str(candidate), data=str(tmp_path / "images"), atol=1.0, rtol=0.0,
                                stat="mean")
        assert result.samples == 40 and result.outputs[0].top1 >= 0.95
    assert evaluate(tflite.path, str(tmp_path / "images"))[0].top1 >= 0.95


def test_inspect_shows_integer_io_and_ops(digits_tflite):
    from kit.inspect_model import inspect_model

    data = inspect_model(digits_tflite["int8"].path)
    assert data["inputs"][0]["dtype"] == "int8" and data["inputs"][0]["scale"] > 0
    assert data["ops"]["CONV_2D v3"] == 1 and data["edgetpu_ready"] is False
    assert data["metadata"]["precision"] == "int8"


def test_fp16_cannot_map_anything(digits, tmp_path):
    nhwc = export_tflite(digits.module, tmp_path / "fp16.tflite", precision="fp16", layout="nhwc",
                         input_shapes="1x1x8x8")
    readiness = check_edgetpu(nhwc.path)
    assert readiness.tpu_ops_before_first_blocker == 0 and not readiness.ready


def test_the_compiler_runs_when_installed(mobilenet, tmp_path, monkeypatch):
    """A stand-in edgetpu_compiler on PATH that prints the real one's summary: the kit runs the
    command it prints and reads the log (the real compiler cannot be installed here)."""
    fake = tmp_path / "bin" / "edgetpu_compiler"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/args\"\n"
                    "echo 'Edge TPU Compiler version 16.0.384591198'\n"
                    "echo 'On-chip memory used for caching model parameters: 1.02MiB'\n"
                    "echo 'Off-chip memory used for streaming uncached model parameters: 0.00B'\n"
                    "echo 'Number of Edge TPU subgraphs: 1'\n"
                    "echo 'Total number of operations: 23'\n"
                    "echo 'Number of operations that will run on Edge TPU: 23'\n"
                    "echo 'Number of operations that will run on CPU: 0'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{__import__('os').environ['PATH']}")
    result = export_tflite(mobilenet.module, tmp_path / "m.tflite", precision="int8", input_shapes="1x1x8x8",
                           calib=str(mobilenet.calib))
    readiness = check_edgetpu(result.path)
    assert readiness.ready and readiness.compiler["ops_on_tpu"] == 23 and readiness.compiler["subgraphs"] == 1
    assert readiness.compiler["on_chip_memory"] == "1.02MiB"
    args, printed = (fake.parent / "args").read_text().split(), readiness.compiler_command.split()[1:]
    assert args[:2] == printed[:2] == ["-s", "-o"] and args[3:] == printed[3:]  # -o: a private folder (test_edgetpu_check)
    fake.write_text("#!/bin/sh\necho 'Internal compiler error. Aborting!'\nexit 1\n")
    failed = check_edgetpu(result.path)
    assert not failed.ready and failed.blockers[-1].kind == "compiler" and "exit 1" in failed.blockers[-1].message
