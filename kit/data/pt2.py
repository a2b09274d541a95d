"""Open a torch.export ``.pt2`` archive without letting the file run code.

``torch.export.load`` trusts its file. In torch 2.13 it unpickles the sample inputs (falling
back to ``weights_only=False``), weights and constants saved as pickles (tensor subclasses),
custom and opaque objects and legacy-format weights; it evaluates the shape expressions
with ``sympy.sympify`` (Python's eval); ``.module()`` compiles the file's guard code with
``exec`` and writes the file's names into generated Python source; and it loads
AOTInductor shared libraries. A crafted file can use any of these to run code.

So the kit first reads the archive through the same reader torch uses and refuses
anything beyond plain tensors, sample inputs that load with ``weights_only=True``,
arithmetic on sizes and plain names; a file that passes goes to torch's loader without
the legacy fallback (which reads pickles again). ``allow_pickle`` skips the check: the
user trusts the file.
"""

from __future__ import annotations

import ast
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

from kit.core.errors import ModelFileError, UnsafeFileError, first_line

# Strings torch reads as data only (tracebacks, module paths, pytree specs serialized as JSON).
_FREE_TEXT_KEYS = frozenset({"stack_trace", "nn_module_stack", "torch_fn", "source_fn_stack", "custom",
                             "from_node", "in_spec", "out_spec", "torch_version"})
# Every other string is a name (node, parameter, module path, operator): torch puts names into
# generated Python source, so they may hold no quote, bracket, space or operator.
_NAME = re.compile(r"[A-Za-z0-9_.\-]*")
# String arguments (an op's rounding mode, a constant string input) end up inside quotes.
_STRING_LITERAL = re.compile(r"[^'\"\\\r\n]*")
# Shape symbols: s0 (sizes), u0 (unbacked ints), zf0/zuf0 (floats), ps0 (precomputed).
_SYMBOL = re.compile(r"(s|u|zf|zuf|ps)\d+")
# The constructors a shape expression may call: sympy's arithmetic, relations and logic, and
# torch's own sympy functions (torch/utils/_sympy/functions.py, as the deserializer lists them).
_SYMPY_CALLS = frozenset({
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Mod", "Max", "Min", "Abs", "floor",
    "ceiling", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "Equality", "Unequality", "StrictLessThan", "LessThan",
    "StrictGreaterThan", "GreaterThan", "And", "Or", "Not", "Piecewise", "ExprCondPair", "Tuple",
    "IntInfinity", "NegativeIntInfinity", "Infinity", "NegativeInfinity", "BooleanTrue", "BooleanFalse",
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv",
    "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv",
    "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat",
    "Identity"})
_SYMPY_NAMES = frozenset({"oo", "zoo", "nan", "true", "false", "int_oo"})
# Guards compare input sizes: L['x'].size()[0] == ((-1) + L['y'].size()[0]).
_GUARD_METHODS = frozenset({"size", "stride", "storage_offset", "dim", "numel"})
_GUARD_CALLS = frozenset({"max", "min", "abs", "int", "float", "round"})
_MATH_FUNCTIONS = frozenset({"floor", "ceil", "trunc", "sqrt", "isnan", "inf"})
_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.USub, ast.UAdd, ast.Not,
              ast.And, ast.Or, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)

_UNSAFE_HINT = ("Save it again with torch.export.save from a model of plain tensors, or, if you trust the file, "
                "pass --allow-pickle (it lets the file run code).")


def load_exported_program(path: Path, allow_pickle: bool = False):
    """The ExportedProgram in ``path``; UnsafeFileError when loading it could run code from the file."""
    import torch

    from kit.core.quiet import silenced

    with open(path, "rb") as handle:  # one open file for the check and the load: a swapped path changes nothing
        if not zipfile.is_zipfile(handle):
            raise ModelFileError(f"{path} is not a torch.export program (not a zip archive).",
                                 hint="Write .pt2 files with torch.export.save(torch.export.export(model, args), path).")
        handle.seek(0)
        if allow_pickle:
            with silenced("torch.export"):  # its loader logs a traceback before trying the legacy format
                return _not_a_program(path, lambda: torch.export.load(handle))
        _not_a_program(path, lambda: _check_archive(path, handle))
        handle.seek(0)
        from torch.export.pt2_archive._package import load_pt2

        with silenced("torch.export"):
            contents = _not_a_program(path, lambda: load_pt2(handle))
    return contents.exported_programs["model"]


def _not_a_program(path: Path, load):
    try:
        return load()
    except (UnsafeFileError, ModelFileError):
        raise
    except Exception as exc:
        raise ModelFileError(
            f"{path} is not a torch.export program ({type(exc).__name__}: {first_line(exc, 120)}).",
            hint="Write .pt2 files with torch.export.save(torch.export.export(model, args), path).") from exc


def _unsafe(path: Path, what: str) -> UnsafeFileError:
    return UnsafeFileError(f"{path} holds {what}; loading it could run code from the file.", hint=_UNSAFE_HINT)


