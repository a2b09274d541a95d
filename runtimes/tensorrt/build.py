"""ONNX -> TensorRT engine, with a manifest beside it.

Works with the standard ``tensorrt`` module (JetPack's on a Jetson, NVIDIA's wheels on an x86
GPU machine) and with ``tensorrt_rtx`` (PyPI), whose APIs are close. TensorRT-RTX builds
ahead of time without a GPU for a chosen compute capability, which is how CI proves here
that TensorRT parses and builds every model the kit exports and quantizes.

Precision:
- fp32: the graph as it is;
- fp16: the FP16 builder flag where TensorRT has it; TensorRT-RTX is strongly typed and takes
  the precision from the graph (an fp16 model from ``kit quantize --precision fp16``);
- int8, two ways, picked from the model and the installed TensorRT, and recorded: explicit
  (a QDQ model from ``kit quantize --target tensorrt``, built strongly typed where
  supported) or, for a float model on a TensorRT that still has implicit calibrators
  (deprecated in 10.1, removed in 11; not in TensorRT-RTX), implicit entropy calibration
  from the kit's calibration data (``calib``) with a calibration cache beside the engine
  (``ENGINE.calib.cache``, written with the engine). The manifest records the model's and the
  data's SHA-256 the cache was made from; a rebuild reuses the cache only when both match
  (and the TensorRT version), and otherwise calibrates again and says so.

TensorRT's build log (info and up) is kept beside the engine as ``ENGINE.build.log``.
The manifest (``ENGINE.kit.json``) records TensorRT's module and version, the target GPU
(name and compute capability), precision, optimization-profile shapes, the source ONNX
path and SHA-256, and the kit version; the runtime refuses an engine whose manifest does
not match the installed TensorRT or GPU, or rebuilds it from the recorded ONNX.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from kit.runtimes.tensorrt import cuda
from kit.runtimes.tensorrt.calibrator import CALIBRATION_CACHE, attach_calibrator
from kit.runtimes.tensorrt.modules import tensorrt_module

from kit.core import provenance
from kit.core.errors import ExportError, InputError, RuntimeUnavailableError
from kit.core.fileio import atomic_output, check_output_path, sha256_of
from kit.core.onnx_ops import QDQ_OPS
from kit.core.specs import parse_shape

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_MAX_BATCH = 8
COMPANIONS = (".kit.json", ".build.log", CALIBRATION_CACHE)
MAGIC_BYTES = 4  # a serialized timing cache starts with its format's magic (what an empty one starts with)


@dataclass
class EngineResult:
    path: Path
    manifest: dict[str, Any]
    seconds: float
    log: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "manifest": self.manifest, "seconds": round(self.seconds, 3),
                "log": self.log[-50:], "notes": self.notes}


def build_engine(
    model: str | os.PathLike,
    output: str | os.PathLike,
    *,
    precision: str = "fp32",
    min_shapes: list[str] | None = None,
    opt_shapes: list[str] | None = None,
    max_shapes: list[str] | None = None,
    workspace_mb: int | None = None,
    timing_cache: str | os.PathLike | None = None,
    dla_core: int | None = None,
    compute_capability: str | None = None,
    calib: Any = None,
    progress: Callable[[str], None] | None = None,
) -> EngineResult:
    """Build ``model`` (.onnx) into an engine at ``output`` with its manifest; nothing is written on failure.

    Shapes are ``NAME=1x3x224x224`` (or ``1x3x224x224`` for a single input). By default a
    dynamic batch axis gets min 1, opt 1, max 8.
    ``compute_capability`` (e.g. "SM86") builds ahead of time for that GPU where TensorRT-RTX allows it.
    """
    started = time.perf_counter()
    say = progress or (lambda message: None)
    model, output = Path(model), Path(output)
    if precision not in PRECISIONS:
        raise InputError(f"expected --precision among {', '.join(PRECISIONS)}, found {precision!r}.",
                         hint="int8 needs a QDQ model from kit quantize --target tensorrt.")
    if model.suffix.lower() != ".onnx" or not model.is_file():
        raise InputError(f"expected an existing .onnx model, found {model}.", hint="Export one with kit export.")
    if output.suffix.lower() not in (".engine", ".plan"):
        raise InputError(f"expected an output ending in .engine or .plan, found {output}.", hint="Name it model.engine.")
    check_output_path(output, model)
    if timing_cache is not None:
        _check_timing_cache_path(Path(timing_cache), model, output, calib)
    parent = provenance.read(model)
    if (parent.get("task") or {}).get("nms") == "graph":
        raise InputError(f"{model} has NMS in its graph (kit export --nms graph), and TensorRT cannot build ONNX's "
                         "NonMaxSuppression.", hint="Build the detector exported without --nms graph: the "
                                                   "engine gives the raw head and NMS runs on the host.")
    graph = _read_graph(model)
    trt = tensorrt_module()
    implicit = _int8_path(graph, precision, model, trt, calib) == "implicit"
    log: list[str] = []
    notes: list[str] = []
    logger = _collecting_logger(trt, log)
    builder = trt.Builder(logger)
    strongly_typed = (precision == "int8" and not implicit) or not hasattr(trt.BuilderFlag, "FP16")
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed and hasattr(
        trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED") else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    say(f"parsing {model.name} with {trt.__name__} {trt.__version__}")
    if not parser.parse_from_file(str(model)):
        errors = [_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError(f"TensorRT could not parse {model.name}: " + "; ".join(errors),
                          hint="For int8, quantize with kit quantize --target tensorrt (symmetric, float bias); "
                               "otherwise re-export with another --opset or simplify with --simplify.")
    config = builder.create_builder_config()
    if precision == "fp16" and hasattr(trt.BuilderFlag, "FP16"):
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8" and not flags and hasattr(trt.BuilderFlag, "INT8"):
        config.set_flag(trt.BuilderFlag.INT8)  # QDQ in a weakly typed network (TensorRT 8.x) needs the flag
    elif precision == "fp16" and not _has_float16(graph):
        raise InputError(f"{trt.__name__} is strongly typed: it computes in the graph's own precision, and "
                         f"{model.name} is float32.",
                         hint=f"Convert it first: kit quantize {model} -o model.fp16.onnx --precision fp16")
    if workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if dla_core is not None:
        if dla_core >= builder.num_DLA_cores:
            raise InputError(f"--dla-core {dla_core}: {trt.__name__} sees {builder.num_DLA_cores} DLA cores here.",
                             hint="DLA engines are built on a Jetson Xavier or Orin (cores 0 and 1).")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    cache = _timing_cache(trt, config, timing_cache, notes)
    if (parent.get("task") or {}).get("name") == "detect":
        notes.append(_nms_note(trt, logger))
    target = _target(trt, config, compute_capability)
    profile_shapes = _profile(builder, config, network, min_shapes, opt_shapes, max_shapes)
    calibration = calibrator = None
    if implicit:
        say("calibrating (implicit int8, entropy)")
        calibration, calibrator = attach_calibrator(trt, builder, config, network, model, calib, output,
                                                     profile_shapes, notes)
    say("building the engine")
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.free()  # the device buffers calibration filled
    if serialized is None:
        errors = [line for line in log if line.startswith(("[E]", "[F]"))]
        raise ExportError(f"TensorRT could not build {model.name}: {'; '.join(errors[-3:]) or 'no error logged'}",
                          hint="The errors above name the failing layer; try another --opset, --precision fp32, "
                               "or a larger --workspace. Nothing was written.")
    manifest = provenance.new(
        stage="build", format="tensorrt-engine", tensorrt_module=trt.__name__, tensorrt_version=trt.__version__,
        precision=precision, strongly_typed=bool(flags),
        quantization=("implicit calibration (entropy)" if implicit else "explicit QDQ") if precision == "int8" else None,
        calibration=calibration,
        target=target, profile=profile_shapes, source_onnx=str(model.resolve()), source_onnx_sha256=sha256_of(model),
        dla_core=dla_core, workspace_mb=workspace_mb, parent=parent or None,
        # what run, eval and the device read from any model: the engine's outputs are the ONNX's
        task=parent.get("task"), preprocess=parent.get("preprocess"))
    with atomic_output(output) as tmp:  # the engine, its manifest, build log and calibration cache move together
        tmp.write_bytes(bytes(serialized))
        provenance.write_sidecar(tmp, manifest)
        tmp.with_name(tmp.name + ".build.log").write_text("\n".join(log) + "\n")  # TensorRT's own words
        if calibrator is not None and calibrator.cache:
            tmp.with_name(tmp.name + CALIBRATION_CACHE).write_bytes(calibrator.cache)
    if cache is not None:
        with atomic_output(timing_cache) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TensorRT-RTX: timing caches are no-ops
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    return EngineResult(output, manifest, time.perf_counter() - started, log, notes)


def _read_graph(model: Path):
    import onnx

    try:
        return onnx.load(str(model), load_external_data=False).graph
    except Exception as exc:
        from kit.core.errors import ModelFileError, root_cause

        raise ModelFileError(f"{model} is not a readable ONNX model ({root_cause(exc)}).",
                             hint="Re-export it with kit export.") from exc


def _has_float16(graph) -> bool:
    import onnx

    return any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)


def _int8_path(graph, precision: str, model: Path, trt, calib) -> str | None:
    """Check the precision against the graph; for int8, "explicit" (QDQ) or "implicit" (calibrator)."""
    ops = {node.op_type for node in graph.node}
    half = _has_float16(graph)
    if precision == "int8" and not ops & QDQ_OPS:
        if not hasattr(trt, "IInt8EntropyCalibrator2"):
            raise InputError(f"int8 needs an explicitly quantized (QDQ) model; {model.name} has no QuantizeLinear "
                             f"nodes, and {trt.__name__} {trt.__version__} has no implicit calibrators.",
                             hint=f"Run: kit quantize {model} -o model.trt-int8.onnx --target tensorrt --calib DATA")
        if calib is None:
            raise InputError(f"implicit int8 calibration of {model.name} needs calibration data; found no --calib.",
                             hint="Give --calib DATA, or quantize explicitly: kit quantize --target tensorrt.")
        return "implicit"
    if precision != "int8" and ops & QDQ_OPS:
        raise InputError(f"{model.name} is a QDQ (int8) model; build it with --precision int8.", hint="")
    if precision == "fp32" and half:
        raise InputError(f"{model.name} holds float16 weights; build it with --precision fp16.", hint="")
    return "explicit" if precision == "int8" else None


def _collecting_logger(trt, log: list[str]):
    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)

        def log(self, severity, message):
            tag = {trt.ILogger.Severity.INTERNAL_ERROR: "F", trt.ILogger.Severity.ERROR: "E",
                   trt.ILogger.Severity.WARNING: "W", trt.ILogger.Severity.INFO: "I"}.get(severity, "V")
            if tag != "V":
                log.append(f"[{tag}] {message}")

    return Logger()


def _parser_error(error) -> str:
    """One parser error: the node, its operator, and the reason (without CUDA-driver noise lines)."""
    node = error.node_name() if hasattr(error, "node_name") else error.node()
    lines = [line.strip() for line in error.desc().splitlines() if line.strip() and "Cuda Runtime" not in line]
    reason = " - ".join(lines[:2])
    return f"node {node!r} ({error.node_operator() if hasattr(error, 'node_operator') else '?'}): {reason[:400]}"


def _check_timing_cache_path(path: Path, model: Path, output: Path, calib) -> None:
    """The timing cache is read and rewritten: it may be no file the build reads or writes."""
    taken = {"the model": model, "the engine": output}
    taken.update({f"the engine's {suffix}": output.with_name(output.name + suffix) for suffix in COMPANIONS})
    if isinstance(calib, (str, os.PathLike)) and Path(calib).is_file():
        taken["the calibration data"] = Path(calib)
    for role, other in taken.items():
        if path.resolve() == other.resolve():  # through symbolic links; hard links are caught below
            raise InputError(f"--timing-cache {path} is {role}; the cache would overwrite it.",
                             hint="Give the timing cache a file of its own, e.g. model.timing.cache.")
    check_output_path(path, *[other for other in taken.values() if other.exists()])


def _nms_note(trt, logger) -> str:
    """Where a detector engine's NMS runs, and why: the engine ends at the raw head."""
    trt.init_libnvinfer_plugins(logger, "")
    creators = {creator.name for creator in trt.get_plugin_registry().all_creators}
    why = ("the kit does not insert TensorRT's EfficientNMS_TRT plugin yet" if "EfficientNMS_TRT" in creators else
           f"{trt.__name__} {trt.__version__} has no EfficientNMS_TRT plugin")
    return f"the engine gives the raw detection head; NMS runs on the host ({why})."


