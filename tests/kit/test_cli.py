"""The command line: each command's happy path, --json, and the bad input users really give."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from helpers import factory, files_in

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

    ran = cli_json(capsys, "run", str(model), "--random", "--batch", "2", "--seed", "5", "-o", str(tmp_path / "o.npz"))
    assert ran["outputs"]["output"]["shape"] == [2, 5]
    saved = np.load(tmp_path / "o.npz")
    from kit.specs import random_feeds

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
    assert "ending in .onnx" in bad(capsys, "export", factory("make_linear"), "-o", str(tmp_path / "m.tflite"),
                                    "--input-shape", "1x20")
    assert files_in(tmp_path) == []


def test_export_failures_exit_non_zero_and_write_nothing(tmp_path, capsys):
    out = str(tmp_path / "m.onnx")
    assert "raised ValueError: the factory cannot find its config" in bad(
        capsys, "export", factory("make_raises"), "-o", out, "--input-shape", "1x4")
    assert "does not match PyTorch" in bad(
        capsys, "export", factory("make_batch_dependent"), "-o", out, "--input-shape", "1x4",
        "--exporter", "torchscript", code=3)
    import torch

    import models

    torch.save(models.make_linear(), tmp_path / "whole.pt")
    assert "--allow-pickle" in bad(capsys, "export", str(tmp_path / "whole.pt"), "-o", out, "--input-shape", "1x20")
    assert files_in(tmp_path) == ["whole.pt"]


def test_debug_shows_the_exception(tmp_path):
    from kit.errors import ExportError

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


def test_demo_trains_exports_and_agrees(tmp_path, capsys):
    data = cli_json(capsys, "demo", "--out", str(tmp_path))
    rows = {row["runtime"]: row for row in data["results"]}
    assert set(rows) == {"torch", "onnxruntime"}
    assert rows["torch"]["accuracy"] >= 0.95  # measured 98.9% on the 450 held-out digits
    assert rows["onnxruntime"]["accuracy"] == rows["torch"]["accuracy"]
    assert rows["onnxruntime"]["agreement"] == 1.0 and rows["onnxruntime"]["max_abs"] < 1e-4
    assert {"digits_cnn.onnx", "digits_cnn.pt", "digits_test.npz"} <= set(files_in(tmp_path))
    assert data["export"]["validation"]["outputs"][0]["passed"]


def test_input_paths_may_contain_equals_signs(tiny_onnx, tmp_path, capsys):
    folder = tmp_path / "run=1"
    folder.mkdir()
    np.save(folder / "x.npy", np.array([[1.0, 2.0, 3.0]], np.float32))
    for spec in (str(folder / "x.npy"), f"x={folder / 'x.npy'}"):
        assert cli_json(capsys, "run", str(tiny_onnx), "--input", spec)["outputs"]["z"]["max"] == 6.0


@pytest.mark.parametrize("argv", [
    ["run", "M", "--random", "--batch", "0"],
    ["run", "M", "--random", "--threads", "-3"],
    ["export", "m.py:f", "-o", "m.onnx", "--atol", "-1"],
    ["export", "m.py:f", "-o", "m.onnx", "--rtol", "nan"],
    ["export", "m.py:f", "-o", "m.onnx", "--opset", "0"],
])
def test_nonsense_numbers_are_refused_by_the_parser(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "expected a" in capsys.readouterr().err


def test_batch_on_a_static_model(tmp_path, capsys):
    model = tmp_path / "static.onnx"
    cli_json(capsys, "export", factory("make_linear"), "-o", str(model), "--input-shape", "1x20", "--static")
    assert "--batch 4 needs a dynamic batch axis" in bad(capsys, "run", str(model), "--random", "--batch", "4")


def test_torch_sources_open_with_shapes_and_weights(tmp_path, capsys):
    import torch

    import models

    trained = models.make_linear()
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    ran = cli_json(capsys, "run", factory("make_linear"), "--random", "--input-shape", "1x20",
                   "--weights", str(tmp_path / "w.pt"))
    assert ran["runtime"]["runtime"] == "torch" and ran["outputs"]["output"]["shape"] == [1, 6]
    inspected = cli_json(capsys, "inspect", factory("make_linear"), "--input-shape", "1x20")
    assert inspected["inputs"] == [{"name": "input", "shape": ["batch", 20], "dtype": "float32"}]
    assert "apply to PyTorch sources" in bad(capsys, "run", str(tmp_path / "w.pt"), "--random",
                                             "--runtime", "onnxruntime", "--weights", "w.pt")


def test_unexpected_failures_are_one_line_too(tmp_path, capsys, monkeypatch):
    import kit.inspect_model

    monkeypatch.setattr(kit.inspect_model, "inspect_model", lambda *a, **k: 1 / 0)
    err = bad(capsys, "inspect", "m.onnx", code=1)
    assert "unexpected ZeroDivisionError: division by zero (rerun with --debug for the traceback)" in err
