"""Read the PyTorch model a user has: TorchScript (.pt), torch.export (.pt2) or a factory.

Shared by the exporters and by the ``torch`` reference runtime, so both see the same
module, the same input names and the same output names. torch is imported only inside
these functions.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.core.errors import ExportError, InputError, ModelFileError, UnsafeFileError, reraise_interrupt
from kit.core.fileio import sha256_of
from kit.core.specs import InputShape, TensorSpec

TORCH_SUFFIXES = (".pt", ".pth", ".pt2")


@dataclass
class TorchSource:
    """A loaded PyTorch model and where it came from."""

    module: Any  # torch.nn.Module, or a torch.jit.ScriptModule
    kind: str  # "torchscript" | "exported-program" | "factory" | "module"
    reference: str  # the path or "file.py:function" the user gave
    sha256: str | None = None  # of the file (the .py file for a factory)
    weights: str | None = None  # the --weights file as given
    weights_sha256: str | None = None
    input_names: list[str] = field(default_factory=list)
    program: Any = None  # the ExportedProgram for .pt2 sources
    program_inputs: list[TensorSpec] | None = None  # shapes recorded in a .pt2

    def provenance(self) -> dict:
        data = {"source": self.reference, "source_kind": self.kind, "source_sha256": self.sha256}
        if self.weights_sha256:
            data.update(weights=self.weights, weights_sha256=self.weights_sha256)
        return data


def is_factory_reference(reference: str) -> bool:
    """``file.py:fn`` or ``package.module:fn`` (but not a Windows drive letter)."""
    left, sep, right = str(reference).rpartition(":")
    return bool(sep) and right.isidentifier() and len(left) > 1


def load_torch_source(reference: str, *, weights: str | None = None, allow_pickle: bool = False) -> TorchSource:
    """Load a model for export or as the full-precision reference; always in eval mode."""
    import torch

    reference = str(reference)
    if is_factory_reference(reference):
        source = _load_factory(reference)
    else:
        path = Path(reference)
        if not path.is_file():
            raise ModelFileError(f"model source {reference} does not exist.",
                                 hint="Give a .pt/.pt2 file or a factory like models.py:make_model.")
        if path.suffix.lower() == ".pt2":
            source = _load_exported_program(path, allow_pickle)
        elif path.suffix.lower() in (".pt", ".pth"):
            source = _load_pt(path, allow_pickle)
        else:
            raise ModelFileError(
                f"expected a PyTorch source (.pt TorchScript, .pt2 torch.export, or file.py:factory), "
                f"found {reference}.",
                hint="Save the model with torch.jit.save or torch.export.save, or name a factory function.")
    if weights:
        if source.kind not in ("factory",):
            raise InputError(f"--weights applies to a factory source, but {reference} is {source.kind}.",
                             hint="A TorchScript or .pt2 file already holds its weights; drop --weights.")
        _load_weights(source, weights, torch)
    if source.kind != "exported-program":  # a program is already in inference form and refuses eval()
        source.module.eval()
    if not source.input_names:
        source.input_names = forward_argument_names(source.module)
    return source


def source_from_module(module) -> TorchSource:
    """Wrap a torch.nn.Module already in memory (a Python user's model) as a source."""
    return TorchSource(module.eval(), "module", f"<in-memory {type(module).__name__}>",
                       input_names=forward_argument_names(module))


def _load_factory(reference: str) -> TorchSource:
    import torch

    target, _, function = reference.rpartition(":")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ModelFileError(f"factory file {target} does not exist.", hint="Check the path before ':'.")
        folder = path.resolve().parent
        with _factory_folder(folder):  # its sibling imports work while it is imported and called
            module = _call_user_code(reference, "importing", lambda: _import_file(path))
            model = _call_user_code(reference, "calling", _factory_in(module, target, function))
        file_hash = sha256_of(path)
    else:
        module = _call_user_code(reference, "importing", lambda: importlib.import_module(target))
        model = _call_user_code(reference, "calling", _factory_in(module, target, function))
        file_hash = sha256_of(module.__file__) if getattr(module, "__file__", None) else None
    if not isinstance(model, torch.nn.Module):
        raise ExportError(f"the factory {reference} returned {type(model).__name__}; expected a torch.nn.Module.",
                          hint="Return the model instance from the factory.")
    return TorchSource(model, "factory", reference, file_hash)


def _import_file(path: Path):
    """Import a factory file under a name unique to its path: two folders' models.py stay two modules."""
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(f"_kit_factory_{path.stem}_{digest}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    return module


def _factory_in(module, target: str, function: str):
    factory = getattr(module, function, None)
    if not callable(factory):
        raise ExportError(f"expected a function {function!r} in {target}, found "
                          f"{'nothing' if factory is None else type(factory).__name__}.",
                          hint="Name a function that takes no arguments and returns a torch.nn.Module.")
    return factory


# Modules that factory files imported from their own folders (layers.py beside models.py), by name.
_SIBLINGS: dict[str, Path] = {}


@contextlib.contextmanager
def _factory_folder(folder: Path):
    """The factory's folder first on sys.path, as ``python models.py`` would have it, while its code runs.

    Sibling modules another factory folder imported under the same name (both have a layers.py)
    leave sys.modules first, so each factory gets its own; the modules already built keep theirs.
    """
    for name, origin in list(_SIBLINGS.items()):
        if origin != folder:
            sys.modules.pop(name, None)
            del _SIBLINGS[name]
    before = set(sys.modules)
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(folder))
        for name in set(sys.modules) - before:
            if _imported_from(folder, name):
                _SIBLINGS[name] = folder


def _imported_from(folder: Path, name: str) -> bool:
    """Whether module ``name`` is folder/NAME.py or lives in the package folder/NAME/ (not, say, a
    virtualenv inside the folder)."""
    file = getattr(sys.modules.get(name), "__file__", None)
    if not file or name.startswith("_kit_factory_"):
        return False
    top = name.partition(".")[0]
    resolved = Path(file).resolve()
    return resolved == folder / f"{top}.py" or resolved.is_relative_to(folder / top)


def _call_user_code(reference: str, doing: str, fn):
    try:
        return fn()
    except Exception as exc:
        reraise_interrupt(exc)
        raise ExportError(f"{doing} the factory {reference} raised {type(exc).__name__}: {exc}",
                          hint="Fix the factory: it must build the model with no arguments.") from exc


def _load_pt(path: Path, allow_pickle: bool) -> TorchSource:
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu")
        names = [a.name for a in module.forward.schema.arguments[1:]]
        return TorchSource(module, "torchscript", str(path), sha256_of(path), input_names=names)
    except RuntimeError:
        pass  # not TorchScript: a torch.save() file, a state_dict, or no model at all
    try:
        content = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        if "Weights only load failed" not in str(exc):
            raise ModelFileError(f"{path} is not a PyTorch model file ({type(exc).__name__}).",
                                 hint="Expected TorchScript (.pt), torch.export (.pt2) or a factory.") from exc
        if not allow_pickle:
            raise UnsafeFileError(
                f"{path} is a pickled Python object (a whole model saved with torch.save); "
                "loading it runs arbitrary code from the file.",
                hint="Save it with torch.jit.save or torch.export.save, or give a factory with --weights; "
                     "if you trust the file, pass --allow-pickle.") from exc
        content = torch.load(str(path), map_location="cpu", weights_only=False)
    if isinstance(content, torch.nn.Module):
        return TorchSource(content, "module", str(path), sha256_of(path))
    if isinstance(content, Mapping):
        raise ExportError(f"{path} holds weights only (a state_dict), not a model.",
                          hint=f"Give the architecture as a factory and these weights: "
                               f"kit export models.py:make_model --weights {path}")
    raise ModelFileError(f"{path} holds a {type(content).__name__}, not a model.",
                         hint="Expected TorchScript (.pt), torch.export (.pt2) or a factory.")


def _load_exported_program(path: Path, allow_pickle: bool) -> TorchSource:
    from kit.data.pt2 import load_exported_program

    program = load_exported_program(path, allow_pickle)
    names = list(program.graph_signature.user_inputs)
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    specs = []
    for name in names:
        value = placeholders[name].meta["val"]
        shape = tuple(d if isinstance(d, int) else ("batch" if i == 0 else f"dim{i}")
                      for i, d in enumerate(value.shape))
        specs.append(TensorSpec(name, shape, str(value.dtype).removeprefix("torch.")))
    return TorchSource(program.module(), "exported-program", str(path), sha256_of(path), input_names=names,
                       program=program, program_inputs=specs)


def _load_weights(source: TorchSource, weights: str, torch) -> None:
    path = Path(weights)
    if not path.is_file():
        raise ModelFileError(f"weights file {weights} does not exist.", hint="Check the --weights path.")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        if "Weights only load failed" in str(exc):
            raise UnsafeFileError(f"weights file {weights} holds Python objects beyond tensors; "
                                  "the kit loads weights with weights_only=True.",
                                  hint="Save model.state_dict() instead of the whole model.") from exc
        raise ModelFileError(f"weights file {weights} is not a PyTorch state_dict ({type(exc).__name__}).",
                             hint="Save it with torch.save(model.state_dict(), path).") from exc
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise ModelFileError(f"weights file {weights} holds a {type(state).__name__}, not a state_dict.",
                             hint="Save it with torch.save(model.state_dict(), path).")
    try:
        result = source.module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # strict=False still refuses tensors of the wrong shape
        mismatches = [line.strip().rstrip(".") for line in str(exc).splitlines() if "size mismatch" in line]
        raise ExportError(f"weights {weights} do not fit {source.reference}: {_few(mismatches)}.",
                          hint="Check that the factory builds the architecture these weights were trained with.") from exc
    if result.missing_keys or result.unexpected_keys:
        raise ExportError(
            f"weights {weights} do not fit {source.reference}: "
            f"missing {_few(result.missing_keys)}; unexpected {_few(result.unexpected_keys)}.",
            hint="Check that the factory builds the architecture these weights were trained with.")
    source.weights, source.weights_sha256 = weights, sha256_of(path)


def _few(keys: list[str]) -> str:
    return "none" if not keys else ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")


def forward_argument_names(module) -> list[str]:
    try:
        parameters = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in parameters
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]


