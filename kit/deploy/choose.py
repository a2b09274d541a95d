"""Which model of a bundle this device runs: the Edge TPU's when one is found, else a TensorRT
engine built on this device (kit doctor --build) when the GPU is usable, else the best CPU
variant; within each, int8 first where the int8 model stayed faithful to the float one (its
recorded accuracy budget passed, or its outputs kept SQNR >= 20 dB and top-1 agreement >= 95%
against float at quantization or export), then float (fp16 before fp32 on the GPU, after it
on a CPU, which only casts), runtimes in the registry's priority order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit.core import provenance
from kit.core.errors import InputError, KitError
from kit.deploy.bundle import Bundle, BundledModel

FAITHFUL_SQNR_DB = 20.0  # as kit quantize warns below these
FAITHFUL_TOP1 = 0.95


@dataclass(frozen=True)
class Choice:
    model: BundledModel
    path: Path
    runtime: str
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.name, "file": self.path.name, "runtime": self.runtime, "why": self.why}


def resolve(path: str | Path, name: str | None = None, runtime: str | None = None) -> Choice | None:
    """For a bundle folder, the model to run here (verified first); None for any other path.
    The one place run, kit.load and bench turn a bundle into a model."""
    from kit.deploy.bundle import is_bundle, open_folder

    if not is_bundle(path):
        return None
    return choose(open_folder(path), name, runtime)


def runnable(bundle: Bundle, runtime: str | None = None, here: set[str] | None = None) -> list[Choice]:
    """Every model this device can run, each on its best usable runtime (or ``runtime``), and
    each engine built here, best first; ``why`` is filled in by choose."""
    here = usable_here() if here is None else here
    backend = runtime.partition(":")[0] if runtime else None  # openvino:GPU runs on openvino, its target kept
    found = []
    for model in bundle.models:
        path = bundle.model_path(model)
        usable = [name for name in usable_runtimes(path, here, named=runtime is not None) if backend in (None, name)]
        if usable:
            found.append(Choice(model, path, runtime or usable[0], ""))
    if "tensorrt" in here and backend in (None, "tensorrt"):
        found += [Choice(engine.model, engine.path, "tensorrt", "") for engine in built_engines(bundle)]
    return sorted(found, key=lambda choice: _rank(choice, bundle))


def built_engines(bundle: Bundle):
    """The bundle's engines built on this device that load here (kit doctor --build made them)."""
    from kit.deploy.engines import engines
    from kit.runtimes.tensorrt import cuda, modules

    return [engine for engine in engines(bundle, modules.find_module(), cuda.gpu_description())
            if engine.state == "fresh"]


def choose(bundle: Bundle, name: str | None = None, runtime: str | None = None) -> Choice:
    """The model to run here (``name`` overrides; ``runtime`` restricts), with the reason in words."""
    here = usable_here()
    options = runnable(bundle, runtime, here)
    names = [m.name for m in bundle.models]
    if name is not None:  # a model's file, or an engine built here (NAME.engine)
        engines = [c.path.name for c in options if c.runtime == "tensorrt"]
        if name not in names + engines:
            raise InputError(f"the bundle has no model {name!r}; it has {', '.join(names + engines)}.",
                             hint="Give --model (model= in Python) one of those names.")
        picked = next((c for c in options if c.path.name == name), None)
        if picked is None:
            model = next(m for m in bundle.models if m.name == name)
            on = f" on {runtime}" if runtime else ""
            raise InputError(f"{name} cannot run{on} on this device: no usable runtime{on} opens it (it suits "
                             f"{', '.join(model.devices)}).", hint="kit doctor shows what this device has.")
        engine = f" (built here from {picked.model.name})" if picked.runtime == "tensorrt" else ""
        return Choice(picked.model, picked.path, picked.runtime, f"{name} on {picked.runtime}{engine}, as --model asked")
    if not options:
        on = f" on {runtime}" if runtime else ""
        raise InputError(f"no model in the bundle runs{on} on this device ({', '.join(names)}).",
                         hint="kit doctor shows which runtimes this device has and what each model needs.")
    best = options[0]
    why = _why(best, options)
    if "tensorrt" in here and best.runtime != "tensorrt" and runtime in (None, "tensorrt") and \
            any(m.tensorrt for m in bundle.models):
        why += "; the GPU is usable, but no TensorRT engine is built for this bundle (kit doctor BUNDLE --build)"
    return Choice(best.model, best.path, best.runtime, why)


def _rank(choice: Choice, bundle: Bundle) -> tuple:
    from kit.runtimes.registry import get

    model = choice.model
    device = {"edgetpu": 0, "tensorrt": 1}.get(choice.runtime, 2)  # the accelerators, found and opened
    if model.precision == "int8":
        precision = 0 if _faithful(bundle.model_path(model)) else 3  # int8 that lost fidelity: last
    else:
        floats = ("fp16", "fp32") if choice.runtime == "tensorrt" else ("fp32", "fp16")
        precision = 1 + floats.index(model.precision) if model.precision in floats else 2
    return device, precision, -get(choice.runtime.partition(":")[0]).priority, model.name


def _faithful(path: Path) -> bool:
    recorded = provenance.read(path)
    budget = recorded.get("budget")
    if budget:
        return bool(budget.get("passed"))
    diffs = recorded.get("fidelity") or (recorded.get("validation") or {}).get("outputs") or []
    if not diffs:
        return False
    return all((d.get("sqnr_db") or 0) >= FAITHFUL_SQNR_DB and (d.get("top1") is None or d["top1"] >= FAITHFUL_TOP1)
               for d in diffs)


def _why(best: Choice, options: list[Choice]) -> str:
    model = best.model
    if best.runtime == "edgetpu":
        reason = "the Edge TPU is present"
    elif best.runtime == "tensorrt":
        reason = f"the GPU is present and the {model.precision} engine {best.path.name} was built here"
    elif model.precision == "int8":
        reason = "int8, which kept its float model's outputs (faithful at quantization)"
    else:
        reason = f"{model.precision}" + ("; the bundle's int8 variants are not faithful or cannot run here"
                                         if any(o.model.precision == "int8" for o in options) else "")
    others = ", ".join(o.path.name for o in options[1:])
    return f"{model.name} on {best.runtime}: {reason}" + (f" (also runnable: {others}; --model NAME)" if others
                                                         else "")


def usable_here() -> set[str]:
    """The runtimes that work on this device, its accelerators plugged in. Asked once per
    command: the Edge TPU's answer opens the device."""
    from kit.runtimes.registry import get, known

    def usable(name: str) -> bool:
        try:
            backend = get(name)
            return bool(backend.availability().usable) and backend.device_problem() is None
        except KitError:
            return False

    return {name for name in known() if usable(name)}


def usable_runtimes(path: Path, here: set[str], named: bool = False) -> list[str]:
    """The runtimes of ``here`` that open ``path``, in the registry's order (``named``: with those
    that open it only when named, such as OpenVINO for .onnx)."""
    from kit.runtimes.registry import candidates

    return [name for name in candidates(path, named) if name in here]
