"""Data, feeds, compare and eval through the real `kit` process: bad data is one clean line,
exit 2, nothing written; comparisons say which rule failed; the README's golden workflow works."""

import json
import re
import shlex
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import factory, files_in, run_kit

README = Path(__file__).parents[2] / "README.md"


def one_error_line(result, *expected: str) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def plain_conv(tmp_path_factory) -> Path:
    """A conv model that records no preprocessing (as a third-party model would)."""
    from kit.export import export_onnx

    return export_onnx(factory("make_conv"), tmp_path_factory.mktemp("plain") / "plain.onnx",
                       input_shapes="1x3x8x8").path


@pytest.fixture(scope="module")
def int8(digits, tmp_path_factory) -> Path:
    from kit.export.quantize import quantize

    return quantize(digits.onnx, tmp_path_factory.mktemp("int8") / "int8.onnx", calib=str(digits.calib)).path


BAD_DATA = {
    "batch0.npy": (lambda p: np.save(p, np.zeros((0, 3, 8, 8), np.float32)), "holds", "(shape [0, 3, 8, 8])"),
    "empty.npy": (lambda p: np.save(p, np.zeros((0,), np.float32)), "holds", "(shape [0])"),
    "empty.npz": (lambda p: np.savez(p), "empty.npz holds no arrays", ""),
    "objects.npz": (lambda p: np.savez(p, x=np.array([1, "a"], dtype=object)),
                    "objects.npz (array x) holds Python objects (dtype object)", "never unpickles"),
}


@pytest.mark.parametrize("command", ["run", "compare", "eval"])
@pytest.mark.parametrize("name", sorted(BAD_DATA))
def test_unusable_data_is_one_clean_line(conv_onnx, tmp_path, command, name):
    """A batch-0 .npy and an .npz of object arrays were exit 70 (ValueError) in run and compare."""
    make, *expected = BAD_DATA[name]
    make(tmp_path / name)
    before = files_in(tmp_path)
    argv = {"run": ["run", conv_onnx, "--input", tmp_path / name, "-o", tmp_path / "out.npz"],
            "compare": ["compare", conv_onnx, conv_onnx, "--data", tmp_path / name,
                        "--save-golden", tmp_path / "g.npz"],
            "eval": ["eval", conv_onnx, "--data", tmp_path / name]}[command]
    one_error_line(run_kit(*argv), *filter(None, expected))
    assert files_in(tmp_path) == before


@pytest.mark.parametrize("command", ["compare", "eval"])
def test_huge_random_counts_are_refused_with_the_size(tiny_onnx, command):
    """kit compare A B --data random:99999999999999 ran for ever."""
    argv = ["compare", tiny_onnx, tiny_onnx] if command == "compare" else ["eval", tiny_onnx]
    one_error_line(run_kit(*argv, "--data", "random:99999999999999"),
                   "expected random:N with N from 1 to 1,000,000, found random:99,999,999,999,999")


@pytest.mark.parametrize("text, expected", [
    ("size=0", "expected a preprocessing size of HEIGHTxWIDTH, each from 1 to 8192, found 0x0"),
    ("size=100000", "found 100000x100000"),
    ("mean=0.5/0.5", "expected 1 or 3 values for mean with color=rgb, found 2"),
    ("std=0", "expected positive finite numbers for preprocessing std, found 0.0"),
    ("layout=chw", "expected preprocessing layout among nchw, nhwc, found 'chw'"),
])
def test_bad_preprocess_text_is_refused_before_any_image_is_read(plain_conv, tmp_path, text, expected):
    """--preprocess size=0 was accepted and failed later inside OpenCV."""
    (tmp_path / "images" / "0").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "images" / "0" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    for argv in (["eval", plain_conv], ["compare", plain_conv, plain_conv]):
        one_error_line(run_kit(*argv, "--data", tmp_path / "images", "--preprocess", text), expected)


