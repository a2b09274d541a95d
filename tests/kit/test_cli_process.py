"""The CLI's shared behaviour through the real ``kit`` process: warnings, library log lines,
parsing, signals, output at 80 columns, and ``kit run``'s inputs and outputs."""

import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from helpers import KIT, disk_full_line, factory, files_in, run_kit, run_on_full_disk

from kit.cli import main
from kit.cli.app import _parse, _parser
from kit.core.specs import random_feeds


def error_line(result) -> str:
    """The one line a failed command prints, after checking it is the only one."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def tiny_graph(folder, batch=None, name="tiny.onnx", input_name="x", node_name=None):
    """y = x @ W + b and z = 2 x (as conftest.tiny_onnx), with a fixed batch when ``batch`` is given."""
    import onnx
    from helpers import TINY_B, TINY_W
    from onnx import TensorProto, helper, numpy_helper

    dim = batch or "batch"
    graph = helper.make_graph(
        [helper.make_node("MatMul", [input_name, "W"], ["xw"], name=node_name),
         helper.make_node("Add", ["xw", "b"], ["y"]), helper.make_node("Mul", [input_name, "two"], ["z"])],
        "tiny", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [dim, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [dim, 2]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [dim, 3])],
        [numpy_helper.from_array(TINY_W, "W"), numpy_helper.from_array(TINY_B, "b"),
         numpy_helper.from_array(np.array(2, dtype=np.float32), "two")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / name
    onnx.save(model, path)
    return path


def tiny_outputs(x: np.ndarray) -> dict:
    from helpers import TINY_B, TINY_W

    return {"y": x @ TINY_W + TINY_B, "z": 2 * x}


# ----- warnings (issue item 10) -----------------------------------------------------------------

WARNING_FACTORIES = '''
import logging
import warnings
import numpy as np
import torch
from kit.core.errors import KitNote, KitWarning


def _warn():
    warnings.warn("the weights are random", KitWarning)
    warnings.warn("the size came from the input shape", KitNote)
    warnings.warn("a library speaks up\\nwith a second line", UserWarning)
    warnings.warn("a library speaks up\\nwith a second line", UserWarning)  # the same again: shown once
    warnings.warn("old API", DeprecationWarning)
    warnings.warn("this default will change", FutureWarning)
    np.array([np.nan]).astype(np.int8)  # numpy: RuntimeWarning, invalid value encountered in cast
    # A library's log handler made now holds the sys.stderr of the moment (torch's logging does).
    logging.getLogger("a_library").addHandler(logging.StreamHandler())
    logging.getLogger("a_library").warning("W1128 18:47:00 _pytree.py:630] a library's log line")


def make_failing():
    _warn()
    raise ValueError("the factory cannot find its config")


def make_working():
    _warn()
    return torch.nn.Linear(4, 2)
'''

EXPECTED_WARNINGS = ["warning: the weights are random",
                     "note: the size came from the input shape",
                     "warning: UserWarning: a library speaks up",
                     "warning: RuntimeWarning: invalid value encountered in cast"]


def without_weights_note(stderr: str) -> list[str]:
    """stderr's lines but the note every factory run without --weights gets (tested in test_pytorch)."""
    return [line for line in stderr.splitlines() if not (line.startswith("note: ") and "has no --weights" in line)]


def test_warnings_print_once_in_the_kits_style_also_when_the_command_fails(tmp_path):
    (tmp_path / "warns.py").write_text(WARNING_FACTORIES)
    failed = run_kit("run", f"{tmp_path / 'warns.py'}:make_failing", "--input-shape", "1x4", "--random")
    assert failed.returncode == 2
    lines = without_weights_note(failed.stderr)
    assert lines[:-1] == EXPECTED_WARNINGS
    assert lines[-1].startswith("error: ") and "the factory cannot find its config" in lines[-1]

    worked = run_kit("run", f"{tmp_path / 'warns.py'}:make_working", "--input-shape", "1x4", "--random", "--json")
    assert worked.returncode == 0, worked.stderr
    assert without_weights_note(worked.stderr) == EXPECTED_WARNINGS
    assert json.loads(worked.stdout)["outputs"]["output"]["shape"] == [1, 2]


# ----- library log lines (absl, oneDNN, XNNPACK, Python loggers) --------------------------------


def test_native_log_lines_stay_off_the_terminal(tmp_path):
    exported = run_kit("export", factory("make_conv"), "--input-shape", "1x3x8x8", "-o", tmp_path / "m.tflite")
    assert exported.returncode == 0, exported.stderr
    assert exported.stderr == ""
    ran = run_kit("run", tmp_path / "m.tflite", "--random")
    assert ran.returncode == 0 and ran.stderr == ""
    # They are there to hide: --debug lets them through (and the tests would notice if they vanished).
    debug = run_kit("run", tmp_path / "m.tflite", "--random", "--debug")
    assert debug.returncode == 0 and "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." in debug.stderr


