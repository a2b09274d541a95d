"""kit doctor: is this device ready, and does it run a bundle's models as the workstation did?

Findings are ``ok``, ``info`` (worth knowing, not a fault: a runtime this device does not
need) or ``problem`` (the device is not ready). With a bundle: every file against the
manifest first (a tampered bundle loads nothing), then each model this device can run on its
golden inputs against the golden outputs, judged by the model's precision: float32 within
atol 1e-4 + rtol 1e-3 (measured x86 against aarch64: 2e-8), float16 and int8 by SQNR, since
other kernels round differently (int8 on ARM's S8S8 kernels differs by up to 1e-3 from x86's).
Then the bundle's TensorRT engines (kit.deploy.engines): each missing or stale one is named,
built with ``build`` from the bundled ONNX and recipe, and a fresh one is run on its golden
inputs where the GPU is usable (by SQNR, float32 engines too: TensorRT computes float32
layers in TF32 by default).
"""

from __future__ import annotations

import platform
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from kit._version import __version__
from kit.core.errors import InputError, KitError
from kit.core.formatting import decibels
from kit.core.quiet import silenced

MIN_PYTHON = (3, 10)
# Against its golden outputs, a model of this precision passes at or above this SQNR. A model
# swapped for another scores near 0 dB; the same model on other kernels, far above these.
MIN_SQNR_DB = {"fp16": 40.0, "int8": 30.0}
ENGINE_FP32_SQNR_DB = 40.0  # TF32's 10-bit mantissa rounds like float16


@dataclass(frozen=True)
class Finding:
    area: str  # what was checked: "python", "runtime onnxruntime", "bundle", "model NAME"
    status: str  # ok, info or problem
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def diagnose(bundle: str | None = None, *, build: bool = False, compute_capability: str | None = None,
             progress: Callable[[str], None] | None = None) -> list[Finding]:
    """The device's findings, and the bundle's when one is given. ``build`` builds the bundle's
    missing or stale TensorRT engines (for ``compute_capability`` ahead of time, TensorRT-RTX)."""
    if bundle is None and (build or compute_capability):
        raise InputError("--build builds a bundle's TensorRT engines; found no bundle.",
                         hint="kit doctor NAME.kitbundle --build")
    if compute_capability and not build:
        raise InputError("--compute-capability says which GPU --build builds for; found no --build.",
                         hint="kit doctor NAME.kitbundle --build --compute-capability SM86")
    findings = _python() + _runtimes() + _video() + _platform()
    if bundle is not None:
        findings += _bundle(bundle, build, compute_capability, progress or (lambda message: None))
    return findings


def ready(findings: list[Finding]) -> bool:
    return not any(f.status == "problem" for f in findings)


# ----- the device ---------------------------------------------------------------------------


def _python() -> list[Finding]:
    version = platform.python_version()
    ok = sys.version_info[:2] >= MIN_PYTHON
    return [Finding("python", "ok" if ok else "problem", f"Python {version}, kit {__version__}",
                    "" if ok else f"Install Python {'.'.join(map(str, MIN_PYTHON))} or later.")]


def _runtimes() -> list[Finding]:
    from kit.runtimes.registry import get, known

    found = []
    for name in known():
        try:
            state = get(name).availability()
        except KitError as error:
            found.append(Finding(f"runtime {name}", "info", f"not usable: {error}"))
            continue
        problem = get(name).device_problem() if state.usable else None
        if problem:  # installed, and its device is missing: worth knowing, not a fault of the install
            found.append(Finding(f"runtime {name}", "info", f"{state.version or 'version unknown'}; {problem}"))
        elif state.usable:
            found.append(Finding(f"runtime {name}", "ok", f"{state.version or 'version unknown'}"
                                 + (f"; {state.detail}" if state.detail else "")))
        else:
            found.append(Finding(f"runtime {name}", "info", f"not usable: {state.detail or 'not installed'}",
                                 state.install or ""))
    return found


def _video() -> list[Finding]:
    """OpenCV's video I/O, from its build information: what --source can read on this device."""
    try:
        import cv2
    except ImportError:
        return [Finding("opencv", "info", "not installed (images, video and cameras need it)",
                        'pip install "edge-inference-kit[image]"')]
    backends = video_backends(cv2.getBuildInformation())
    listed = ", ".join(f"{name} {'yes' if on else 'no'}" for name, on in backends.items())
    return [Finding("opencv", "ok", f"{cv2.__version__}; video I/O: {listed or 'none listed'}")]


def video_backends(build_information: str) -> dict[str, bool]:
    """FFMPEG, GStreamer and V4L/V4L2 as ``cv2.getBuildInformation()``'s Video I/O section lists them."""
    section = build_information.split("Video I/O:", 1)[1] if "Video I/O:" in build_information else ""
    section = re.split(r"\n\s*\n|\n\s{2}\S", section, maxsplit=1)[0]
    found = {}
    for label, name in (("FFMPEG", "FFmpeg"), ("GStreamer", "GStreamer"), ("v4l/v4l2", "V4L2")):
        match = re.search(rf"^\s*{re.escape(label)}:\s*(\S+)", section, re.MULTILINE)
        if match:
            found[name] = match[1].upper() != "NO"
    return found


