"""Ctrl-C (SIGINT) and SIGTERM at several points of every long command: the real `kit` process
exits 130 or 143 with one line, and leaves nothing behind (no output, no hidden temporary
folder, nothing in its working folder or its TMPDIR, the inputs untouched).

The process is paused at a known point by a sitecustomize module (KIT_PAUSE names the point)
and signalled once it says it is there, so no test depends on timing:
- ``written``: the output is complete in its temporary folder, not yet moved into place;
- ``running``: inside the first inference (Runtime.run);
- ``calibrating``: while calibration data is read (FeedReader.get_next).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import textwrap
import time

import numpy as np
import pytest
from helpers import KIT, MODELS_FILE
from test_bad_input_catalogue import snapshot

PAUSE = textwrap.dedent('''
    import contextlib, os, pathlib, time

    POINT, HERE = os.environ["KIT_PAUSE"], pathlib.Path(os.environ["KIT_PAUSE_DIR"])

    def pause():
        marker = HERE / f"paused-{os.getpid()}"
        if not any(HERE.glob("paused-*")):  # the first process to get there (bench runs workers)
            marker.touch()
            time.sleep(600)

    if POINT == "written":
        import kit.core.fileio
        real = kit.core.fileio.atomic_output

        @contextlib.contextmanager
        def atomic_output(output):
            with real(output) as tmp:
                yield tmp
                pause()  # the finished file sits in the temporary folder, not yet renamed

        kit.core.fileio.atomic_output = atomic_output
    elif POINT == "running":
        from kit.runtimes.base import Runtime
        run = Runtime.run

        def paused_run(self, feeds):
            pause()
            return run(self, feeds)

        Runtime.run = paused_run
    elif POINT == "calibrating":
        import kit.data.calibration
        get_next = kit.data.calibration.FeedReader.get_next

        def paused_get_next(self):
            pause()
            return get_next(self)

        kit.data.calibration.FeedReader.get_next = paused_get_next
''')

# (command, the point it is paused at, signal). {i}: inputs, {o}: the output folder, {m}: tests/models.py.
LONG_COMMANDS = [
    ("export {m}:make_conv --input-shape 1x3x8x8 -o {o}/m.onnx", "running", signal.SIGINT),
    ("export {m}:make_conv --input-shape 1x3x8x8 -o {o}/m.onnx", "written", signal.SIGTERM),
    ("export {m}:make_conv --input-shape 1x3x8x8 -o {o}/m.tflite", "running", signal.SIGTERM),
    ("export {m}:make_conv --input-shape 1x3x8x8 --precision int8 --calib {i}/images.npy -o {o}/m.tflite",
     "calibrating", signal.SIGINT),
    ("export {m}:make_conv --input-shape 1x3x8x8 --precision int8 --calib {i}/images.npy -o {o}/m.tflite",
     "written", signal.SIGTERM),
    ("quantize {i}/conv.onnx --calib {i}/images.npy -o {o}/q.onnx", "calibrating", signal.SIGTERM),
    ("quantize {i}/conv.onnx --calib {i}/images.npy -o {o}/q.onnx", "running", signal.SIGINT),
    ("quantize {i}/conv.onnx --calib {i}/images.npy -o {o}/q.onnx", "written", signal.SIGINT),
    ("compare {i}/conv.onnx {i}/conv.onnx --data {i}/images.npy --save-golden {o}/golden.npz", "running",
     signal.SIGTERM),
    ("compare {i}/conv.onnx {i}/conv.onnx --data {i}/images.npy --save-golden {o}/golden.npz", "written",
     signal.SIGINT),
    ("eval {i}/conv.onnx --data {i}/labelled.npz --baseline {i}/conv.onnx --max-drop 0.01", "running",
     signal.SIGINT),
    ("bench {i}/conv.onnx --max-time 0.1 --save-json {o}/run.json", "running", signal.SIGTERM),
    ("bench {i}/conv.onnx --max-time 0.1 --save-json {o}/run.json", "written", signal.SIGINT),
    ("build {i}/conv.onnx -o {o}/m.engine --compute-capability SM86", "written", signal.SIGTERM),
    ("demo -o {o}/demo", "written", signal.SIGINT),
    ("demo -o {o}/demo", "running", signal.SIGTERM),
]

SECONDS = 300  # the bound on every wait; never an assertion on time
LINES = {signal.SIGINT: (130, "error: interrupted; nothing was left half-written."),
         signal.SIGTERM: (143, "error: terminated; nothing was left half-written.")}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, conv_onnx):
    import shutil

    folder = tmp_path_factory.mktemp("interrupt-inputs")
    shutil.copy(conv_onnx, folder / "conv.onnx")
    images = np.random.default_rng(0).random((40, 3, 8, 8), dtype=np.float32)
    np.save(folder / "images.npy", images)
    np.savez(folder / "labelled.npz", x=images, y=np.arange(40) % 5)
    (folder / "hook").mkdir()
    (folder / "hook" / "sitecustomize.py").write_text(PAUSE)
    return folder


@pytest.mark.parametrize("command, point, signum", LONG_COMMANDS,
                         ids=[f"{c.split()[0]}-{c.split()[-1].rpartition('.')[2]}-{p}-{s.name}"
                              for c, p, s in LONG_COMMANDS])
def test_an_interrupt_stops_the_command_and_leaves_nothing(inputs, tmp_path, command, point, signum):
    before = snapshot(inputs)
    out, scratch, pauses = tmp_path / "out", tmp_path / "tmp", tmp_path / "pauses"
    for folder in (out, scratch, pauses):
        folder.mkdir()
    argv = shlex.split(command.format(i=inputs, o=out, m=MODELS_FILE))
    env = {**os.environ, "COLUMNS": "80", "TMPDIR": str(scratch), "PYTHONPATH": str(inputs / "hook"),
           "KIT_PAUSE": point, "KIT_PAUSE_DIR": str(pauses)}
    process = subprocess.Popen([str(KIT), *argv], cwd=out, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + SECONDS
    while not any(pauses.iterdir()) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, f"the command ended before reaching {point}: {process.communicate()}"
    assert any(pauses.iterdir()), f"never reached {point}"
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=SECONDS)
    code, line = LINES[signum]
    lines = [line for line in stderr.splitlines() if not line.startswith(("note: ", "warning: "))]
    assert (process.returncode, lines) == (code, [line]), stderr
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    if command.startswith("demo"):  # the files of the steps it finished stay, whole; nothing else
        assert not [name for name in left if "/." in f"/{name}"], left
    else:
        assert left == [], left
    assert [p.name for p in scratch.iterdir() if p.name != ".ses"] == []  # ONNX Runtime's session id stays
    assert snapshot(inputs) == before
