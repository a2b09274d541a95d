"""TensorRT engines for a bundle, built on the device from the bundle's ONNX and recipe.

An engine loads only where it was built (the TensorRT version and the GPU), so a bundle
carries the ONNX and its recipe (the precision), and the device builds the engine with
``kit doctor BUNDLE --build``. Engines go beside the bundle, in ``NAME.kitbundle.engines/``
(``MODEL.engine`` per ONNX, with the build's manifest and log): the bundle stays as the
workstation made it, so its manifest still verifies, and an archive is checked as it is.

An engine is fresh when its manifest says it was built from the bundled ONNX (the same
SHA-256), in the recipe's precision, with the installed TensorRT, for this GPU; otherwise
it is stale, and run passes it over until it is rebuilt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kit.core import provenance
from kit.core.errors import KitError
from kit.deploy.bundle import ARCHIVE_SUFFIX, Bundle, BundledModel

FOLDER_SUFFIX = ".engines"


@dataclass(frozen=True)
class Engine:
    model: BundledModel  # the bundled ONNX it is built from
    path: Path
    state: str  # fresh, missing or stale
    detail: str  # what it was built with and for (fresh), or why it is stale

    @property
    def precision(self) -> str:
        return self.model.tensorrt["precision"]


def folder_for(bundle: Bundle) -> Path:
    """``NAME.kitbundle.engines`` beside the bundle folder or archive the user named."""
    source = (bundle.source or bundle.root).resolve()
    name = source.name[:-len(".tar.gz")] if source.name.endswith(ARCHIVE_SUFFIX) else source.name
    return source.parent / f"{name}{FOLDER_SUFFIX}"


def engines(bundle: Bundle, trt, gpu: dict | None, wanted: str | None = None) -> list[Engine]:
    """Each TensorRT recipe of the bundle with its engine's state against ``trt`` (the installed
    tensorrt module), ``gpu`` (cuda.gpu_description(), None without one) and, for a build ahead
    of time, the ``wanted`` compute capability (SM86)."""
    folder = folder_for(bundle)
    hashes = {entry["path"]: entry["sha256"] for entry in bundle.manifest["files"]}
    return [_state(model, folder / f"{Path(model.name).stem}.engine", hashes[f"models/{model.name}"], trt, gpu,
                   wanted) for model in bundle.models if model.tensorrt]


def _state(model: BundledModel, path: Path, onnx_sha256: str, trt, gpu: dict | None, wanted: str | None) -> Engine:
    from kit.runtimes.tensorrt.manifest import stale_reasons

    if not path.is_file():
        return Engine(model, path, "missing", "not built yet")
    try:
        manifest = provenance.read(path)
    except KitError as error:
        return Engine(model, path, "stale", f"its manifest is unreadable ({error.message})")
    if manifest.get("format") != "tensorrt-engine":
        return Engine(model, path, "stale", f"it has no kit manifest ({path.name}.kit.json)")
    reasons = stale_reasons(manifest, trt, gpu)
    if manifest.get("source_onnx_sha256") != onnx_sha256:
        reasons.append(f"built from another ONNX than the bundle's {model.name}")
    if manifest.get("precision") != model.tensorrt["precision"]:
        reasons.append(f"built as {manifest.get('precision')}, the recipe says {model.tensorrt['precision']}")
    built_for = (manifest.get("target") or {}).get("compute_capability")
    if wanted and built_for != wanted:
        reasons.append(f"built for {built_for}, --compute-capability asks for {wanted}")
    if reasons:
        return Engine(model, path, "stale", "; ".join(reasons))
    target = manifest.get("target") or {}
    made = (f"{manifest['tensorrt_module']} {manifest['tensorrt_version']}, {manifest['precision']}, for "
            f"{target.get('gpu') or 'any GPU of'} {target.get('compute_capability')}"
            + (" (ahead of time)" if target.get("ahead_of_time") else ""))
    return Engine(model, path, "fresh", made)


def build(bundle: Bundle, engine: Engine, *, compute_capability: str | None = None,
          progress: Callable[[str], None] | None = None):
    """Build ``engine`` from the bundle's ONNX and recipe (replacing a stale one); the
    build's EngineResult. ``compute_capability`` builds ahead of time (TensorRT-RTX)."""
    from kit.runtimes.tensorrt.build import build_engine

    folder = engine.path.parent
    made_folder = not folder.exists()
    folder.mkdir(exist_ok=True)
    try:
        return build_engine(bundle.model_path(engine.model), engine.path, precision=engine.precision,
                            compute_capability=compute_capability, progress=progress)
    except BaseException:
        if made_folder and not any(folder.iterdir()):  # a failed first build leaves nothing behind
            folder.rmdir()
        raise