def _platform() -> list[Finding]:
    from kit.core.environment import describe

    env = describe()
    found = [Finding("cpu", "ok", f"{env['cpu'].get('model') or env['machine']}, {env['cores']} cores, "
                     f"{env['os']}")]
    governor = env.get("governor")
    if governor and governor != "performance":
        found.append(Finding("cpu governor", "info", f"{governor}: clocks vary, and so do timings",
                             "For benchmarks: sudo cpupower frequency-set -g performance"))
    elif governor:
        found.append(Finding("cpu governor", "ok", governor))
    throttled = vcgencmd("get_throttled")
    if throttled is not None:
        now, before = throttling(throttled)
        found.append(Finding("raspberry pi power", "problem" if now else ("info" if before else "ok"),
                             f"now: {', '.join(now) or 'none'}; since boot: {', '.join(before) or 'none'} ({throttled})",
                             "Use the official power supply and cooling: timings and stability suffer." if now or before
                             else ""))
    if env.get("l4t"):
        found.append(Finding("jetson", "ok", f"{env['l4t']}; JetPack {env.get('jetpack')}; power mode "
                             f"{env.get('power_mode') or 'unknown'}"))
        if env.get("jetson_clocks") is False:
            found.append(Finding("jetson clocks", "info", "the CPU clocks scale with load: timings vary",
                                 "For benchmarks: sudo jetson_clocks (and sudo nvpmodel -m 0 for the top mode)"))
        elif env.get("jetson_clocks"):
            found.append(Finding("jetson clocks", "ok",
                                 "pinned: each CPU's minimum frequency is its maximum (jetson_clocks)"))
    return found


# The bits of `vcgencmd get_throttled` (Raspberry Pi documentation, "vcgencmd"): the low four
# are the state now, the same four shifted by 16 what happened since boot.
THROTTLE_BITS = {0: "under-voltage", 1: "ARM frequency capped", 2: "throttled", 3: "soft temperature limit"}


def throttling(text: str) -> tuple[list[str], list[str]]:
    """What ``vcgencmd get_throttled`` (``throttled=0x50005``) reports now and since boot."""
    match = re.search(r"throttled=(0x[0-9a-fA-F]+|\d+)", text)
    if match is None:
        return [], []
    value = int(match[1], 0)
    return ([name for bit, name in THROTTLE_BITS.items() if value >> bit & 1],
            [name for bit, name in THROTTLE_BITS.items() if value >> (bit + 16) & 1])