def test_kit_lines_and_native_crashes_still_reach_the_terminal():
    """The kit's terminal() and faulthandler keep the real descriptor 2; a segfault is still reported."""
    code = ("import ctypes, os, sys\n"
            "from kit.core.quiet import captured_stderr, terminal\n"
            "with captured_stderr():\n"
            "    os.write(2, b'native chatter\\n')\n"
            "    print('library chatter', file=sys.stderr)\n"
            "    print('the kit speaks', file=terminal())\n"
            "    ctypes.string_at(0)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == -signal.SIGSEGV
    assert "the kit speaks" in result.stderr and "Fatal Python error: Segmentation fault" in result.stderr
    assert "chatter" not in result.stderr


def test_an_unexpected_error_shows_what_libraries_logged(monkeypatch, capsys):
    import kit.cli.runtimes

    def crash(args):
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                    b"I0000 00:00:1.0 port.cc:153] oneDNN custom operations are on.\n"
                    b"native: the real reason\n")
        raise RuntimeError("boom")

    monkeypatch.setattr(kit.cli.runtimes, "handle", crash)
    assert main(["runtimes"]) == 70
    assert capsys.readouterr().err.splitlines() == [
        "native: the real reason", "error: unexpected RuntimeError: boom (rerun with --debug for the traceback)"]


# ----- parsing ----------------------------------------------------------------------------------

ANY_ORDER = {  # the same command with its options first and last
    "bench": (["a.py:f", "b.onnx"], ["--input-shape", "1x3x8x8", "--threads", "1"]),
    "run": (["m.onnx"], ["--random", "2", "--threads", "1", "--json"]),
    "compare": (["a.onnx", "b.onnx"], ["--random", "3", "--json"]),
    "eval": (["m.onnx"], ["--data", "d.npz", "--json"]),
    "export": (["a.py:f"], ["-o", "m.onnx", "--input-shape", "1x3"]),
    "quantize": (["m.onnx"], ["-o", "q.onnx", "--json"]),
    "inspect": (["m.onnx"], ["--json"]),
    "check": (["edgetpu", "m.tflite"], ["--json"]),
    "build": (["m.onnx"], ["-o", "m.engine", "--json"]),
}


@pytest.mark.parametrize("command", sorted(ANY_ORDER))
def test_options_and_arguments_in_any_order(command):
    positionals, options = ANY_ORDER[command]
    parser = _parser()
    last = vars(_parse(parser, [command, *positionals, *options]))
    first = vars(_parse(parser, [command, *options, *positionals]))
    between = vars(_parse(parser, [command, positionals[0], *options, *positionals[1:]]))
    assert first == last == between


def test_bench_models_around_their_options_as_the_readme_shows():
    args = _parse(_parser(), ["bench", "models.py:make_model", "--input-shape", "1x3x224x224", "model.onnx"])
    assert args.models == ["models.py:make_model", "model.onnx"] and args.input_shape == ["1x3x224x224"]


def test_demo_writes_to_o_and_still_takes_out():
    parser = _parser()
    assert _parse(parser, ["demo", "-o", "here"]).output == "here"
    assert _parse(parser, ["demo", "--out", "there"]).output == "there"
    assert _parse(parser, ["demo"]).output == "kit-demo"


def test_usage_errors_are_one_line(tiny_onnx):
    assert error_line(run_kit("run", "--random")) == (
        "error: kit run: the following arguments are required: model (see kit run --help).")
    assert error_line(run_kit("runn", "m.onnx")).startswith("error: kit: unknown command 'runn'; expected one of")
    assert run_kit("run", "--random").returncode == 2
    assert error_line(run_kit("run", tiny_onnx, "--random", "--no-such-flag")) == (
        "error: kit run: unrecognized arguments: --no-such-flag (see kit run --help).")


def test_threads_are_bounded_by_the_machine(tiny_onnx):
    cpus = len(os.sched_getaffinity(0))
    refused = run_kit("run", tiny_onnx, "--random", "--threads", "100000")
    assert refused.returncode == 2
    assert error_line(refused) == (
        f"error: kit run: argument --threads: expected threads from 0 to {4 * cpus} (4 per CPU; this machine gives "
        f"the kit {cpus} CPU{'s' if cpus > 1 else ''}), found 100000 (see kit run --help).")
    assert run_kit("run", tiny_onnx, "--random", "--threads", str(4 * cpus + 1)).returncode == 2
    ran = run_kit("run", tiny_onnx, "--random", "--threads", str(cpus), "--json")
    assert ran.returncode == 0 and json.loads(ran.stdout)["runtime"]["threads"] == cpus


# ----- kit run: --random N, --preprocess, outputs ---------------------------------------------------


