import pytest
from helpers import files_in

from kit.errors import InputError
from kit.fileio import atomic_output, check_output_path


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