def _timing_cache(trt, config, path, notes: list[str]):
    """Read (and later rewrite) a timing cache file, refusing an existing file that is not one: TensorRT
    would silently start an empty cache from anything, and the kit would then overwrite the file."""
    if path is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TensorRT-RTX: timing caches are no-ops
        magic = bytes(config.create_timing_cache(b"").serialize())[:MAGIC_BYTES]
        data = _timing_cache_bytes(Path(path), magic, trt)
        cache = config.create_timing_cache(data)
        config.set_timing_cache(cache, ignore_mismatch=False)
    if trt.__name__ == "tensorrt_rtx":
        notes.append(f"{trt.__name__} {trt.__version__} does not use timing caches (its timing-cache calls do "
                     f"nothing); {path} is written empty for a TensorRT that does.")
    return cache


def _timing_cache_bytes(path: Path, magic: bytes, trt) -> bytes:
    if not path.is_file():
        return b""
    with open(path, "rb") as handle:
        head = handle.read(len(magic))
    if head != magic:
        raise InputError(f"--timing-cache {path} exists and is not a {trt.__name__} timing cache (it starts with "
                         f"{head!r}, a timing cache with {magic!r}); the kit will not overwrite it.",
                         hint="Give a new file name, or a timing cache an earlier kit build (or trtexec) wrote.")
    return path.read_bytes()