def test_random_n_is_one_batch_of_n_on_a_dynamic_batch(tiny_onnx, tmp_path):
    ran = run_kit("run", "--random", "3", "--seed", "5", tiny_onnx, "-o", tmp_path / "o.npz")
    assert ran.returncode == 0, ran.stderr
    x = random_feeds([_spec("x", "batch")], seed=5, batch=3)["x"]
    saved = np.load(tmp_path / "o.npz")
    np.testing.assert_allclose(saved["y"], tiny_outputs(x)["y"], rtol=1e-6)
    assert saved["z"].shape == (3, 3)


def test_random_n_runs_a_fixed_batch_model_n_times(tmp_path):
    model = tiny_graph(tmp_path, batch=1)
    ran = run_kit("run", model, "--random", "3", "--seed", "5", "-o", tmp_path / "o.npz")
    assert ran.returncode == 0, ran.stderr
    x = np.concatenate([random_feeds([_spec("x", 1)], seed=seed)["x"] for seed in (5, 6, 7)])
    np.testing.assert_allclose(np.load(tmp_path / "o.npz")["y"], tiny_outputs(x)["y"], rtol=1e-6)

    pairs = tiny_graph(tmp_path, batch=2, name="pairs.onnx")
    assert json.loads(run_kit("run", pairs, "--random", "--json").stdout)["outputs"]["y"]["shape"] == [2, 2]
    assert json.loads(run_kit("run", pairs, "--random", "4", "--json").stdout)["outputs"]["y"]["shape"] == [4, 2]
    assert "--random 3 does not divide into the batches of 2 this model fixes" in error_line(
        run_kit("run", pairs, "--random", "3"))


def test_random_n_beyond_memory_is_refused_before_allocating(tiny_onnx):
    refused = run_kit("run", tiny_onnx, "--random", "100000000000000")
    assert refused.returncode == 2
    # numpy draws float64 and converts: 8 + 4 bytes per element
    assert error_line(refused).startswith("error: random inputs 'x' [100000000000000, 3] would take 3352761.3 GB, "
                                          "more than the ")
    assert error_line(refused).endswith(" of memory available here. Ask for fewer samples or a smaller input shape.")


def _spec(name, batch):
    from kit.core.specs import TensorSpec

    return TensorSpec(name, (batch, 3))


