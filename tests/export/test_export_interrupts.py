"""Ctrl-C and SIGTERM stop `kit export` wherever they land, and leave nothing behind; a SIGKILL's
leftovers are cleaned on the next write."""

import os
import signal
import subprocess
import time

import pytest
from helpers import KIT, files_in

# A factory that pauses (and says where, with a file) at one point of the export, so the test
# signals the real process exactly there: while the factory builds the model, while torch
# imports torch._dynamo (where Ctrl-C about 2 s into an export lands), or while dynamo traces.
FACTORY = '''
import importlib.abc, os, pathlib, sys, time
import torch

HERE = pathlib.Path(__file__).parent
PAUSE_AT = os.environ["PAUSE_AT"]


def pause(point):
    if not (HERE / point).exists():  # once: a fallback that retries the import must not wait again
        (HERE / point).touch()
        time.sleep(600)


class HoldDynamoImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch._dynamo.variables.functions":  # deep in the import, as observed
            pause("importing")
        return None


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)

    def forward(self, x):
        if PAUSE_AT == "tracing" and torch.compiler.is_exporting():
            pause("tracing")
        return self.linear(x)


def make():
    if PAUSE_AT == "building":
        pause("building")
    if PAUSE_AT == "importing":
        sys.meta_path.insert(0, HoldDynamoImport())
    return Net()
'''

SECONDS = 300  # bounds on every wait; never an assertion on time


def _export_interrupted_at(tmp_path, point: str, signum: int) -> tuple[subprocess.CompletedProcess, list[str]]:
    source, out = tmp_path / "src", tmp_path / "out"
    source.mkdir()
    out.mkdir()
    (source / "models.py").write_text(FACTORY)
    env = {**os.environ, "COLUMNS": "80", "PAUSE_AT": point}
    process = subprocess.Popen([str(KIT), "export", f"{source / 'models.py'}:make", "--input-shape", "1x4",
                                "-o", str(out / "m.onnx")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)
    try:
        deadline = time.monotonic() + SECONDS
        while not (source / point).exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (source / point).exists(), f"the export never reached {point}: {process.poll()}"
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), files_in(out)


@pytest.mark.parametrize("point, signum, code", [
    ("importing", signal.SIGINT, 130),
    ("importing", signal.SIGTERM, 143),
    ("building", signal.SIGINT, 130),
    ("tracing", signal.SIGTERM, 143),
])
def test_an_interrupt_stops_the_export_and_leaves_nothing(tmp_path, point, signum, code):
    result, left = _export_interrupted_at(tmp_path, point, signum)
    assert result.returncode == code, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) <= 1, result.stderr
    if signum == signal.SIGINT:
        assert result.stderr.splitlines() == ["error: interrupted; nothing was left half-written."]
    assert left == []