def checked_compute_capability(trt, compute_capability: str) -> str:
    """``SM86`` as ``trt`` names it, or an InputError when this TensorRT cannot build for it."""
    if not hasattr(trt, "ComputeCapability"):
        raise InputError(f"{trt.__name__} builds for the GPU it runs on; --compute-capability needs TensorRT-RTX.",
                         hint="Drop --compute-capability and build on the target device.")
    members = [m for m in trt.ComputeCapability.__members__ if m.startswith("SM")]
    if compute_capability.upper() not in members:
        raise InputError(f"expected a compute capability among {', '.join(members)}, found {compute_capability!r}.",
                         hint="E.g. SM86 for an RTX 30xx, SM89 for an RTX 40xx.")
    return compute_capability.upper()


def _target(trt, config, compute_capability: str | None) -> dict[str, Any]:
    """The GPU the engine is for: a named compute capability (ahead of time), else this machine's GPU."""
    if compute_capability:
        compute_capability = checked_compute_capability(trt, compute_capability)
        config.num_compute_capabilities = 1
        config.set_compute_capability(getattr(trt.ComputeCapability, compute_capability), 0)
        return {"gpu": None, "compute_capability": compute_capability, "ahead_of_time": True}
    gpu = cuda.gpu_description()
    if gpu is None:
        raise RuntimeUnavailableError(f"{cuda.no_gpu_reason()}, and TensorRT builds for the GPU it runs on.",
                                      hint="Build on the device (a Jetson or a GPU machine), or with TensorRT-RTX "
                                           "ahead of time: --compute-capability SM86.")
    return {**gpu, "ahead_of_time": False}


