"""The command line: each command's happy path, --json, and the bad input users really give."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from helpers import factory, files_in, run_kit

import kit
from kit.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def cli_json(capsys, *argv):
    code, out, err = run_cli(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_export_then_run_then_inspect(tmp_path, capsys):
    model = tmp_path / "conv.onnx"
    exported = cli_json(capsys, "export", factory("make_conv"), "-o", str(model), "--input-shape", "1x3x8x8",
                        "--simplify")
    assert exported["exporter"] == "dynamo" and exported["simplified"]
    assert [d["passed"] for d in exported["validation"]["outputs"]] == [True]
    assert exported["inputs"][0]["shape"] == ["batch", 3, 8, 8]

    ran = cli_json(capsys, "run", str(model), "--random", "2", "--seed", "5", "-o", str(tmp_path / "o.npz"))
    assert ran["outputs"]["output"]["shape"] == [2, 5]
    saved = np.load(tmp_path / "o.npz")
    from kit.core.specs import random_feeds

    with kit.load(model) as rt:
        expected = rt.run(random_feeds(rt.inputs, seed=5, batch=2))["output"]
    np.testing.assert_array_equal(saved["output"], expected)

    inspected = cli_json(capsys, "inspect", str(model))
    assert inspected["opsets"]["ai.onnx"] >= 18
    assert inspected["ops"]["Conv"] == 2 and inspected["ops"]["Gemm"] == 1
    assert inspected["metadata"]["source"] == factory("make_conv")


def test_human_output_shows_the_validation_table(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps at the terminal width
    code, out, _ = run_cli(capsys, "export", factory("make_linear"), "-o", str(tmp_path / "m.onnx"),
                           "--input-shape", "1x20")
    assert code == 0
    assert "validated against PyTorch on ONNX Runtime at batch 1, 3 (atol 0.0001, rtol 0.001):" in out
    assert "[batch, 20]" in out and "pass" in out


def test_run_with_an_image_uses_the_stored_preprocessing(conv_onnx, tmp_path, capsys):
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "cat.png"), pixels)
    ran = cli_json(capsys, "run", str(conv_onnx), "--image", str(tmp_path / "cat.png"), "-o", str(tmp_path / "o.npz"))
    # conv_onnx stored mean 0.5 and std 0.25 on RGB in [0, 1]: compute the same by hand.
    rgb = pixels[:, :, ::-1].astype(np.float32) / 255
    tensor = ((rgb - 0.5) / 0.25).transpose(2, 0, 1)[None].astype(np.float32)
    with kit.load(conv_onnx) as rt:
        expected = rt.run({"input": tensor})["output"]
    np.testing.assert_allclose(np.load(tmp_path / "o.npz")["output"], expected, atol=1e-5)
    assert ran["outputs"]["output"]["shape"] == [1, 5]


def test_run_with_npy_and_npz_inputs(tiny_onnx, tmp_path, capsys):
    x = np.array([[1.0, 2.0, 3.0]], np.float32)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "feeds.npz", x=x)
    for spec in (str(tmp_path / "x.npy"), f"x={tmp_path / 'x.npy'}", str(tmp_path / "feeds.npz")):
        ran = cli_json(capsys, "run", str(tiny_onnx), "--input", spec)
        assert ran["outputs"]["z"]["max"] == 6.0


def test_runtimes_table(capsys):
    code, out, _ = run_cli(capsys, "runtimes")
    assert code == 0 and "onnxruntime" in out and "torch" in out


def test_version(capsys):
    result = subprocess.run([sys.executable, "-m", "kit", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f"kit {kit.__version__}"


# ----- bad input: one clear line, non-zero exit, nothing written -----------------------------


def bad(capsys, *argv, code=2):
    got, out, err = run_cli(capsys, *argv)
    assert got == code, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_wrong_shape_dtype_and_missing_input(tiny_onnx, tmp_path, capsys):
    np.save(tmp_path / "short.npy", np.zeros((1, 2), np.float32))
    np.save(tmp_path / "f64.npy", np.zeros((1, 3)))
    np.savez(tmp_path / "other.npz", features=np.zeros((1, 3), np.float32))
    assert "expected shape [batch,3], found [1, 2]" in bad(capsys, "run", str(tiny_onnx), "--input",
                                                           str(tmp_path / "short.npy"))
    assert "expected dtype float32, found float64" in bad(capsys, "run", str(tiny_onnx), "--input",
                                                          str(tmp_path / "f64.npy"))
    assert "(missing: x) (unknown: features)" in bad(capsys, "run", str(tiny_onnx), "--input",
                                                    str(tmp_path / "other.npz"))


def test_corrupt_and_non_model_files(tmp_path, capsys, tiny_onnx):
    (tmp_path / "half.onnx").write_bytes(tiny_onnx.read_bytes()[:50])
    (tmp_path / "notes.txt").write_text("hello")
    assert "onnxruntime could not load" in bad(capsys, "run", str(tmp_path / "half.onnx"), "--random")
    assert "is not a readable ONNX model" in bad(capsys, "inspect", str(tmp_path / "half.onnx"))
    assert "no runtime opens" in bad(capsys, "run", str(tmp_path / "notes.txt"), "--random")
    assert "does not exist" in bad(capsys, "run", str(tmp_path / "absent.onnx"), "--random")


def test_unreadable_image(conv_onnx, tmp_path, capsys):
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff garbage")
    assert "could not decode" in bad(capsys, "run", str(conv_onnx), "--image", str(tmp_path / "photo.jpg"),
                                     "-o", str(tmp_path / "o.npz"))
    assert files_in(tmp_path) == ["photo.jpg"]


def test_output_paths(tiny_onnx, tmp_path, capsys):
    assert "ending in .npz" in bad(capsys, "run", str(tiny_onnx), "--random", "-o", str(tmp_path / "o.txt"))
    assert "the folder for the output" in bad(capsys, "run", str(tiny_onnx), "--random",
                                              "-o", str(tmp_path / "absent" / "o.npz"))
    assert "ending in .onnx" in bad(capsys, "export", factory("make_linear"), "-o", str(tmp_path / "m.txt"),
                                    "--input-shape", "1x20")
    assert files_in(tmp_path) == []


def test_export_failures_exit_non_zero_and_write_nothing(tmp_path, capsys):
    out = str(tmp_path / "m.onnx")
    assert "raised ValueError: the factory cannot find its config" in bad(
        capsys, "export", factory("make_raises"), "-o", out, "--input-shape", "1x4")
    assert "does not match PyTorch" in bad(
        capsys, "export", factory("make_batch_dependent"), "-o", out, "--input-shape", "1x4",
        "--exporter", "torchscript", code=3)
    import models
    import torch

    torch.save(models.make_linear(), tmp_path / "whole.pt")
    assert "--allow-pickle" in bad(capsys, "export", str(tmp_path / "whole.pt"), "-o", out, "--input-shape", "1x20")
    assert files_in(tmp_path) == ["whole.pt"]


def test_debug_shows_the_exception(tmp_path):
    from kit.core.errors import ExportError

    with pytest.raises(ExportError):
        main(["export", factory("make_raises"), "-o", str(tmp_path / "m.onnx"), "--input-shape", "1x4", "--debug"])


def test_runtime_not_installed(tiny_onnx):
    """Run the real CLI in a fresh interpreter where onnxruntime cannot be imported."""
    code = ("import sys; sys.modules['onnxruntime'] = None\n"
            "from kit.cli import main\n"
            f"sys.exit(main(['run', {str(tiny_onnx)!r}, '--random']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert "needs one of the runtimes onnxruntime, and none is usable here" in result.stderr
    assert 'pip install "edge-inference-kit[onnxruntime]"' in result.stderr
    assert "Traceback" not in result.stderr


def test_error_exit_code_from_a_real_process(tmp_path):
    result = subprocess.run([sys.executable, "-m", "kit", "run", str(tmp_path / "absent.onnx"), "--random"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: model file {tmp_path / 'absent.onnx'} does not exist. "
                                                  "Check the path."]


# ----- the demo -------------------------------------------------------------------------------


def test_demo_trains_exports_quantizes_and_agrees(tmp_path, capsys):
    data = cli_json(capsys, "demo", "-o", str(tmp_path))
    rows = {(row["variant"], row["runtime"]): row for row in data["results"]}
    assert set(rows) == {("fp32", "torch"), ("fp32", "onnxruntime"), ("int8", "onnxruntime"), ("fp16", "onnxruntime"),
                         ("fp32", "tflite"), ("fp16", "tflite"), ("int8-dynamic", "tflite"), ("int8", "tflite")}
    assert rows["int8", "tflite"]["accuracy"] >= 0.99 * rows["fp32", "torch"]["accuracy"]
    assert rows["fp32", "tflite"]["max_abs"] < 1e-4
    reference = rows["fp32", "torch"]["accuracy"]
    assert reference >= 0.95  # measured 98.9% on the 450 held-out digits
    assert rows["fp32", "onnxruntime"]["accuracy"] == reference and rows["fp32", "onnxruntime"]["max_abs"] < 1e-4
    assert rows["int8", "onnxruntime"]["accuracy"] >= 0.99 * reference
    assert rows["int8", "onnxruntime"]["agreement"] >= 0.97
    assert abs(rows["fp16", "onnxruntime"]["delta"]) <= 0.005
    assert rows["int8", "onnxruntime"]["size_bytes"] < rows["fp32", "onnxruntime"]["size_bytes"]
    assert {"digits_cnn.onnx", "digits_cnn.int8.onnx", "digits_cnn.fp16.onnx", "digits_test.npz"} <= set(files_in(tmp_path))
    assert data["export"]["validation"]["outputs"][0]["passed"]
    # The next steps it prints: an image, and the held-out video through the loop, as digits.
    streamed = run_kit("run", tmp_path / "digits_cnn.onnx", "--source", data["video"], "--json")
    assert streamed.returncode == 0, streamed.stderr
    summary = json.loads(streamed.stdout)
    assert (summary["frames"], summary["dropped"], summary["task"]) == (100, 0, "classify")


# ----- quantize, compare, eval ---------------------------------------------------------------


def test_quantize_compare_eval_as_a_ci_gate(digits, tmp_path, capsys):
    int8 = tmp_path / "int8.onnx"
    quantized = cli_json(capsys, "quantize", str(digits.onnx), "-o", str(int8), "--calib", str(digits.calib),
                         "--target", "avx2")
    assert quantized["target"] == "avx2" and quantized["calibration"]["count"] == 300

    passing = cli_json(capsys, "eval", str(int8), "--data", str(digits.test), "--baseline", str(digits.onnx),
                       "--max-drop", "0.01")
    assert passing["against_baseline"]["passed"] and passing["count"] == 450
    assert passing["top1_ci95"][0] <= passing["top1"] <= passing["top1_ci95"][1]


    compared = run_cli(capsys, "compare", str(digits.onnx), str(int8), "--data", str(digits.test), "--json")
    assert compared[0] == 1  # int8 is not within the default 1e-4 of float, elementwise
    assert json.loads(compared[1])["outputs"][0]["top1"] >= 0.97
    code, out, _ = run_cli(capsys, "compare", str(digits.onnx), str(int8), "--data", str(digits.test),
                           "--stat", "mean", "--atol", "output=0.5", "--save-golden", str(tmp_path / "g.npz"), "--json")
    assert code == 0 and json.loads(out)["passed"]
    code, out, _ = run_cli(capsys, "compare", str(int8), "--golden", str(tmp_path / "g.npz"), "--stat", "mean",
                           "--atol", "0.5", "--json")
    assert code == 0 and json.loads(out)["samples"] == 450


def test_quantize_to_a_budget_from_the_cli(sensitive, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    collapsed = tmp_path / "collapsed.onnx"
    cli_json(capsys, "quantize", str(sensitive.onnx), "-o", str(collapsed), "--calib", str(sensitive.calib))
    code, out, _ = run_cli(capsys, "eval", str(collapsed), "--data", str(sensitive.test), "--baseline",
                           str(sensitive.onnx), "--max-drop", "0.01", "--json")
    verdict = json.loads(out)["against_baseline"]
    assert code == 1 and verdict["passed"] is False and verdict["delta"] < -0.5
    code, out, _ = run_cli(capsys, "quantize", str(sensitive.onnx), "-o", str(tmp_path / "q.onnx"),
                           "--calib", str(sensitive.calib), "--max-drop", "0.01", "--eval", str(sensitive.test))
    assert code == 0 and "budget drop <= 0.01: top-1" in out and "kept in float:" in out
    plain = tmp_path / "plain.onnx"
    cli_json(capsys, "quantize", str(sensitive.onnx), "-o", str(plain), "--calib", str(sensitive.calib))
    code, out, _ = run_cli(capsys, "compare", str(sensitive.onnx), str(plain), "--data", str(sensitive.calib),
                           "--layers", "--json")
    layers = json.loads(out)["layers"]
    assert code == 1 and layers[0]["op_type"] == "Conv" and layers[0]["drop_db"] > 30


def test_eval_and_compare_bad_input(digits, tmp_path, capsys):
    assert "has no labels to evaluate against" in bad(capsys, "eval", str(digits.onnx), "--data", str(digits.calib))
    assert "an accuracy budget needs --baseline" in bad(capsys, "eval", str(digits.onnx), "--data", str(digits.test),
                                                        "--max-drop", "0.01")
    assert "needs both --max-drop/--min-ratio and --eval" in bad(capsys, "quantize", str(digits.onnx), "-o",
                                                                  str(tmp_path / "q.onnx"), "--max-drop", "0.01")
    assert "expected two models" in bad(capsys, "compare", str(digits.onnx))
    assert "give --data or --random, not both" in bad(capsys, "compare", str(digits.onnx), str(digits.onnx),
                                                      "--data", "random:3", "--random", "3")
    assert files_in(tmp_path) == []