def vcgencmd(command: str) -> str | None:
    """vcgencmd's answer on a Raspberry Pi; None elsewhere."""
    import shutil
    import subprocess

    if shutil.which("vcgencmd") is None:
        return None
    try:
        done = subprocess.run(["vcgencmd", command], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


# ----- a bundle -----------------------------------------------------------------------------


def _bundle(path: str, build: bool, compute_capability: str | None, say) -> list[Finding]:
    """The bundle's findings. A path that is no bundle at all is the user's error (open_bundle
    raises it: exit 2); a bundle that is unsafe, tampered with or malformed is the device's
    problem (a finding)."""
    from kit.deploy.bundle import BundleError, open_bundle
    from kit.deploy.choose import usable_here

    here = usable_here()
    try:
        with open_bundle(path) as bundle:
            found = [Finding("bundle", "ok", f"{path}: {len(bundle.manifest['files'])} files match the manifest "
                             f"(kit {bundle.manifest['kit_version']})")]
            found += [_golden_check(bundle, model, here) for model in bundle.models]
            if all(f.status == "info" for f in found[1:]):  # no model of the bundle runs here
                found.append(Finding("bundle", "problem", "no model in the bundle can run on this device",
                                     "kit doctor lists what each model needs; install its runtime (requirements/)."))
            found += _engines(bundle, path, here, build, compute_capability, say)
    except BundleError as error:  # nothing was loaded
        return [Finding("bundle", "problem", error.message, error.hint or "")]
    return found


def _golden_check(bundle, model, here: set[str]) -> Finding:
    from kit.deploy.choose import usable_runtimes

    area = f"model {model.name}"
    path = bundle.model_path(model)
    usable = usable_runtimes(path, here)
    if not usable:
        return Finding(area, "info", f"not for this device: no usable runtime opens {model.format} "
                       f"(it suits {', '.join(model.devices)})")
    if model.golden is None:
        return Finding(area, "info", f"runs on {usable[0]}; the bundle has no golden outputs for it")
    return _against_golden(area, path, usable[0], bundle.root / model.golden, model.precision,
                           MIN_SQNR_DB.get(model.precision))


def _against_golden(area: str, path, runtime: str, golden, precision: str, min_sqnr: float | None) -> Finding:
    """``path`` on ``runtime`` against the golden outputs: elementwise without ``min_sqnr``, else by SQNR."""
    from kit.check.harness import compare_models

    try:
        with silenced():  # the golden file's data is the bundle's choice, not a warning for the device
            result = compare_models(None, str(path), golden=str(golden), runtimes=(None, runtime),
                                    stat="elementwise")
    except KitError as error:
        return Finding(area, "problem", f"failed on {runtime}: {error}")
    worst = min((d.sqnr_db for d in result.outputs), default=float("inf"))
    if min_sqnr is None:
        passed = result.passed
        rule = "atol 1e-4 + rtol 1e-3"
    else:
        passed, rule = worst >= min_sqnr, f"SQNR >= {min_sqnr:g} dB"
    detail = (f"{precision} on {runtime}: {result.samples} golden samples, worst SQNR "
              f"{decibels(worst)}, max abs error {max(d.max_abs for d in result.outputs):.3g} ({rule})")
    return Finding(area, "ok" if passed else "problem", detail,
                   "" if passed else "This device computes other outputs than the workstation did: check the "
                                     "runtime versions against requirements/, or the model file.")


def _engines(bundle, path: str, here: set[str], build: bool, compute_capability: str | None, say) -> list[Finding]:
    """The bundle's TensorRT engines: their state, built when asked, checked against the golden
    outputs where the GPU runs them. Without TensorRT (most devices) nothing, unless --build asked."""
    from kit.deploy import engines
    from kit.runtimes.tensorrt import cuda, modules

    rebuild = f"kit doctor {path} --build"
    if not any(model.tensorrt for model in bundle.models):
        return [Finding("engines", "info", "nothing to build: the bundle has no TensorRT recipe (one comes with "
                        "a float ONNX model, or int8 from kit quantize --target tensorrt)")] if build else []
    trt = modules.find_module()
    if trt is None:
        return [Finding("engines", "problem", "--build needs TensorRT, which is not installed here",
                        modules.INSTALL)] if build else []
    if compute_capability:  # the command's own argument: wrong, it is the user's error (exit 2)
        from kit.runtimes.tensorrt.build import checked_compute_capability

        compute_capability = checked_compute_capability(trt, compute_capability)
    gpu = cuda.gpu_description()
    if build and gpu is None and not compute_capability:
        return [Finding("engines", "problem", f"--build: {cuda.no_gpu_reason()}, and TensorRT builds an engine for "
                        "the GPU that runs it", "Build on the Jetson or GPU machine, or ahead of time with "
                                                "TensorRT-RTX: --compute-capability SM86")]
    found = []
    for engine in engines.engines(bundle, trt, gpu, compute_capability):
        area = f"engine {engine.path.name}"
        if build and engine.state != "fresh":
            say(f"building {engine.path.name} ({engine.precision}) from {engine.model.name}")
            try:
                made = engines.build(bundle, engine, compute_capability=compute_capability, progress=say)
            except KitError as error:  # the model or its recipe: this engine's problem, the others go on
                found.append(Finding(area, "problem", f"the build failed: {error.message}", error.hint or ""))
                continue
            except OSError as error:
                found.append(Finding(area, "problem", f"could not write {engine.path} ({error.strerror or error})",
                                     "Make the folder beside the bundle writable, or copy the bundle somewhere "
                                     "writable."))
                continue
            say(f"built {engine.path.name} in {made.seconds:.1f} s")
            engine = next(e for e in engines.engines(bundle, trt, gpu, compute_capability) if e.path == engine.path)
        found.append(_engine_finding(bundle, engine, area, "tensorrt" in here, rebuild))
    return found


def _engine_finding(bundle, engine, area: str, runs_here: bool, rebuild: str) -> Finding:
    if engine.state == "missing":
        return Finding(area, "info", f"not built yet (in {engine.path.parent.name}/ beside the bundle); "
                       f"{'run uses the ONNX until then' if runs_here else 'engines are built on the GPU device'}",
                       rebuild if runs_here else "")
    if engine.state == "stale":  # where the GPU would run it, the device is not as the engine expects
        return Finding(area, "problem" if runs_here else "info", f"stale: {engine.detail}", rebuild if runs_here else "")
    if not runs_here:
        return Finding(area, "info", f"built ({engine.detail}); no GPU here runs it")
    if engine.model.golden is None:
        return Finding(area, "ok", f"built ({engine.detail}); the bundle has no golden outputs for it")
    return _against_golden(area, engine.path, "tensorrt", bundle.root / engine.model.golden, engine.precision,
                           MIN_SQNR_DB.get(engine.precision, ENGINE_FP32_SQNR_DB))


def report(findings: list[Finding]) -> dict[str, Any]:
    return {"ready": ready(findings), "findings": [f.to_dict() for f in findings]}


