"""kit check edgetpu around the compiler (a stand-in edgetpu_compiler: the real one cannot be
installed here): it never replaces an existing NAME_edgetpu.tflite, never lets a model path be
taken for an option, copies the provenance into what it compiles, and reads damaged
flatbuffers as clean errors."""

import json
import os
import shutil

import numpy as np
import pytest
from helpers import files_in, run_kit
from kit.runtimes.edgetpu.readiness import check_edgetpu

from kit.core import provenance
from kit.core.errors import ModelFileError

# Writes NAME_edgetpu.tflite (a copy) and NAME_edgetpu.log into -o DIR, as the real compiler does,
# and records its arguments one per line.
FAKE_COMPILER = """#!/bin/sh
printf '%s\\n' "$@" > "$(dirname "$0")/args"
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out="$2"; shift 2;;
    -s) shift;;
    -*) echo "unknown flag $1"; exit 1;;
    *) model="$1"; shift;;
  esac
done
name=$(basename "$model" .tflite)
cp "$model" "$out/${name}_edgetpu.tflite"
echo "Edge TPU Compiler version 16.0.384591198"
echo "Output model: $out/${name}_edgetpu.tflite"
echo "Number of Edge TPU subgraphs: 1"
echo "Number of operations that will run on Edge TPU: 7"
echo "Number of operations that will run on CPU: 0"
echo "operation log" > "$out/${name}_edgetpu.log"
"""


@pytest.fixture
def compiler(tmp_path, monkeypatch):
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "edgetpu_compiler").write_text(FAKE_COMPILER)
    (folder / "edgetpu_compiler").chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder


@pytest.fixture
def model(digits_tflite, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(digits_tflite["int8"].path, folder / "m.tflite")
    return folder / "m.tflite"


def test_the_compiled_model_lands_beside_with_the_provenance(compiler, model):
    result = check_edgetpu(model)
    compiled = model.with_name("m_edgetpu.tflite")
    assert result.compiled == str(compiled) and result.compiler["ops_on_tpu"] == 7
    assert files_in(model.parent) == ["m.tflite", "m_edgetpu.log", "m_edgetpu.tflite"]  # no temporary folder left
    stored = provenance.read(compiled)
    assert stored == provenance.read(model) | {"stage": "edgetpu-compile", "parent": "m.tflite",
                                               "compiler": "Edge TPU Compiler version 16.0.384591198"}
    assert f"Output model: {model.parent}/m_edgetpu.tflite" in result.compiler["log"]  # not the private folder


def test_an_existing_compiled_model_is_never_replaced(compiler, model, tmp_path):
    precious = tmp_path / "precious.bin"
    precious.write_bytes(b"an earlier compile, kept by hand")
    model.with_name("m_edgetpu.tflite").write_bytes(b"the user's own file")
    model.with_name("m_edgetpu.log").symlink_to(precious)
    result = run_kit("check", "edgetpu", model, "--json", env={"PATH": os.environ["PATH"]})
    data = json.loads(result.stdout)
    assert data["compiled"] is None and data["compiler"]["returncode"] == 0
    assert model.with_name("m_edgetpu.tflite").read_bytes() == b"the user's own file"
    assert precious.read_bytes() == b"an earlier compile, kept by hand"
    assert any(f"kept the existing {model.parent / 'm_edgetpu.tflite'}: the kit never replaces a file" in note
               and "move the old one away and rerun" in note for note in data["notes"])
    assert files_in(model.parent) == ["m.tflite", "m_edgetpu.log", "m_edgetpu.tflite"]


def test_a_model_path_starting_with_a_dash_is_not_an_option(compiler, model, monkeypatch):
    monkeypatch.chdir(model.parent)
    os.rename("m.tflite", "-m.tflite")
    result = run_kit("check", "edgetpu", "--json", "--", "-m.tflite", env={"PATH": os.environ["PATH"]})
    data = json.loads(result.stdout)
    assert data["compiler"]["returncode"] == 0 and data["compiler_command"] == "edgetpu_compiler -s -o . ./-m.tflite"
    assert (compiler / "args").read_text().splitlines()[-1] == "./-m.tflite"
    assert sorted(files_in(model.parent)) == ["-m.tflite", "-m_edgetpu.log", "-m_edgetpu.tflite"]


# ----- damaged flatbuffers -------------------------------------------------------------------------


def rewritten(source, folder, change):
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(source.read_bytes())
    change(model)
    path = folder / "damaged.tflite"
    path.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    return path


def no_subgraph(model):
    model.subgraphs = []


def opcode_out_of_range(model):
    model.subgraphs[0].operators[2].opcodeIndex = 99


def tensor_out_of_range(model):
    model.subgraphs[0].operators[0].inputs = np.array([0, 5000], np.int32)


@pytest.mark.parametrize("change, message", [
    (no_subgraph, r"it has no subgraph \(no operators, inputs or outputs\)"),
    (opcode_out_of_range, r"op #2 of subgraph 0 uses operator code 99, but the model has \d+"),
    (tensor_out_of_range, r"op #0 of subgraph 0 uses tensor 5000, but it has \d+ tensors"),
])
def test_damaged_flatbuffers_are_clean_errors(change, message, digits_tflite, tmp_path):
    path = rewritten(digits_tflite["int8"].path, tmp_path, change)
    with pytest.raises(ModelFileError, match=f"damaged.tflite is a damaged TFLite model: {message}. Re-export it"):
        check_edgetpu(path, run_compiler=False)
    result = run_kit("check", "edgetpu", path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "is a damaged TFLite model" in " ".join(result.stderr.split())
