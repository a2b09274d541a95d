"""Which backends exist: a table of lazy "module:Class" strings plus the ``kit.runtimes``
entry-point group, so a third party adds a backend without touching the kit.

Nothing here imports a backend until it is asked for by name, and backend modules import
their runtime library only in ``load()``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from typing import Any

from kit.runtimes.base import Runtime

from kit.core.errors import InputError, KitError, ModelFileError, RuntimeUnavailableError

ENTRY_POINT_GROUP = "kit.runtimes"

# Which backend opens a file by default is each class's declared ``priority`` (see candidates()),
# not this table's order.
BUILTIN: dict[str, str] = {
    "onnxruntime": "kit.runtimes.ort:OnnxRuntime",
    "torch": "kit.runtimes.pytorch:TorchRuntime",
    "edgetpu": "kit.runtimes.edgetpu.runtime:EdgeTPURuntime",  # before tflite: it alone opens *_edgetpu.tflite
    "tflite": "kit.runtimes.tflite:TFLiteRuntime",
    "tensorrt": "kit.runtimes.tensorrt.runtime:TensorRTRuntime",
    "openvino": "kit.runtimes.openvino:OpenVinoRuntime",
}


def known() -> dict[str, str]:
    """Backend name -> "module:Class", built-ins first, then plugins (which cannot shadow them)."""
    table = dict(BUILTIN)
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        table.setdefault(entry.name, entry.value)
    return table


def get(name: str) -> type[Runtime]:
    """The backend class registered under ``name`` (imports its module, not its library)."""
    table = known()
    if name not in table:
        raise InputError(f"expected a runtime among {', '.join(table)}; found {name!r}.",
                         hint="Run `kit runtimes` to see every backend and whether it is usable here.")
    module_name, _, class_name = table[name].partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except Exception as exc:
        raise RuntimeUnavailableError(
            f"runtime '{name}' is registered as {table[name]} but could not be imported "
            f"({type(exc).__name__}: {exc}).",
            hint="Reinstall the package that provides it.") from exc
    if not (isinstance(cls, type) and issubclass(cls, Runtime)):
        raise KitError(f"runtime '{name}' ({table[name]}) is a {type(cls).__name__}, not a kit Runtime subclass.",
                       hint="A plugin's entry point must name a subclass of kit.runtimes.base.Runtime.")
    return cls


def candidates(path: str | os.PathLike, named: bool = False) -> list[str]:
    """Names of the backends that open this kind of file, in preference order: highest declared
    ``priority`` first, then by name (never by the order in which backends were registered);
    ``named``: also those that open it only when the user names them."""
    found = []
    for name in known():
        try:
            cls = get(name)
            if cls.can_open(str(path), named):
                found.append((-cls.priority, name))
        except KitError:
            continue  # a broken plugin must not hide the working backends
    return [name for _, name in sorted(found)]


def parse(runtime: str) -> tuple[str, str, dict[str, Any]]:
    """``NAME`` or ``NAME:TARGET`` (``onnxruntime:CUDA``, ``openvino:GPU``): the backend's name,
    the target, and the options the target stands for (checked)."""
    name, colon, target = runtime.partition(":")
    cls = get(name)  # an unknown name fails here, with the list of known ones
    if colon and not target:
        raise InputError(f"expected a target after '{name}:', found none.",
                         hint=f"E.g. --runtime {name}:CPU, or --runtime {name} for its default.")
    return name, target, (cls.target_options(target) if target else {})


def create(path: str | os.PathLike, runtime: str | None = None, **options: Any) -> Runtime:
    """An unloaded Runtime for ``path``: the named backend (``NAME`` or ``NAME:TARGET``), or the
    first usable one for the file."""
    if runtime is not None:
        name, _, target_options = parse(runtime)
        return get(name)(path, **{**options, **target_options})
    names = candidates(path)
    if not names:
        raise ModelFileError(
            f"no runtime opens {path}; expected one of the suffixes {', '.join(_all_suffixes())}.",
            hint="Check the file, or name a runtime with runtime=... / --runtime.")
    for name in names:
        if get(name).availability().usable:
            return get(name)(path, **options)
    cls = get(names[0])
    raise RuntimeUnavailableError(
        f"{path} needs one of the runtimes {', '.join(names)}, and none is usable here.",
        hint=f"Install one, e.g.: {cls.install_command()}")


def load(path: str | os.PathLike, runtime: str | None = None, **options: Any) -> Runtime:
    """A loaded Runtime for ``path``; see :func:`create`."""
    return create(path, runtime, **options).load()


def _all_suffixes() -> list[str]:
    suffixes = []
    for name in known():
        try:
            suffixes += [s for s in get(name).suffixes if s not in suffixes]
        except KitError:
            continue
    return suffixes
