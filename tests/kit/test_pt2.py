"""A crafted .pt2 runs no code: every way torch.export.load would run code from the file is refused."""

import io
import json
import os

import numpy as np
import pytest
import torch
from helpers import files_in, run_kit
from torch.export.pt2_archive import PT2ArchiveReader, PT2ArchiveWriter

from kit.core.errors import ModelFileError, UnsafeFileError
from kit.data.sources import load_torch_source


class WithConstant(torch.nn.Module):
    """Weights, a buffer and a lifted constant: every payload kind a plain .pt2 holds."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(4, 3)
        self.register_buffer("shift", torch.ones(3))

    def forward(self, x):
        return self.linear(x) + self.shift + torch.tensor([1.0, 2.0, 3.0])


@pytest.fixture(scope="module")
def plain_pt2(tmp_path_factory):
    program = torch.export.export(WithConstant(), (torch.randn(2, 4),),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
    path = tmp_path_factory.mktemp("plain") / "plain.pt2"
    torch.export.save(program, path)
    return path


class _Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def _pickled(marker) -> bytes:
    buffer = io.BytesIO()
    torch.save(_Payload(marker), buffer)
    return buffer.getvalue()


def _code(marker) -> str:
    return f"__import__('os').system('touch {marker}')"  # single quotes: torch quotes guards with double ones


def _edit_model(change):
    def edit(records):
        program = json.loads(records["models/model.json"])
        change(program)
        records["models/model.json"] = json.dumps(program).encode()
    return edit


def _pickled_sample_inputs(marker):
    def edit(records):
        records["data/sample_inputs/model.pt"] = _pickled(marker)
    return edit


def _pickled_weight(marker):
    def edit(records):
        config = json.loads(records["data/weights/model_weights_config.json"])
        entry = config["config"]["linear.weight"]
        entry["use_pickle"] = True
        records["data/weights/model_weights_config.json"] = json.dumps(config).encode()
        records[f"data/weights/{entry['path_name']}"] = _pickled(marker)
    return edit


def _shape_expression(marker):
    def change(program):
        sizes = program["graph_module"]["graph"]["tensor_values"]["x"]["sizes"]
        sizes[0]["as_expr"]["expr_str"] = f"{_code(marker)} + {sizes[0]['as_expr']['expr_str']}"
    return _edit_model(change)


def _guard_code(marker):
    return _edit_model(lambda program: program.__setitem__("guards_code", [f"{_code(marker)} == 0"]))


def _argument_name(marker):
    def change(program):
        for entry in program["graph_module"]["module_call_graph"]:
            if entry["signature"]:
                entry["signature"]["forward_arg_names"] = [f"x={_code(marker)}"]
    return _edit_model(change)


def _compiled_library(marker):
    def edit(records):
        records["data/aotinductor/model/model.so"] = b"\x7fELF"
    return edit


def craft(plain, path, attack, marker):
    with PT2ArchiveReader(str(plain)) as reader:
        records = {name: reader.read_bytes(name) for name in reader.get_file_names()}
    attack(marker)(records)
    with PT2ArchiveWriter(str(path)) as writer:
        for name, data in records.items():
            writer.write_bytes(name, data)
    return path


# Each attack, and what the kit says about it. torch.export.load itself runs every one
# that is marked True (checked below, so the crafted files are known to be real attacks).
ATTACKS = {
    "sample inputs": (_pickled_sample_inputs, "sample inputs that are pickled Python objects", True),
    "pickled weight": (_pickled_weight, "weights or constants stored as pickled Python objects", True),
    "shape expression": (_shape_expression, "a shape expression that is not plain arithmetic", True),
    "guard code": (_guard_code, "guard code that is not plain arithmetic", True),
    "argument name": (_argument_name, r"the name .x=__import__.*which is not a plain identifier", False),
    "compiled library": (_compiled_library, "an AOTInductor-compiled library", False),
}


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_crafted_pt2_is_refused_and_runs_nothing(plain_pt2, tmp_path, attack):
    make, message, torch_runs_it = ATTACKS[attack]
    marker = tmp_path / "marker"
    path = craft(plain_pt2, tmp_path / "crafted.pt2", make, marker)

    with pytest.raises(UnsafeFileError, match=f"crafted.pt2 holds {message}.*could run code.*--allow-pickle"):
        load_torch_source(str(path))
    assert not marker.exists()

    if torch_runs_it:  # the same file through torch's own loader: the attack is real
        try:
            torch.export.load(str(path)).module()(torch.randn(2, 4))
        except Exception:
            pass
        assert marker.exists()


def test_allow_pickle_honours_the_users_trust(plain_pt2, tmp_path):
    marker = tmp_path / "marker"
    path = craft(plain_pt2, tmp_path / "crafted.pt2", _pickled_sample_inputs, marker)
    with pytest.raises(ModelFileError):  # torch unpickles the payload, then finds no sample inputs in it
        load_torch_source(str(path), allow_pickle=True)
    assert marker.exists()


def test_a_plain_pt2_loads_without_allow_pickle(plain_pt2):
    source = load_torch_source(str(plain_pt2))
    x = torch.randn(5, 4)
    np.testing.assert_allclose(source.module(x).detach().numpy(), WithConstant()(x).detach().numpy(), rtol=1e-6)
    assert [(s.name, s.shape) for s in source.program_inputs] == [("x", ("batch", 4))]


def test_a_pt2_with_guards_and_derived_dimensions_loads(tmp_path):
    class Derived(torch.nn.Module):
        def forward(self, x, y):
            return x[:, :2] * 2 + y[1:], (x.shape[0] // 2) * torch.ones(1)

    batch = torch.export.Dim("batch", min=4, max=100)
    program = torch.export.export(Derived(), (torch.randn(6, 3), torch.randn(7, 2)),
                                  dynamic_shapes=({0: batch}, {0: batch + 1}))
    torch.export.save(program, tmp_path / "derived.pt2")
    source = load_torch_source(str(tmp_path / "derived.pt2"))
    assert source.input_names == ["x", "y"]
    assert source.module(torch.randn(5, 3), torch.randn(6, 2))[0].shape == (5, 2)


def test_a_text_file_named_pt2_is_one_clean_error(tmp_path):
    (tmp_path / "text.pt2").write_text("not a program\n")
    with pytest.raises(ModelFileError, match=r"text.pt2 is not a torch.export program \(not a zip archive\)"):
        load_torch_source(str(tmp_path / "text.pt2"))


def test_kit_export_of_a_text_pt2_prints_only_the_kits_line(tmp_path):
    (tmp_path / "text.pt2").write_text("not a program\n")
    result = run_kit("export", tmp_path / "text.pt2", "-o", tmp_path / "m.onnx")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {tmp_path / 'text.pt2'} is not a torch.export program (not a zip archive). "
        "Write .pt2 files with torch.export.save(torch.export.export(model, args), path)."]
    assert files_in(tmp_path) == ["text.pt2"]


@pytest.mark.parametrize("command", [
    ["export", "{evil}", "-o", "{folder}/m.onnx"],
    ["run", "{evil}", "--random"],
    ["inspect", "{evil}"],
    ["compare", "{plain}", "{evil}"],
    ["bench", "{evil}", "--max-time", "0"],
])
def test_every_command_refuses_a_crafted_pt2(plain_pt2, tmp_path, command):
    marker = tmp_path / "marker"
    evil = craft(plain_pt2, tmp_path / "evil.pt2", _pickled_sample_inputs, marker)
    argv = [arg.format(evil=evil, plain=plain_pt2, folder=tmp_path) for arg in command]
    result = run_kit(*argv, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert f"{evil} holds sample inputs that are pickled Python objects" in lines[0]  # bench names its variant first
    assert "UnsafeFileError" not in result.stderr and "Traceback" not in result.stderr
    assert files_in(tmp_path) == ["evil.pt2"]