def _check_archive(path: Path, handle) -> None:
    from torch.export.pt2_archive import PT2ArchiveReader
    from torch.export.pt2_archive import constants as pt2

    reader = PT2ArchiveReader(handle)
    names = set(reader.get_file_names())
    if pt2.ARCHIVE_VERSION_PATH not in names or reader.read_string(pt2.ARCHIVE_VERSION_PATH) != \
            pt2.ARCHIVE_VERSION_VALUE:
        raise ModelFileError(f"{path} is a .pt2 archive of another format or torch version; expected archive "
                             f"version {pt2.ARCHIVE_VERSION_VALUE}.",
                             hint="Save it again with torch.export.save from this torch version.")
    if any(name.startswith(pt2.AOTINDUCTOR_DIR) for name in names):
        raise _unsafe(path, "an AOTInductor-compiled library (native code)")
    models = [name[len(pt2.MODELS_DIR):-len(".json")] for name in names
              if name.startswith(pt2.MODELS_DIR) and name.endswith(".json")]
    if "model" not in models:
        raise ModelFileError(f"{path} holds no exported program named 'model'.",
                             hint="Write .pt2 files with torch.export.save.")
    for model in models:
        if {f"{pt2.WEIGHTS_DIR}{model}.pt", f"{pt2.CONSTANTS_DIR}{model}.pt"} & names:
            raise _unsafe(path, "weights in the legacy pickled format")
        _check_strings(path, json.loads(reader.read_string(pt2.MODELS_FILENAME_FORMAT.format(model))))
        for config_name, prefix in ((pt2.WEIGHTS_CONFIG_FILENAME_FORMAT, ""),
                                    (pt2.CONSTANTS_CONFIG_FILENAME_FORMAT, pt2.TENSOR_CONSTANT_FILENAME_PREFIX)):
            config = json.loads(reader.read_string(config_name.format(model)))
            _check_strings(path, config)
            for payload in config.get("config", {}).values():
                if payload.get("use_pickle") or not str(payload.get("path_name", "")).startswith(prefix):
                    raise _unsafe(path, "weights or constants stored as pickled Python objects")
        _check_sample_inputs(path, reader.read_bytes(pt2.SAMPLE_INPUTS_FILENAME_FORMAT.format(model)))


def _check_sample_inputs(path: Path, data: bytes) -> None:
    """torch tries weights_only=True first and falls back to a full unpickle: only the first may work."""
    import torch

    if not data:
        return
    try:
        torch.load(io.BytesIO(data), weights_only=True)
    except Exception:  # the unpickler's message says little more; a chained cause would hide this one
        raise _unsafe(path, "sample inputs that are pickled Python objects beyond tensors") from None


def _check_strings(path: Path, value: Any, key: str | None = None) -> None:
    """Walk a JSON document of the archive; every string must be what its key says it is."""
    if isinstance(value, dict):
        for name, item in value.items():
            if key != "range_constraints" and not _NAME.fullmatch(name):  # those keys are only looked up
                raise _unsafe(path, f"the name {_shown(name)}, which is not a plain identifier")
            _check_strings(path, item, name)
    elif isinstance(value, list):
        for item in value:
            _check_strings(path, item, key)
    elif isinstance(value, str):
        if key == "expr_str":
            _check_expression(path, value, _shape_expression_node, "a shape expression")
        elif key == "guards_code":
            _check_expression(path, value, _guard_node, "guard code")
        elif key in ("as_string", "as_strings"):
            if not _STRING_LITERAL.fullmatch(value):
                raise _unsafe(path, f"the string argument {_shown(value)} with quotes or backslashes")
        elif key not in _FREE_TEXT_KEYS and not _NAME.fullmatch(value):
            raise _unsafe(path, f"the name {_shown(value)}, which is not a plain identifier")


def _check_expression(path: Path, text: str, allowed, what: str) -> None:
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        tree = None
    if tree is None or not all(allowed(node) for node in ast.walk(tree.body)):
        raise _unsafe(path, f"{what} that is not plain arithmetic on sizes ({_shown(text)})")


def _shape_expression_node(node: ast.AST) -> bool:
    """Sympy constructors, numbers and shape symbols, joined by arithmetic (what srepr writes)."""
    if isinstance(node, ast.Call):
        return isinstance(node.func, ast.Name) and node.func.id in _SYMPY_CALLS
    if isinstance(node, ast.Name):
        return node.id in _SYMPY_CALLS or node.id in _SYMPY_NAMES or bool(_SYMBOL.fullmatch(node.id))
    return _plain_node(node)


def _guard_node(node: ast.AST) -> bool:
    """Comparisons of L['input'].size()[i] (and stride, ...) with numbers and math functions."""
    if isinstance(node, ast.Call):
        func = node.func
        return ((isinstance(func, ast.Name) and func.id in _GUARD_CALLS)
                or (isinstance(func, ast.Attribute) and func.attr in _GUARD_METHODS | _MATH_FUNCTIONS))
    if isinstance(node, ast.Attribute):
        if isinstance(node.value, ast.Name) and node.value.id == "math":
            return node.attr in _MATH_FUNCTIONS
        return node.attr in _GUARD_METHODS and not isinstance(node.value, ast.Name)
    if isinstance(node, ast.Name):
        return node.id in ("L", "math") or node.id in _GUARD_CALLS
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and (
            isinstance(node.slice.value, int) or
            (isinstance(node.slice.value, str) and node.slice.value.isidentifier()))
    return _plain_node(node)


def _plain_node(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, float, bool, type(None))) or (
            isinstance(node.value, str) and bool(_NAME.fullmatch(node.value)))
    return isinstance(node, (ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.keyword, ast.Load,
                             *_OPERATORS))


def _shown(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")