def image_model(folder):
    """image float32[1,3,4,4] -> output (Identity): shows exactly what preprocessing fed it."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["output"])], "identity",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 4, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, folder / "identity.onnx")
    return folder / "identity.onnx"


def test_preprocess_for_a_model_that_stores_none(tmp_path, conv_onnx):
    model = image_model(tmp_path)
    pixels = np.random.default_rng(0).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "cat.png"), pixels)
    rgb = pixels[:, :, ::-1].astype(np.float32).transpose(2, 0, 1)[None]
    ran = run_kit("run", model, "--image", tmp_path / "cat.png", "--preprocess", "mean=0.5,std=0.25",
                  "-o", tmp_path / "given.npz")
    assert ran.returncode == 0, ran.stderr
    np.testing.assert_allclose(np.load(tmp_path / "given.npz")["output"], (rgb / 255 - 0.5) / 0.25, rtol=1e-5)
    assert run_kit("run", model, "--image", tmp_path / "cat.png", "-o", tmp_path / "default.npz").returncode == 0
    np.testing.assert_allclose(np.load(tmp_path / "default.npz")["output"], rgb / 255, rtol=1e-5)

    assert error_line(run_kit("run", conv_onnx, "--image", tmp_path / "cat.png", "--preprocess", "std=2")) == (
        f"error: {conv_onnx} records its own preprocessing; --preprocess is for models that record none. "
        "Drop --preprocess: the recorded steps are the ones the model was exported with.")
    assert "found no --image" in error_line(run_kit("run", model, "--random", "--preprocess", "std=2"))


def test_run_never_writes_over_a_file_it_reads(tiny_onnx, tmp_path):
    feeds = tmp_path / "feeds.npz"
    np.savez(feeds, x=np.ones((1, 3), np.float32))
    (tmp_path / "link.npz").symlink_to(feeds)
    before = feeds.read_bytes()
    for output in (feeds, tmp_path / "link.npz"):
        for given in (str(feeds), f"x={feeds}"):
            refused = run_kit("run", tiny_onnx, "--input", given, "-o", output)
            assert refused.returncode == 2
            assert "is the same file as the input" in error_line(refused)
    assert feeds.read_bytes() == before and files_in(tmp_path) == ["feeds.npz", "link.npz"]


def test_run_on_a_full_disk_is_a_clean_error_and_leaves_nothing(tiny_onnx, tmp_path):
    result = run_on_full_disk(tmp_path, f'"$KIT" run {tiny_onnx} --random 4000 -o "$DISK/out.npz"; code=$?; '
                                        'ls -A "$DISK"; exit $code')
    assert result.returncode == 2
    assert result.stdout == ""  # neither the output nor a temporary file is left on the full disk
    assert error_line(result) == disk_full_line(tmp_path / "disk", "out.npz")


# ----- signals ----------------------------------------------------------------------------------

SLOW_FACTORIES = '''
import time
from pathlib import Path

import torch


def _wait():
    Path(__file__).with_name("started").touch()
    time.sleep(300)


def make_slow():
    _wait()


def make_swallowing():  # a library that catches everything and carries on
    try:
        _wait()
    except BaseException:
        pass
    return torch.nn.Linear(4, 2)


def make_wrapping():  # a library that turns the interrupt into an error of its own
    try:
        _wait()
    except BaseException as error:
        raise AttributeError("module 'torch' has no attribute '_dynamo'") from error
'''


@pytest.mark.parametrize("factory_name", ["make_slow", "make_swallowing", "make_wrapping"])
@pytest.mark.parametrize("signum, code, line", [
    (signal.SIGINT, 130, "error: interrupted; nothing was left half-written."),
    (signal.SIGTERM, 143, "error: terminated; nothing was left half-written."),
])
def test_an_interrupted_command_exits_with_one_line_and_leaves_nothing(tmp_path, factory_name, signum, code, line):
    (tmp_path / "slow.py").write_text(SLOW_FACTORIES)
    out = tmp_path / "out"
    out.mkdir()
    output = [] if factory_name == "make_swallowing" else ["-o", str(out / "o.npz")]  # that one completes
    process = subprocess.Popen([str(KIT), "run", f"{tmp_path / 'slow.py'}:{factory_name}", "--input-shape", "1x4",
                                "--random", *output], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "COLUMNS": "80"})
    deadline = time.monotonic() + 300
    while not (tmp_path / "started").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert (process.returncode, without_weights_note(stderr)) == (code, [line])
    assert files_in(out) == []


# ----- 80 columns ----------------------------------------------------------------------------------


def first_column(text: str) -> str:
    """The first column of every table row joined: a value folded over several lines is whole again."""
    return "".join(line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│"))


def test_runtimes_at_80_columns_cut_nothing():
    result = run_kit("runtimes")
    rows = json.loads(run_kit("runtimes", "--json").stdout)
    assert result.returncode == 0 and "…" not in result.stdout
    lines = result.stdout.splitlines()
    for row in rows:
        assert any(line.split()[:2] == [row["name"], "yes" if row["usable"] else "no"] for line in lines)
        assert f"    {row['detail']}" in lines
        if not row["usable"] and row["install"]:
            assert f"    install: {row['install']}" in lines  # one line, whole, ready to copy


def test_tables_and_run_output_at_80_columns_cut_nothing(tmp_path):
    long_input = "an_input_name_long_enough_to_overflow_any_table_column_at_eighty_columns_" + "x" * 30
    long_node = "/backbone/stage_4/block_12/depthwise_separable/pointwise/MatMul_with_a_long_name_" + "n" * 30
    model = tiny_graph(tmp_path, input_name=long_input, node_name=long_node)
    inspected = run_kit("inspect", model, "--nodes")
    assert inspected.returncode == 0, inspected.stderr
    assert "…" not in inspected.stdout
    assert long_input in first_column(inspected.stdout) and long_node in first_column(inspected.stdout)

    feeds = tmp_path / "feeds.npz"
    np.savez(feeds, **{long_input: np.full((1, 3), 1e-7, np.float32)})
    ran = run_kit("run", model, "--input", feeds)
    assert ran.returncode == 0, ran.stderr
    assert "…" not in ran.stdout
    assert "z: float32[1, 3], min 2e-07, max 2e-07, mean 2e-07" in ran.stdout.splitlines()


def test_a_reader_that_leaves_early_is_no_failure(tmp_path):
    """``kit inspect --nodes big.onnx | head -1``: more output than a pipe holds, and the reader goes."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Identity", [f"t{i}"], [f"t{i + 1}"], name=f"identity_node_number_{i}")
             for i in range(3000)]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("t3000", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "chain.onnx")
    process = subprocess.Popen([str(KIT), "inspect", str(tmp_path / "chain.onnx"), "--nodes"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().startswith(str(tmp_path / "chain.onnx"))
    process.stdout.close()
    assert (process.wait(timeout=120), process.stderr.read()) == (0, "")


def test_an_error_line_keeps_a_long_path_whole(tmp_path):
    missing = tmp_path / ("a_folder_with_a_name_much_longer_than_a_terminal_line_" * 2) / "model.onnx"
    result = run_kit("run", missing, "--random")
    assert result.returncode == 2
    assert error_line(result) == f"error: model file {missing} does not exist. Check the path."