def input_specs(
    source: TorchSource,
    shapes: Mapping[str | None, InputShape] | None,
    *,
    static: bool = False,
    dynamic_axes: Mapping[str | None, Mapping[int, str]] | None = None,
) -> tuple[list[TensorSpec], dict[str, tuple[int, ...]]]:
    """The model's input specs (named dynamic axes) and the example shape of each input.

    The batch axis is dynamic ("batch") unless ``static``; ``dynamic_axes`` names more.
    A .pt2 program already knows its shapes, so ``shapes`` may be empty for it.
    """
    names = source.input_names
    shapes = dict(shapes or {})
    if not shapes:
        if source.program_inputs is not None:
            specs = source.program_inputs
            return specs, {s.name: s.concrete_shape(batch=2) for s in specs}
        raise InputError(
            f"expected --input-shape for the input{'s' if len(names) > 1 else ''} "
            f"{', '.join(map(repr, names)) or '(unnamed)'} of {source.reference}; found none.",
            hint="Give e.g. --input-shape 1x3x224x224, or NAME=1x3x224x224 per input.")
    if None in shapes:
        if len(names) > 1:
            raise InputError(f"{source.reference} takes {len(names)} inputs ({', '.join(names)}); "
                             "found one unnamed --input-shape.",
                             hint="Name each: " + " ".join(f"--input-shape {n}=..." for n in names))
        shapes = {(names[0] if names else "input"): shapes[None]}
        names = names or ["input"]
    unknown, missing = set(shapes) - set(names), [n for n in names if n not in shapes]
    if unknown or missing:
        raise InputError(f"{source.reference} takes the inputs {', '.join(names)}; --input-shape gave "
                         f"{', '.join(map(str, shapes))}.",
                         hint="Give exactly one --input-shape NAME=SHAPE per input.")
    axes = dict(dynamic_axes or {})
    if None in axes:
        axes[names[0]] = {**axes.pop(None), **axes.get(names[0], {})}
    unknown_axes = [name for name in axes if name not in names]
    if unknown_axes:
        raise InputError(f"--dynamic names the input {', '.join(unknown_axes)}, but {source.reference} takes "
                         f"{', '.join(names)}.", hint="Write --dynamic INPUT:AXIS=NAME with one of those inputs.")
    if static and any(0 in axes.get(name, {}) for name in names):
        raise InputError("--static fixes the batch axis, but --dynamic makes axis 0 dynamic.",
                         hint="Drop one of them.")
    specs, examples = [], {}
    for name in names:
        given = shapes[name]
        dims: list[int | str] = list(given.shape)
        if not static and dims:
            dims[0] = "batch"
        for axis, dim_name in axes.get(name, {}).items():
            if axis >= len(dims):
                raise InputError(f"--dynamic {name}:{axis} names axis {axis}, but {name} has rank {len(dims)}.",
                                 hint="Axes count from 0.")
            dims[axis] = dim_name
        specs.append(TensorSpec(name, tuple(dims), given.dtype))
        examples[name] = given.shape
    return specs, examples


def flatten_outputs(result: Any) -> dict[str, Any]:
    """Name a model's outputs the way the exporters name them: ``output``, ``output0..N``, or dict keys."""
    import torch

    if isinstance(result, torch.Tensor):
        items = [("output", result)]
    elif isinstance(result, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in result):
        items = [(f"output{i}", t) for i, t in enumerate(result)]
    elif isinstance(result, Mapping) and all(isinstance(t, torch.Tensor) for t in result.values()):
        items = [(str(k), t) for k, t in result.items()]
    else:
        raise ExportError(f"expected the model to return a tensor, a tuple/list of tensors or a dict of tensors; "
                          f"found {type(result).__name__}.",
                          hint="Wrap the model so forward() returns tensors only.")
    return dict(items)
