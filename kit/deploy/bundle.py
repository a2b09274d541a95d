"""A bundle: the model variants of one model, their provenance, labels, golden inputs and
outputs from the workstation, pinned requirements per device kind and a manifest of every
file's SHA-256, in one folder (``NAME.kitbundle``) or one ``.tar.gz``, so a device can prove
it runs the models as the workstation did (kit doctor).

Layout::

    NAME.kitbundle/
      manifest.json            what is inside; every other file's SHA-256 and size
      models/                  the variants as given (provenance inside each file)
      golden/MODEL.npz         inputs and this workstation's outputs (kit.data.golden)
      labels.txt               when the task records labels
      requirements/KIND.txt    pinned installs for cpu, coral, jetson
      README.md                the device's steps

The same inputs give the same bytes: no timestamps, sorted listings, golden files with fixed
zip dates, archives with fixed owners and times.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from kit._version import __version__
from kit.core import provenance
from kit.core.errors import InputError, KitError, ModelFileError
from kit.core.fileio import check_output_path, model_files, sha256_of
from kit.core.quiet import silenced

FORMAT = "kit-bundle"
FORMAT_VERSION = 1
SUFFIX = ".kitbundle"
ARCHIVE_SUFFIX = ".kitbundle.tar.gz"
GOLDEN_SAMPLES = 8
MANIFEST_BYTES = 16 << 20  # a manifest lists files; anything larger is not one
MAX_PATH_CHARS = 1024
MAX_MEMBERS = 10_000  # an archive with more members than this is not a bundle
MAX_EXTRACTED_BYTES = 64 << 30  # nor one that unpacks to more than this
TENSORRT_PRECISIONS = ("fp32", "fp16", "int8")  # a recipe's: what kit build --precision takes

# Device kinds: what each runs and the extra that installs it (pyproject's extras of the same name).
DEVICES = {
    "cpu": "any Linux, macOS or Windows machine, x86-64 or ARM64 (Raspberry Pi): ONNX Runtime, LiteRT",
    "coral": "Coral Dev Board or USB Accelerator: the Edge TPU-compiled TFLite, LiteRT for the others "
             "(libedgetpu from Coral's apt repository)",
    "jetson": "NVIDIA Jetson: TensorRT engines built on the device from the ONNX (TensorRT from JetPack), "
              "ONNX Runtime for the others",
}
# The runtime packages each device kind pins, at this workstation's versions.
DEVICE_PACKAGES = {
    "cpu": ["numpy", "onnxruntime", "ai-edge-litert", "opencv-python-headless"],
    "coral": ["numpy", "ai-edge-litert", "opencv-python-headless"],
    "jetson": ["numpy", "cuda-python"],
}
# What a device kind takes from elsewhere than PyPI, said in its requirements file.
DEVICE_NOTES = {
    "coral": ["# libedgetpu: Coral's apt repository (libedgetpu1-std), not pip"],
    "jetson": ["# TensorRT and OpenCV: JetPack's (apt install python3-libnvinfer python3-opencv); PyPI's",
               "# onnxruntime and opencv-python-headless would shadow them. ONNX Runtime with the GPU:",
               "# NVIDIA's Jetson wheels (onnxruntime-gpu), for the JetPack release installed."],
}


@dataclass(frozen=True)
class BundledModel:
    name: str  # the file's name inside models/
    format: str  # onnx, tflite or edgetpu
    precision: str
    devices: list[str]
    golden: str | None  # the golden file's path inside the bundle
    tensorrt: dict[str, Any] | None  # the recipe a Jetson builds its engine with

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BundledModel:
        return cls(data["name"], data["format"], data["precision"], list(data["devices"]), data.get("golden"),
                   data.get("tensorrt"))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "format": self.format, "precision": self.precision, "devices": self.devices,
                "golden": self.golden, "tensorrt": self.tensorrt}


@dataclass
class Bundle:
    root: Path  # where its files are: the folder, or an archive's temporary extraction
    manifest: dict[str, Any]
    source: Path | None = None  # what the user named: the folder or the archive (engines go beside it)

    @property
    def models(self) -> list[BundledModel]:
        return [BundledModel.from_dict(entry) for entry in self.manifest["models"]]

    def model_path(self, model: BundledModel) -> Path:
        return self.root / "models" / model.name


class BundleError(KitError):
    """A bundle that is unsafe to open, does not match its manifest, or whose manifest is not one
    (kit doctor reports it as the device's problem; a path that is no bundle is an InputError)."""


# ----- writing ----------------------------------------------------------------------------------


def make_bundle(models: list[str | os.PathLike], output: str | os.PathLike, *, data: str | None = None,
                samples: int | None = None, archive: bool = False,
                progress: Callable[[str], None] | None = None) -> Bundle | Path:
    """Bundle ``models`` (.onnx and .tflite files) at ``output``; golden outputs on the first
    ``samples`` (default 8) of ``data`` (default random), so a folder of large images keeps the bundle small.
    Returns the Bundle, or the archive's path with ``archive``. Nothing is left at ``output``
    when it fails; an existing bundle there is replaced, anything else refused."""
    say = progress or (lambda message: None)
    samples = GOLDEN_SAMPLES if samples is None else samples
    if samples < 1:
        raise InputError(f"expected at least 1 golden sample, found {samples}.", hint="E.g. --golden-samples 8")
    output, data = Path(output), data or f"random:{samples}"
    sources = _checked_sources(models)
    task = _one_task(sources)  # before the golden runs: variants of different models are refused at once
    _check_bundle_output(output, archive, sources)
    with tempfile.TemporaryDirectory(prefix=".kitbundle.", dir=output.parent) as scratch:
        root = Path(scratch) / "bundle"
        (root / "models").mkdir(parents=True)
        (root / "golden").mkdir()
        entries = []
        for source in sources:
            say(f"adding {source.name}")
            shutil.copyfile(source, root / "models" / source.name)
            entries.append(_describe(source, root, data, samples, say))
        if task and task.get("labels"):
            (root / "labels.txt").write_text("".join(f"{label}\n" for label in task["labels"]), encoding="utf-8")
        kinds = sorted({kind for entry in entries for kind in entry.devices})
        (root / "requirements").mkdir()
        for kind in kinds:
            (root / "requirements" / f"{kind}.txt").write_text(_requirements(kind))
        (root / "README.md").write_text(_device_readme(entries, kinds))
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "kit_version": __version__,
                    "task": task, "models": [entry.to_dict() for entry in entries],
                    "devices": {kind: DEVICES[kind] for kind in kinds},
                    "golden_data": _data_name(data), "files": _listing(root)}
        (root / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        if archive:
            say("writing the archive")
            write_archive({_bundle_name(output): root}, Path(scratch) / "bundle.tar.gz")
            os.replace(Path(scratch) / "bundle.tar.gz", output)
            return output
        _replace_folder(root, output)
    return Bundle(output, manifest)


def _checked_sources(models) -> list[Path]:
    if not models:
        raise InputError("expected at least one model to bundle; found none.", hint="kit bundle a.onnx a.int8.onnx "
                                                                                   "-o a.kitbundle")
    sources, names = [], set()
    for model in models:
        path = Path(model)
        if not path.is_file():
            raise ModelFileError(f"model file {path} does not exist.", hint="Check the path.")
        if _format_of(path) is None:
            engine = path.suffix.lower() in (".engine", ".plan")
            raise InputError(f"expected .onnx or .tflite models, found {path}.",
                             hint="TensorRT engines are built on the device: bundle their ONNX model." if engine else
                             "Bundle the model files kit export, kit quantize or kit adopt wrote.")
        if model_files(path) != [path]:
            raise InputError(f"{path} keeps its weights in external data files; a bundle holds one file per model.",
                             hint="Save it as one file first: onnx.save(onnx.load(path), path2).")
        if path.name in names:
            raise InputError(f"two models are named {path.name}; a bundle keeps one file per name.",
                             hint="Rename one of them.")
        names.add(path.name)
        sources.append(path)
    return sources


def _one_task(sources: list[Path]) -> dict[str, Any] | None:
    """The task the models record: variants of one model record the same one (or none). How a
    detector's outputs look (its head, NMS in the graph or on the host) is the variant's own,
    recorded in its model."""
    tasks = {json.dumps({k: v for k, v in task.items() if k not in ("head", "nms")}, sort_keys=True): source
             for source in sources if (task := provenance.read(source).get("task"))}
    if len(tasks) > 1:
        named = ", ".join(str(source) for source in tasks.values())
        raise InputError(f"the models record different tasks or labels ({named}); a bundle holds variants of one "
                         "model.", hint="Bundle each model on its own.")
    return json.loads(next(iter(tasks))) if tasks else None


def _check_bundle_output(output: Path, archive: bool, sources: list[Path]) -> None:
    suffix = ARCHIVE_SUFFIX if archive else SUFFIX
    if not output.name.endswith(suffix) or output.name == suffix:
        raise InputError(f"expected the output to end in {suffix}, found {output}.",
                         hint=f"Name it model{suffix}" + ("" if archive else " (or add --archive for one .tar.gz)"))
    if not output.parent.is_dir():
        raise InputError(f"the output's folder {output.parent} does not exist.", hint="Create it first.")
    inside = next((parent for parent in output.resolve().parents if is_bundle(parent)), None)
    if inside is not None:
        raise InputError(f"{output} is inside the bundle {inside}; a bundle holds only what kit bundle puts there.",
                         hint="Write the new bundle beside it.")
    if output.is_symlink():
        raise InputError(f"{output} is a link; a bundle is written as a new folder, never through a link.",
                         hint="Choose another output name.")
    if output.exists() and not archive and not _intact(output):
        raise InputError(f"{output} exists and is not an intact kit bundle (files its manifest does not list, or "
                         "no kit manifest); it is left as it is.", hint="Choose another output name.")
    if archive and output.exists():
        check_output_path(output, *sources)


def _intact(folder: Path) -> bool:
    """A kit bundle whose every file its manifest lists: replacing it loses nothing of the user's."""
    try:
        return not file_problems(folder, _read_manifest(folder))
    except KitError:
        return False


def _format_of(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith("_edgetpu.tflite"):
        return "edgetpu"
    return {".onnx": "onnx", ".tflite": "tflite"}.get(path.suffix.lower())


def _describe(source: Path, root: Path, data: str, samples: int, say) -> BundledModel:
    recorded = provenance.read(source)
    kind = _format_of(source)
    precision = recorded.get("precision") or "fp32"
    devices = {"onnx": ["cpu", "jetson"], "tflite": ["coral", "cpu"], "edgetpu": ["coral"]}[kind]
    golden = None
    if kind != "edgetpu":  # an Edge TPU model runs only on the device: its check is the device's own
        say(f"recording golden outputs of {source.name} on {data}")
        golden = f"golden/{source.name}.npz"
        _save_golden(source, root / golden, data, samples)
    tensorrt = None
    if kind == "onnx":  # engines are built on the device: the recipe, in the precision the graph is in
        quantized = ((recorded.get("recipe") or {}).get("preset") or {}).get("name") == "tensorrt"  # fp16: no preset
        tensorrt = {"precision": "int8" if quantized else ("fp16" if precision == "fp16" else "fp32"),
                    "source": f"models/{source.name}"}
        if precision == "int8" and not quantized:
            tensorrt = None  # ORT's default QDQ (int32 bias) does not build; on a Jetson it runs on ONNX Runtime
        if (recorded.get("task") or {}).get("nms") == "graph":
            tensorrt = None  # TensorRT cannot build ONNX's NonMaxSuppression (kit build refuses it)
    return BundledModel(source.name, kind, precision, devices, golden, tensorrt)


def _save_golden(model: Path, path: Path, data: str, samples: int) -> None:
    """The model's outputs on the first ``samples`` of ``data`` here, with the inputs, in a golden file."""
    from kit.check.harness import compare_models

    with silenced():  # a random-data warning is compare's, not the bundle's
        compare_models(str(model), None, data=data, save_golden_to=str(path), limit=samples)
    _without_date(path, f"models/{model.name}")


def _without_date(path: Path, model: str) -> None:
    """The golden file with its meta's creation time removed and the model named as the bundle
    holds it: the same model and data give the same bytes wherever the command ran."""
    import numpy as np

    from kit.data.golden import save_arrays

    with np.load(path, allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    meta = json.loads(str(arrays["meta"]))
    meta.pop("created", None)
    meta["model"], meta["data"] = model, _data_name(str(meta.get("data", "")))
    arrays["meta"] = np.array(json.dumps(meta))
    save_arrays(path, arrays)


def _data_name(data: str) -> str:
    """Golden data as recorded: a file or folder by its name (the path depends on where the
    command ran), random:N as it is."""
    return Path(data).name if Path(data).exists() else data


def _requirements(kind: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    lines = [f"# {DEVICES[kind]}", f"# pinned to the versions the golden outputs were made with (kit {__version__})",
             *DEVICE_NOTES.get(kind, []), f"edge-inference-kit[{kind}]=={__version__}"]
    for package in DEVICE_PACKAGES[kind]:
        try:
            lines.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            lines.append(f"{package}  # not installed on the workstation: any version")
    return "\n".join(lines) + "\n"


def _device_readme(models: list[BundledModel], kinds: list[str]) -> str:
    rows = "\n".join(f"- `models/{m.name}`: {m.format} {m.precision}, for {', '.join(m.devices)}" for m in models)
    installs = "\n".join(f"- {kind}: `pip install -r requirements/{kind}.txt` ({DEVICES[kind]})" for kind in kinds)
    # No bundle name here: the same models make the same files whatever the bundle is called.
    return (f"# A kit bundle\n\nMade by edge-inference-kit {__version__}.\n\n## Models\n\n{rows}\n\n"
            f"## On the device\n\nInstall edge-inference-kit {__version__} (from PyPI, or a wheel or checkout of that "
            f"version; `pip wheel --no-deps PATH` on the workstation makes one), then this device kind's "
            f"runtimes, pinned to what made the golden outputs:\n\n{installs}\n\nThen, in this folder:\n\n"
            "```\nkit doctor .      # every file against the manifest, each model against its golden outputs\n"
            "kit run . --image x.jpg\nkit bench .\n```\n")


def _listing(root: Path) -> list[dict[str, Any]]:
    return [{"path": path.relative_to(root).as_posix(), "sha256": sha256_of(path), "size": path.stat().st_size}
            for path in sorted(root.rglob("*")) if path.is_file() and path.name != "manifest.json"]


def _bundle_name(output: Path) -> str:
    return output.name.removesuffix(".tar.gz")


def write_archive(trees: dict[str, Path], path: Path, follow_links: bool = False) -> None:
    """A .tar.gz of each folder (or file) under its name: sorted members, owner root, time 0
    (reproducible). ``follow_links``: a linked file or folder goes as what it holds (each real
    folder once: a link back up is not followed again)."""

    def normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        info.mode = 0o755 if info.isdir() else 0o644
        return info

    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as zipped, \
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT, dereference=follow_links) as tar:
        for name, root in trees.items():
            tar.add(root, arcname=name, recursive=False, filter=normalized)
            for member in _members(root, follow_links):
                tar.add(member, arcname=f"{name}/{member.relative_to(root).as_posix()}", recursive=False,
                        filter=normalized)


def _members(root: Path, follow_links: bool) -> list[Path]:
    """Everything under ``root``, sorted; through linked folders too with ``follow_links``."""
    if not follow_links:
        return sorted(root.rglob("*"))
    found, seen = [], set()
    for folder, folders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a link back to a folder already taken
            folders.clear()
            continue
        seen.add(real)
        found += [Path(folder, entry) for entry in folders + files]
    return sorted(found)


def _replace_folder(built: Path, output: Path) -> None:
    """Move the finished bundle into place; an old bundle there is moved aside first and removed
    after, so a failure leaves one of the two whole."""
    if not output.exists():
        os.replace(built, output)
        return
    aside = output.with_name(f".{output.name}.old.{os.getpid()}")
    os.replace(output, aside)
    try:
        os.replace(built, output)
    except BaseException:
        os.replace(aside, output)
        raise
    shutil.rmtree(aside, ignore_errors=True)


# ----- reading ----------------------------------------------------------------------------------


def is_bundle(path: str | os.PathLike) -> bool:
    """Named as a bundle (NAME.kitbundle, NAME.kitbundle.tar.gz) or a folder with a manifest.json:
    such a path is opened as a bundle, and explained as one when it is not."""
    path = Path(path)
    return path.name.endswith((SUFFIX, ARCHIVE_SUFFIX)) or (path.is_dir() and (path / "manifest.json").is_file())


def open_folder(path: str | os.PathLike) -> Bundle:
    """A bundle folder, verified, for commands that keep its models open (run, bench, kit.load);
    an archive is refused with the command that unpacks it."""
    path = Path(path)
    if path.name.endswith(ARCHIVE_SUFFIX):
        raise InputError(f"{path} is an archive; running its models needs the folder.",
                         hint=f"Unpack it first: tar -xzf {path} (kit doctor reads the archive as it is).")
    if not path.exists():
        raise InputError(f"bundle {path} does not exist.", hint="Check the path.")
    if not path.is_dir() or not (path / "manifest.json").is_file():
        raise InputError(f"{path} is not a kit bundle (expected a folder with manifest.json).",
                         hint="Make one with kit bundle MODEL... -o NAME.kitbundle")
    bundle = verified(path)
    bundle.source = path
    return bundle


@contextlib.contextmanager
def open_bundle(path: str | os.PathLike) -> Iterator[Bundle]:
    """The bundle at ``path`` (a folder, or an archive extracted to a temporary folder), refused
    before any model is read when a member escapes it or a file differs from the manifest."""
    path = Path(path)
    if path.name.endswith(ARCHIVE_SUFFIX):
        with tempfile.TemporaryDirectory(prefix=".kitbundle-open.") as scratch:
            bundle = verified(_extract(path, Path(scratch)))
            bundle.source = path
            yield bundle
        return
    yield open_folder(path)


def _extract(archive: Path, into: Path) -> Path:
    """The archive's one top folder, extracted after every member was checked: regular files and
    folders only, relative paths that stay inside."""
    if not archive.is_file():
        raise InputError(f"bundle archive {archive} does not exist.", hint="Check the path.")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = []
            for member in tar:  # read one header at a time: a hostile archive may hold millions
                members.append(member)
                if len(members) > MAX_MEMBERS:
                    raise BundleError(f"{archive} holds more than {MAX_MEMBERS:,} members; a bundle holds far fewer.",
                                     hint="Refused before extracting anything.")
            if sum(member.size for member in members) > MAX_EXTRACTED_BYTES:
                raise BundleError(f"{archive} would unpack to more than {MAX_EXTRACTED_BYTES >> 30} GB.",
                                 hint="Refused before extracting anything.")
            tops = set()
            for member in members:
                _check_member(member.name, archive)
                if not (member.isfile() or member.isdir()):
                    raise BundleError(f"{archive} holds {member.name}, which is a link or a device file; a bundle "
                                     "holds only files and folders.", hint="Refused before extracting anything.")
                tops.add(PurePosixPath(member.name).parts[0])
            folders = {m.name.rstrip("/") for m in members if m.isdir()}
            if len(tops) != 1 or next(iter(tops)) not in folders:
                raise BundleError(f"expected one bundle folder in {archive}, found {len(tops)} top-level entries"
                                 + ("" if len(tops) != 1 else " and no folder") + ".",
                                 hint="Make the archive with kit bundle --archive.")
            # Members were checked above; the "data" filter (Python 3.10.12+) checks them again.
            tar.extractall(into, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as exc:
        raise BundleError(f"{archive} is not a readable .tar.gz bundle ({exc}).",
                         hint="Copy it again, or make it with kit bundle --archive.") from exc
    return into / tops.pop()


def _check_member(name: str, where: Path) -> None:
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]) or not parts:
        raise BundleError(f"{where} holds the path {name!r}, which points outside the bundle.",
                         hint="Refused before anything was read or extracted; the bundle is not safe to open.")


def verified(root: Path) -> Bundle:
    """The bundle at ``root`` after its manifest and every file it lists were checked."""
    manifest = _read_manifest(root)
    problems = file_problems(root, manifest)
    if problems:
        raise BundleError(f"{root} does not match its manifest: {'; '.join(problems)}.",
                          hint="Nothing was loaded. Copy the bundle again from the workstation, or make it again "
                               "with kit bundle.")
    return Bundle(root, manifest)


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / "manifest.json"
    if path.is_symlink() or not path.is_file():
        raise BundleError(f"{root} has no manifest.json (or it is a link).", hint="Make the bundle with kit bundle.")
    if path.stat().st_size > MANIFEST_BYTES:
        raise BundleError(f"{path} is {path.stat().st_size} bytes; a manifest is far smaller.",
                          hint="It is not a kit manifest.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON ({exc}).", hint="Make the bundle again with kit bundle.") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path} is not a kit bundle manifest.", hint="Make the bundle with kit bundle.")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{root} is bundle format {manifest.get('format_version')}; this kit reads "
                          f"{FORMAT_VERSION}.", hint=f"Install the kit version that made it "
                                                     f"({manifest.get('kit_version')}).")
    problem = _schema_problem(manifest)
    if problem:
        raise BundleError(f"{path} is not a valid kit manifest: {problem}.",
                          hint="Nothing was loaded. Make the bundle again with kit bundle.")
    return manifest