def test_a_huge_stored_preprocessing_is_refused_before_allocating(digits, tmp_path):
    """A .tflite sidecar asking for a 100000x100000 image got the process killed for memory."""
    import onnx

    from kit.core import provenance

    model = onnx.load(str(digits.onnx))
    stored = provenance.read(digits.onnx) | {"preprocess": {"size": [100000, 100000], "color": "gray"}}
    provenance.attach_to_onnx(model, stored)
    onnx.save(model, tmp_path / "huge.onnx")
    (tmp_path / "images" / "0").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "images" / "0" / "a.png"), np.zeros((8, 8), np.uint8))
    one_error_line(run_kit("eval", tmp_path / "huge.onnx", "--data", tmp_path / "images"),
                   f"the preprocessing stored with {tmp_path / 'huge.onnx'} is invalid: expected a preprocessing "
                   "size of HEIGHTxWIDTH, each from 1 to 8192, found 100000x100000",
                   "Re-export the model with a valid --preprocess.")


def test_run_saves_an_output_named_file(tmp_path):
    """np.savez(handle, **outputs) clashed with its own `file` parameter: exit 70."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["file"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
                              [helper.make_tensor_value_info("file", TensorProto.FLOAT, ["batch", 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "m.onnx")
    result = run_kit("run", tmp_path / "m.onnx", "--random", "3", "-o", tmp_path / "out.npz")
    assert result.returncode == 0, result.stderr
    with np.load(tmp_path / "out.npz") as saved:
        assert saved.files == ["file"] and saved["file"].shape == (3, 2)


def test_run_names_a_mistyped_input_and_takes_the_x_y_layout(conv_onnx, tiny_onnx, tmp_path):
    x = np.ones((2, 3, 8, 8), np.float32)
    np.save(tmp_path / "x.npy", x)
    one_error_line(run_kit("run", conv_onnx, "--input", f"nope={tmp_path / 'x.npy'}"),
                   "the model has no input named 'nope' (its inputs: input); found --input nope=",
                   "Write --input NAME=FILE with one of those names.")
    np.savez(tmp_path / "data.npz", x=x, y=np.array([1, 0]))  # the layout --data takes
    result = run_kit("run", conv_onnx, "--input", tmp_path / "data.npz", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["outputs"]["output"]["shape"] == [2, 5]
    np.savez(tmp_path / "tiny.npz", x=np.ones((1, 3), np.float32), y=np.array([0]))  # x is the input's own name
    assert run_kit("run", tiny_onnx, "--input", tmp_path / "tiny.npz").returncode == 0


def test_images_without_recorded_preprocessing_get_a_note(plain_conv, conv_onnx, tmp_path):
    (tmp_path / "images" / "0").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "images" / "0" / "a.png"), np.full((8, 8, 3), 90, np.uint8))
    note = (f"warning: {plain_conv} records no preprocessing; images are read with defaults for its input shape "
            "(size=8x8,resize=stretch,color=rgb,scale=0.00392157,mean=0,std=1,layout=nchw,dtype=float32). "
            "State the model's own with --preprocess KEY=VALUE,...")
    result = run_kit("eval", plain_conv, "--data", tmp_path / "images")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [note]
    ran = run_kit("run", plain_conv, "--image", tmp_path / "images" / "0" / "a.png")
    assert ran.returncode == 0 and ran.stderr.count("records no preprocessing; images are read with defaults") == 1
    stated = run_kit("eval", plain_conv, "--data", tmp_path / "images", "--preprocess", "mean=0.5,std=0.25")
    assert stated.returncode == 0 and stated.stderr == "", stated.stderr
    one_error_line(run_kit("eval", conv_onnx, "--data", tmp_path / "images", "--preprocess", "mean=0.5"),
                   f"{conv_onnx} records its own preprocessing; --preprocess is for models that record none.")


def test_compare_with_nan_data_prints_nan_and_says_why(tiny_onnx, tmp_path):
    """A NaN in the data made the CLI crash formatting a None cosine (TypeError, exit 70)."""
    x = np.ones((4, 3), np.float32)
    x[1, 2] = np.nan
    np.save(tmp_path / "x.npy", x)
    result = run_kit("compare", tiny_onnx, tiny_onnx, "--data", tmp_path / "x.npy")
    assert result.returncode == 1, result.stderr
    assert "fail: output 'y' (elementwise atol=0.0001 rtol=0.001): 2 of 8 elements differ by more than atol " \
           "0.0001 + rtol 0.001 x |reference|; NaN or Inf among the elements: 2 in the reference, 2 in the " \
           "candidate." in result.stdout.replace("\n", " ")
    as_json = run_kit("compare", tiny_onnx, tiny_onnx, "--data", tmp_path / "x.npy", "--json")
    strict = json.loads(as_json.stdout, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert strict["outputs"][0]["cosine"] is None and strict["outputs"][0]["max_abs"] is None


def test_compare_names_the_failed_rule_and_warns_about_random_inputs(digits, int8):
    result = run_kit("compare", digits.onnx, int8, "--random", "16", columns=200)
    assert result.returncode == 1
    failed = re.search(r"fail: output 'output' \(elementwise atol=0.0001 rtol=0.001\): (\d+) of 160 elements differ by "
                       r"more than atol 0.0001 \+ rtol 0.001 x \|reference\| \(largest difference [\d.]+\)\.",
                       result.stdout)
    assert failed and int(failed[1]) > 0, result.stdout
    assert f"warning: random inputs say little about a quantized model ({int8})" in result.stderr
    assert "note: a quantized model is rarely within elementwise tolerances of a float one" in result.stderr
    by_mean = run_kit("compare", digits.onnx, int8, "--data", digits.test, "--stat", "mean", "--atol", "0.001",
                      "--rtol", "0.001", columns=200)
    assert by_mean.returncode == 1 and "random" not in by_mean.stderr
    assert re.search(r"fail: output 'output' \(mean atol=0.001 or rtol=0.001\): mean absolute error [\d.]+ > atol "
                     r"0.001 and mean relative error [\d.e+]+ > rtol 0.001\.", by_mean.stdout), by_mean.stdout


def readme_golden_commands() -> list[str]:
    text = README.read_text().replace("\\\n", " ")
    return [line.split("#")[0].strip() for line in text.splitlines()
            if line.startswith("kit compare") and "golden" in line]


def test_the_readmes_golden_workflow_works_as_written(digits, int8, tmp_path):
    """It failed on random:16 for a 98.9%-accurate INT8 model, and the hint named a refused form."""
    commands = readme_golden_commands()
    assert len(commands) == 2 and "--save-golden golden.npz" in commands[0] and "--golden golden.npz" in commands[1]
    shutil.copy(digits.onnx, tmp_path / "model.onnx")
    shutil.copy(int8, tmp_path / "model.int8.onnx")
    shutil.copy(digits.test, tmp_path / "heldout.npz")
    for command in commands:
        result = run_kit(*shlex.split(command)[1:], cwd=tmp_path)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
    golden = np.load(tmp_path / "golden.npz")
    assert golden["input.input"].shape == (450, 1, 8, 8)
    # The hint of a missing golden file names a form that works: one model, --save-golden.
    missing = one_error_line(run_kit("compare", "model.int8.onnx", "--golden", "absent.npz", cwd=tmp_path))
    hint = missing.split("Write one with: ")[1]
    assert hint == "kit compare MODEL --save-golden golden.npz --data DATA"
    saved = run_kit(*shlex.split(hint.replace("MODEL", "model.onnx").replace("golden.npz", "one.npz")
                                 .replace("DATA", "heldout.npz"))[1:], cwd=tmp_path)
    assert saved.returncode == 0 and "saved the inputs and model.onnx's outputs on 450 samples" in saved.stdout
    with np.load(tmp_path / "one.npz") as one:
        np.testing.assert_array_equal(one["output.output"], golden["output.output"])


def test_eval_selects_its_output_with_output_name(digits):
    result = run_kit("eval", digits.onnx, "--data", digits.test, "--output-name", "output", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["count"] == 450
    one_error_line(run_kit("eval", digits.onnx, "--data", digits.test, "--output-name", "logits"),
                   "expected an output named 'logits'; the model has output.",
                   "Name one of the model's outputs with --output-name.")
