import errno
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
from helpers import files_in

from kit.core.errors import DiskFullError, InputError
from kit.core.fileio import atomic_output, check_output_path, model_files, model_size


def test_atomic_output_moves_the_file_and_its_companions(tmp_path):
    with atomic_output(tmp_path / "m.onnx") as tmp:
        tmp.write_text("model")
        tmp.with_name("m.onnx.data").write_text("weights")
    assert files_in(tmp_path) == ["m.onnx", "m.onnx.data"]


def test_atomic_output_leaves_nothing_on_failure_and_keeps_the_old_file(tmp_path):
    (tmp_path / "m.onnx").write_text("old")
    with pytest.raises(RuntimeError), atomic_output(tmp_path / "m.onnx") as tmp:
        tmp.write_text("half")
        raise RuntimeError("stage failed")
    assert files_in(tmp_path) == ["m.onnx"]
    assert (tmp_path / "m.onnx").read_text() == "old"


def test_output_may_not_be_the_input(tmp_path):
    (tmp_path / "m.onnx").write_text("x")
    with pytest.raises(InputError, match="is the same file as the input"):
        check_output_path(tmp_path / "m.onnx", tmp_path / "m.onnx")
    with pytest.raises(InputError, match="the folder for the output .* does not exist"):
        check_output_path(tmp_path / "nope" / "m.onnx")
    with pytest.raises(InputError, match="is a folder"):
        check_output_path(tmp_path)


def test_output_through_a_link_or_another_spelling_is_the_input(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_text("model")
    (tmp_path / "link.onnx").symlink_to(model)
    os.link(model, tmp_path / "hard.onnx")
    (tmp_path / "sub").mkdir()
    for output in ("link.onnx", "hard.onnx", "sub/../m.onnx"):
        with pytest.raises(InputError, match="is the same file as the input"):
            check_output_path(tmp_path / output, model)
        with pytest.raises(InputError, match="is the same file as the input"):  # and the other way round
            check_output_path(model, tmp_path / output)
    with pytest.raises(InputError, match=r"same file as the input .*link.onnx \(through a link\)"):
        check_output_path(model, tmp_path / "link.onnx")


def test_the_file_of_a_factory_reference_is_an_input(tmp_path):
    (tmp_path / "models.py").write_text("def make(): pass\n")
    with pytest.raises(InputError, match=r"same file as the input .*models.py:make"):
        check_output_path(tmp_path / "models.py", f"{tmp_path / 'models.py'}:make")
    assert check_output_path(tmp_path / "m.onnx", f"{tmp_path / 'models.py'}:make", "random:16", None)


def _dead_pid() -> int:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(finished.stdout)


def test_leftovers_of_a_killed_write_are_removed_on_the_next_write(tmp_path):
    writer = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom kit.core.fileio import atomic_output\n"
         f"with atomic_output({str(tmp_path / 'm.onnx')!r}) as tmp:\n"
         "    tmp.write_text('half'); print('writing', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "writing\n"
    finally:
        writer.kill()
        writer.wait(timeout=60)
    leftover = files_in(tmp_path)
    assert len(leftover) == 1 and leftover[0].startswith(f".m.onnx.{writer.pid}.") and leftover[0].endswith(".tmp")

    live = tmp_path / f".m.onnx.{os.getppid()}.abc_12.tmp"  # a running process's write: never touched
    other = tmp_path / f".n.onnx.{_dead_pid()}.abc_12.tmp"  # another output's
    for folder in (live, other):
        folder.mkdir()
    with atomic_output(tmp_path / "m.onnx") as tmp:
        tmp.write_text("model")
    assert files_in(tmp_path) == sorted([live.name, other.name, "m.onnx"])


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o077, 0o600)])
def test_outputs_get_the_mode_of_new_files_whatever_the_writer_chose(tmp_path, umask, expected):
    previous = os.umask(umask)
    try:
        with atomic_output(tmp_path / "m.tflite") as tmp:
            tmp.write_text("model")
            tmp.chmod(0o755)  # as some converters leave it
            tmp.with_name("m.tflite.kit.json").write_text("{}")
            tmp.with_name("m.tflite.kit.json").chmod(0o600)  # as tempfile.mkstemp does
    finally:
        os.umask(previous)
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()} == {
        "m.tflite": expected, "m.tflite.kit.json": expected}


def test_a_full_disk_is_named_and_leaves_the_old_output(tmp_path):
    (tmp_path / "m.onnx").write_text("old")
    with pytest.raises(DiskFullError, match=rf"no space left on the disk holding {tmp_path} while writing m.onnx\. "
                                            "Nothing was written"):
        with atomic_output(tmp_path / "m.onnx") as tmp:
            tmp.write_text("half")
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError as exc:  # libraries wrap it in their own errors
                raise RuntimeError("serialization failed") from exc
    assert files_in(tmp_path) == ["m.onnx"] and (tmp_path / "m.onnx").read_text() == "old"


def test_model_size_counts_only_the_external_data_the_model_references(tmp_path):
    import onnx
    from onnx import helper, numpy_helper

    def matmul():
        weights = numpy_helper.from_array(np.ones((64, 64), np.float32), "W")
        return helper.make_model(helper.make_graph(
            [helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
            [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 64])],
            [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 64])], [weights]))

    onnx.save(matmul(), tmp_path / "ext.onnx", save_as_external_data=True, location="ext.onnx.data")
    onnx.save(matmul(), tmp_path / "single.onnx")
    (tmp_path / "single.onnx.data").write_bytes(b"\0" * 5_000_000)  # stale, from an earlier export

    assert model_files(tmp_path / "ext.onnx") == [tmp_path / "ext.onnx", tmp_path / "ext.onnx.data"]
    assert model_size(tmp_path / "ext.onnx") == sum(p.stat().st_size for p in model_files(tmp_path / "ext.onnx"))
    assert model_size(tmp_path / "ext.onnx") > 64 * 64 * 4
    assert model_files(tmp_path / "single.onnx") == [tmp_path / "single.onnx"]
    assert model_size(tmp_path / "single.onnx") == (tmp_path / "single.onnx").stat().st_size < 64 * 64 * 4 + 1000


def test_an_interrupt_waits_for_the_model_and_its_companion_to_be_both_in_place(tmp_path, monkeypatch):
    """Ctrl-C arriving between the renames of an IR's .bin and .xml is delivered after both: the
    new .bin never sits beside the old .xml."""
    import os
    import signal

    (tmp_path / "m.xml").write_text("old xml")
    (tmp_path / "m.bin").write_text("old bin")
    renames = []
    real_replace = os.replace

    def replace(source, target):
        real_replace(source, target)
        renames.append(os.path.basename(target))
        if len(renames) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # lands while the .xml is still the old one

    monkeypatch.setattr(os, "replace", replace)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, whatever ran before
    try:
        with pytest.raises(KeyboardInterrupt), atomic_output(tmp_path / "m.xml") as tmp:
            tmp.write_text("new xml")
            tmp.with_suffix(".bin").write_text("new bin")
    finally:
        signal.signal(signal.SIGINT, before if before is not None else signal.default_int_handler)
    assert renames == ["m.bin", "m.xml"]
    assert (tmp_path / "m.xml").read_text() == "new xml" and (tmp_path / "m.bin").read_text() == "new bin"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.xml"]  # the private folder gone too