def _schema_problem(manifest: dict[str, Any]) -> str | None:
    """What is wrong with the manifest's shape: files as path/sha256/size entries, models naming
    files the manifest lists (so nothing outside the hashed files is ever opened)."""
    files = manifest.get("files")
    if not isinstance(files, list) or not all(
            isinstance(f, dict) and isinstance(f.get("path"), str) and isinstance(f.get("sha256"), str)
            and isinstance(f.get("size"), int) for f in files):
        return "expected files as a list of {path, sha256, size}"
    for entry in files:
        if "\0" in entry["path"] or len(entry["path"]) > MAX_PATH_CHARS:
            return f"the file path {entry['path'][:80]!r} is not a path a bundle holds"
    listed = {f["path"] for f in files}
    models = manifest.get("models")
    if not isinstance(models, list) or not models:
        return "expected models as a non-empty list"
    for model in models:
        fields = ("name", "format", "precision", "devices")
        if not isinstance(model, dict) or any(key not in model for key in fields):
            return f"expected each model with {', '.join(fields)}"
        if f"models/{model['name']}" not in listed or "/" in str(model["name"]):
            return f"the model {str(model['name'])[:80]!r} is not a file the manifest lists in models/"
        if model.get("golden") is not None and (model["golden"] not in listed or
                                                not str(model["golden"]).startswith("golden/")):
            return f"the golden file {str(model['golden'])[:80]!r} is not a file the manifest lists in golden/"
        recipe = model.get("tensorrt")
        if recipe is not None and (not isinstance(recipe, dict) or recipe.get("precision") not in TENSORRT_PRECISIONS):
            return f"the TensorRT recipe of {str(model['name'])[:80]!r} is not one (expected a precision among " \
                   f"{', '.join(TENSORRT_PRECISIONS)})"
    return None


def file_problems(root: Path, manifest: dict[str, Any]) -> list[str]:
    """Each listed file that is missing, changed, a link or outside the bundle, and each file
    the manifest does not list."""
    problems, listed = [], set()
    resolved_root = root.resolve()
    for entry in manifest["files"]:  # validated by _read_manifest: path, sha256, size
        relative = entry["path"]
        listed.add(relative)
        try:
            _check_member(relative, root / "manifest.json")
        except BundleError:
            problems.append(f"the manifest lists {relative!r}, outside the bundle")
            continue
        path = root / relative
        if path.is_symlink() or not path.resolve().is_relative_to(resolved_root):
            problems.append(f"{relative} is a link")
        elif not path.is_file():
            problems.append(f"{relative} is missing")
        elif path.stat().st_size != entry["size"] or sha256_of(path) != entry["sha256"]:
            problems.append(f"{relative} changed (SHA-256 differs from the manifest)")
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if (path.is_file() or path.is_symlink()) and relative != "manifest.json" and relative not in listed:
            problems.append(f"{relative} is not in the manifest")
    return problems

