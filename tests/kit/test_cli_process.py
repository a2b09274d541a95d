"""The CLI's shared behaviour through the real ``kit`` process: warnings, native log lines,
parsing, signals, output at 80 columns, and ``kit run``'s inputs and outputs."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import cv2
import numpy as np
import pytest
from helpers import KIT, factory, files_in, run_kit

from kit.cli import main
from kit.specs import random_feeds


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
import warnings
import numpy as np
import torch
from kit.errors import KitNote, KitWarning


def _warn():
    warnings.warn("the weights are random", KitWarning)
    warnings.warn("the size came from the input shape", KitNote)
    warnings.warn("a library speaks up\\nwith a second line", UserWarning)
    warnings.warn("a library speaks up\\nwith a second line", UserWarning)  # the same again: shown once
    warnings.warn("old API", DeprecationWarning)
    warnings.warn("this default will change", FutureWarning)
    np.array([np.nan]).astype(np.int8)  # numpy: RuntimeWarning, invalid value encountered in cast


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


def test_warnings_print_once_in_the_kits_style_also_when_the_command_fails(tmp_path):
    (tmp_path / "warns.py").write_text(WARNING_FACTORIES)
    failed = run_kit("run", f"{tmp_path / 'warns.py'}:make_failing", "--input-shape", "1x4", "--random")
    assert failed.returncode == 2
    lines = failed.stderr.splitlines()
    assert lines[:-1] == EXPECTED_WARNINGS
    assert lines[-1].startswith("error: ") and "the factory cannot find its config" in lines[-1]

    worked = run_kit("run", f"{tmp_path / 'warns.py'}:make_working", "--input-shape", "1x4", "--random", "--json")
    assert worked.returncode == 0, worked.stderr
    assert worked.stderr.splitlines() == EXPECTED_WARNINGS
    assert json.loads(worked.stdout)["outputs"]["output"]["shape"] == [1, 2]


# ----- native log lines (absl, oneDNN, XNNPACK) -------------------------------------------------


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
    """Python's stderr and faulthandler keep the real descriptor 2; a segfault is still reported."""
    code = ("import ctypes, os, sys\n"
            "from kit.quiet import native_stderr\n"
            "with native_stderr():\n"
            "    os.write(2, b'native chatter\\n')\n"
            "    print('the kit speaks', file=sys.stderr)\n"
            "    ctypes.string_at(0)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == -signal.SIGSEGV
    assert "the kit speaks" in result.stderr and "Fatal Python error: Segmentation fault" in result.stderr
    assert "native chatter" not in result.stderr


def test_an_unexpected_error_shows_what_native_code_logged(monkeypatch, capsys):
    import kit.cli

    def crash(args):
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                    b"I0000 00:00:1.0 port.cc:153] oneDNN custom operations are on.\n"
                    b"native: the real reason\n")
        raise RuntimeError("boom")

    monkeypatch.setattr(kit.cli, "_runtimes", crash)
    assert main(["runtimes"]) == 70
    assert capsys.readouterr().err.splitlines() == [
        "native: the real reason", "error: unexpected RuntimeError: boom (rerun with --debug for the traceback)"]


# ----- signals ----------------------------------------------------------------------------------

SLOW_FACTORY = '''
import time
from pathlib import Path


def make_slow():
    Path(__file__).with_name("started").touch()
    time.sleep(300)
'''


@pytest.mark.parametrize("signum, code, line", [
    (signal.SIGINT, 130, "error: interrupted; nothing was left half-written."),
    (signal.SIGTERM, 143, "error: terminated; nothing was left half-written."),
])
def test_an_interrupted_command_exits_with_one_line_and_leaves_nothing(tmp_path, signum, code, line):
    (tmp_path / "slow.py").write_text(SLOW_FACTORY)
    out = tmp_path / "out"
    out.mkdir()
    process = subprocess.Popen([str(KIT), "run", f"{tmp_path / 'slow.py'}:make_slow", "--input-shape", "1x4",
                                "--random", "-o", str(out / "o.npz")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "COLUMNS": "80"})
    deadline = time.monotonic() + 300
    while not (tmp_path / "started").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert (process.returncode, stderr.splitlines(), stdout) == (code, [line], "")
    assert files_in(out) == []