def _profile(builder, config, network, min_shapes, opt_shapes, max_shapes) -> dict[str, dict[str, list[int]]]:
    """One optimization profile covering every dynamic input: the shapes given, else for a dynamic
    batch min 1, opt 1 (edge inference runs one frame at a time) and max 8."""
    given = {"min": _named(min_shapes, network), "opt": _named(opt_shapes, network), "max": _named(max_shapes, network)}
    names = {network.get_input(i).name for i in range(network.num_inputs)}
    unknown = sorted({name for shapes in given.values() for name in shapes} - names)
    if unknown:
        raise InputError(f"a shape names the input {', '.join(unknown)}, which the model does not have "
                         f"(it has {', '.join(sorted(names))}).", hint="Use the input names `kit inspect` shows.")
    profile, chosen_all = builder.create_optimization_profile(), {}
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        dims = list(tensor.shape)
        if all(d >= 0 for d in dims):
            continue  # static: TensorRT needs no profile for it
        chosen = {}
        for key, batch in (("min", 1), ("opt", 1), ("max", DEFAULT_MAX_BATCH)):
            shape = given[key].get(tensor.name)
            if shape is None:
                if any(d < 0 for d in dims[1:]):
                    raise InputError(f"input {tensor.name!r} has dynamic axes besides the batch ({dims}); give "
                                     f"--{key}-shape {tensor.name}=...", hint="Give min, opt and max shapes.")
                shape = [batch, *dims[1:]]
            if len(shape) != len(dims) or any(d >= 0 and s != d for s, d in zip(shape, dims)):
                raise InputError(f"--{key}-shape {tensor.name}={'x'.join(map(str, shape))} does not fit the input's "
                                 f"shape {dims} (fixed axes must match).", hint="Change only the dynamic axes.")
            chosen[key] = shape
        if not all(a <= b <= c for a, b, c in zip(chosen["min"], chosen["opt"], chosen["max"])):
            raise InputError(f"the profile for {tensor.name!r} needs min <= opt <= max on every axis; found "
                             f"min {chosen['min']}, opt {chosen['opt']}, max {chosen['max']}.",
                             hint="Fix --min-shape/--opt-shape/--max-shape.")
        profile.set_shape(tensor.name, chosen["min"], chosen["opt"], chosen["max"])
        chosen_all[tensor.name] = chosen
    if chosen_all:
        config.add_optimization_profile(profile)
    return chosen_all


def _named(items: list[str] | None, network) -> dict[str, list[int]]:
    named = {}
    for item in items or []:
        name, sep, text = item.rpartition("=")
        if not sep:
            if network.num_inputs != 1:
                raise InputError(f"the model has {network.num_inputs} inputs; name the shape: NAME={item}.",
                                 hint="E.g. --max-shape images=8x3x224x224.")
            name = network.get_input(0).name
        named[name] = list(parse_shape(text))
    return named


