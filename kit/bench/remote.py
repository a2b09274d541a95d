"""kit bench --on user@host: the benchmark run on devices over SSH, the results brought home.

The system's OpenSSH client does the talking, so the user's ~/.ssh/config, keys and agent
apply (``ssh_options`` adds -o KEY=VALUE). Per device, in its own thread: check the remote
kit's version (the exact install command when it differs; with ``install``, this kit's wheel
is pushed and installed there, in an environment of its own), push the bundle (and the
benchmark's input files) as .tar.gz on ssh's stdin, run ``kit doctor`` and ``kit bench`` on it
under a lock (``flock``: two runs never share a board), pull the JSON back, remove the remote
copy. A device that fails is named with its error; the others' results are kept.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit._version import __version__
from kit.core.errors import InputError, KitError

# The device's scratch folder (bundles, the lock): KIT_REMOTE_DIR there, else ~/.kit-remote. A shell expression.
REMOTE_ROOT = '"${KIT_REMOTE_DIR:-$HOME/.kit-remote}"'
REMOTE_BUNDLE = "bench.kitbundle"
# --install's environment there: it sees the system's packages (JetPack's TensorRT and OpenCV).
REMOTE_VENV = f"{REMOTE_ROOT}/venv"
# The device kind whose extra (cpu, coral, jetson) --install installs: a Jetson by its L4T
# release file, a Coral by its PCIe device or its USB vendor id (1a6e before its firmware loads).
DEVICE_KIND = ("kind=cpu; if [ -e /etc/nv_tegra_release ]; then kind=jetson; elif [ -e /dev/apex_0 ] || "
               "grep -qsx 1a6e /sys/bus/usb/devices/*/idVendor; then kind=coral; fi")
CONNECT_SECONDS = 15
STEP_SECONDS = 600  # any one remote step beyond this is a lost device (bench adds its own rounds' time)
SLOW_LINK_BYTES_PER_S = 1e6  # pushing files may take their size at this rate (a weak Wi-Fi) beyond STEP_SECONDS
REMOTE_MARGIN_SECONDS = 30  # the device ends its own step this much before the workstation gives it up
RUNTIMES_PER_MODEL = 2  # e.g. an .onnx on ONNX Runtime and TensorRT, a .tflite on LiteRT and the Edge TPU
VARIANT_OVERHEAD_SECONDS = 60  # a variant's process start-up, load and fidelity pass on a slow board
TARGET = re.compile(r"^(?:ssh://)?(?:(?P<user>[^@/:\s]+)@)?(?P<host>\[[0-9a-fA-F:]+\]|[^@/:\s\[\]]+)"
                    r"(?::(?P<port>\d{1,5}))?/?$")


@dataclass(frozen=True)
class Device:
    user: str | None
    host: str
    port: int | None

    @property
    def name(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}{':' + str(self.port) if self.port else ''}"

    @classmethod
    def parse(cls, text: str) -> Device:
        match = TARGET.match(text.strip())
        if match is None or (match["port"] and not 0 < int(match["port"]) < 65536):
            raise InputError(f"expected a device as [ssh://]user@host[:port], found {text!r}.",
                             hint="E.g. --on pi@raspberrypi.local or --on ssh://nvidia@10.0.0.5:2222")
        return cls(match["user"], match["host"].strip("[]"), int(match["port"]) if match["port"] else None)


class RemoteError(KitError):
    """A device's step failed; the message names the device (exit 1: a device failed the run,
    not the command's input)."""

    exit_code = 1


def ssh_command(device: Device, ssh_options: list[str], remote: str) -> list[str]:
    """``ssh`` running ``remote`` (a shell command line) on ``device``, non-interactively."""
    command = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_SECONDS}"]
    for option in ssh_options:
        command += ["-o", option]
    if device.port:
        command += ["-p", str(device.port)]
    return [*command, f"{device.user}@{device.host}" if device.user else device.host, remote]


def run_on(device: Device, ssh_options: list[str], remote: str, *, data: bytes | None = None,
           timeout: float = STEP_SECONDS, doing: str) -> str:
    """``remote`` on the device; its stdout, or a RemoteError naming the device and the step."""
    try:
        done = subprocess.run(ssh_command(device, ssh_options, remote), input=data, capture_output=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RemoteError(f"{device.name}: {doing} took more than {timeout:.0f} s; the device was given up.",
                          hint="Check the connection, or that the device is not busy.") from None
    except FileNotFoundError:
        raise InputError("--on needs the OpenSSH client (ssh), which is not installed here.",
                         hint="Install it: apt install openssh-client (macOS and Windows 10+ have it).") from None
    if done.returncode == 255:  # ssh's own failure: the connection, not the remote command
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise RemoteError(f"{device.name}: could not connect ({reason[-1] if reason else 'ssh failed'}).",
                          hint="Check the address, and that ssh to it works without a password (a key).")
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise RemoteError(f"{device.name}: {doing} failed (exit {done.returncode}): "
                          f"{lines[-1] if lines else 'no message'}", hint="")
    return done.stdout.decode(errors="replace")


def bench_on(devices: list[str], models: list[str], *, ssh_options: list[str] | None = None,
             remote_kit: str = "kit", bench_args: list[str] | None = None, data: str | None = None,
             inputs: dict[str, str] | None = None, install: bool = False,
             progress=None) -> tuple[dict[str, Any] | None, list[str]]:
    """Every device benchmarked in parallel; the merged pytest-benchmark document (None when no
    device succeeded) and one error line per device that failed.

    ``inputs`` maps kit bench's flags to files here (``--data``, ``--pipeline``): they are pushed
    with the bundle and the devices' bench gets their copies. ``install`` puts this kit on a
    device whose kit is missing or another version."""
    parsed = [Device.parse(text) for text in devices]
    say = progress or (lambda message: None)
    with tempfile.TemporaryDirectory(prefix="kit-remote.") as scratch:
        archive = _archive(models, Path(scratch), data, say)
        inputs, bench_args = inputs or {}, bench_args or []
        job = Job(archive.read_bytes(), _inputs_archive(inputs, Path(scratch)), sorted(inputs.items()),
                  ssh_options or [], remote_kit, bench_args,
                  _bench_seconds(bench_args, _variant_count(archive), pipeline="--pipeline" in inputs),
                  _Once(lambda: _kit_wheel(Path(scratch), say)) if install else None, say)
        lock = threading.Lock()
        errors: list[str] = []

        def one(device: Device) -> dict[str, Any] | None:
            try:
                return job.run(device)
            except KitError as error:
                with lock:
                    errors.append(f"{error.message}" + (f" {error.hint}" if error.hint else ""))
                return None

        with ThreadPoolExecutor(max_workers=len(parsed)) as pool:
            documents = list(pool.map(one, parsed))
    found = [(device, document) for device, document in zip(parsed, documents) if document]
    return (merge(found) if found else None), errors


class _Once:
    """``make()`` called by the first thread that asks, its value shared by all (one wheel built
    for every device that needs it, and none when no device does)."""

    def __init__(self, make):
        self.make, self.lock, self.value, self.error = make, threading.Lock(), None, None

    def __call__(self):
        with self.lock:
            if self.error is not None:  # a failure is not retried by every device in turn
                raise self.error
            if self.value is None:
                try:
                    self.value = self.make()
                except KitError as error:
                    self.error = error
                    raise
            return self.value


def _archive(models: list[str], scratch: Path, data: str | None, say) -> Path:
    """The bundle to push as one .tar.gz: a bundle as it is (verified first, golden files and
    all), or the models bundled on the fly."""
    from kit.deploy.bundle import is_bundle, make_bundle, open_bundle, write_archive

    path = scratch / f"{REMOTE_BUNDLE}.tar.gz"
    if len(models) == 1 and is_bundle(models[0]):
        with open_bundle(models[0]) as bundle:
            say(f"archiving {models[0]}")
            write_archive({REMOTE_BUNDLE: bundle.root}, path)
        return path
    if any(is_bundle(model) for model in models):
        raise InputError("--on takes one bundle, or model files to bundle; found a bundle among other models.",
                         hint="Give the bundle alone.")
    say("bundling the models for the devices")
    return make_bundle(models, path, data=data, archive=True, progress=say)


def _variant_count(archive: Path) -> int:
    """The models in the bundle about to be pushed (its manifest, read from the archive)."""
    import tarfile

    with tarfile.open(archive, "r:gz") as tar:
        member = tar.extractfile(f"{REMOTE_BUNDLE}/manifest.json")
        return len(json.load(member)["models"]) if member else 1


def _bench_seconds(bench_args: list[str], models: int, pipeline: bool = False) -> float:
    """How long the devices' doctor and bench may take before the device is given up: every
    variant's timed phases (the rounds, and the concurrent callers of --streams and the frames of
    --pipeline as long again), a model on each --runtime given (else RUNTIMES_PER_MODEL), with
    room for start-up and the fidelity pass."""
    seconds = 2.0  # kit bench's default --max-time
    for flag in ("--max-time", "--sustained"):
        if flag in bench_args:
            seconds = float(bench_args[bench_args.index(flag) + 1])
    runtimes = len(bench_args[bench_args.index("--runtime") + 1].split(",")) if "--runtime" in bench_args \
        else RUNTIMES_PER_MODEL
    phases = 1 + ("--streams" in bench_args) + pipeline
    return STEP_SECONDS + models * runtimes * (phases * seconds + VARIANT_OVERHEAD_SECONDS)


def _push_seconds(size: int) -> float:
    return STEP_SECONDS + size / SLOW_LINK_BYTES_PER_S


def _inputs_archive(inputs: dict[str, str], scratch: Path) -> bytes | None:
    """The benchmark's input files and folders (--data, --pipeline) as one .tar.gz, each under
    its flag's name (two inputs may share a file name); random:N and the like are not files."""
    from kit.deploy.bundle import write_archive

    trees = {f"{flag.strip('-')}/{Path(path).name}": Path(path).resolve() for flag, path in inputs.items()
             if Path(path).exists()}
    if not trees:
        return None
    # Links followed: a linked file or class folder goes as what it holds (the device has no target).
    write_archive(trees, scratch / "inputs.tar.gz", follow_links=True)  # tar makes the flags' folders
    return (scratch / "inputs.tar.gz").read_bytes()


SOURCE_LEFT_OUT = (".*", "build", "dist", "*.egg-info", "__pycache__", "venv", "tests", "benchmarks", "examples")


def _kit_wheel(scratch: Path, say) -> Path:
    """This kit as a wheel for --install: built from its source tree when it runs from one (a
    checkout, an editable install), else the same version fetched by pip from this machine's index."""
    import sys

    import kit

    source, folder = Path(kit.__file__).resolve().parents[1], scratch / "wheel"
    if (source / "pyproject.toml").is_file():
        say(f"building the kit's wheel from {source}")
        # From a copy: setuptools writes build/ and the egg-info into the tree it builds, and packs
        # what an earlier build left in build/lib.
        copy = shutil.copytree(source, scratch / "source", ignore=shutil.ignore_patterns(*SOURCE_LEFT_OUT))
        command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(folder), str(copy)]
    else:
        say(f"fetching edge-inference-kit {__version__}")
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
                   "-d", str(folder), f"edge-inference-kit=={__version__}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=STEP_SECONDS)
    except subprocess.TimeoutExpired:
        done = None
    wheels = sorted(folder.glob("edge_inference_kit-*.whl"))
    if done is None or done.returncode or not wheels:
        reason = (done.stderr.strip().splitlines() or ["no wheel made"])[-1] if done else "pip took too long"
        raise KitError(f"--install needs this kit as a wheel, which pip could not make: {reason}",
                       hint="Install the kit on the devices yourself; the error without --install says how.")
    return wheels[0]


def _locked(script: str, seconds: float | None = None) -> str:
    """``script`` under the device's lock; flock -n: another run holding the board fails at once
    (exit 75) instead of sharing it. With ``seconds``, the device ends the script itself after
    them (coreutils' or BusyBox's timeout, where there is one), so nothing keeps running there,
    holding the lock, once the workstation has given the device up."""
    limit = f"$(command -v timeout >/dev/null && echo timeout {int(seconds)}) " if seconds else ""
    return f"mkdir -p {REMOTE_ROOT} && flock -n -E 75 {REMOTE_ROOT}/lock {limit}sh -c {shlex.quote(script)}"


@dataclass(frozen=True)
class Job:
    """What every device gets: the bundle, the inputs, the bench's flags; ``run`` does one device."""

    bundle: bytes  # the .tar.gz of the bundle
    inputs: bytes | None  # the .tar.gz of the input files, if any
    input_flags: list[tuple[str, str]]  # (flag, path here): files go there as copies
    ssh_options: list[str]
    remote_kit: str
    bench_args: list[str]
    budget: float  # seconds the devices' doctor and bench may take
    wheel: Any  # with --install: a call giving this kit's wheel; else None
    say: Any

    def run(self, device: Device) -> dict[str, Any]:
        kit = self._kit_there(device)
        folder = f"{REMOTE_ROOT}/{uuid.uuid4().hex[:12]}"
        bundle = f"{folder}/{REMOTE_BUNDLE}"
        try:
            self.say(f"{device.name}: pushing the bundle ({len(self.bundle) / 1e6:.1f} MB)")
            run_on(device, self.ssh_options, f"mkdir -p {folder} && tar -xzf - -C {folder}", data=self.bundle,
                   doing="pushing the bundle", timeout=_push_seconds(len(self.bundle)))
            if self.inputs:
                self.say(f"{device.name}: pushing the inputs ({len(self.inputs) / 1e6:.1f} MB)")
                run_on(device, self.ssh_options, f"mkdir -p {folder}/inputs && tar -xzf - -C {folder}/inputs",
                       data=self.inputs, doing="pushing the inputs", timeout=_push_seconds(len(self.inputs)))
            if kit is None:
                kit = self._install(device, folder, bundle)
            inputs = [f"{flag} {folder}/inputs/{flag.strip('-')}/{shlex.quote(Path(path).name)}"
                      if Path(path).exists() else f"{flag} {shlex.quote(path)}" for flag, path in self.input_flags]
            bench = " ".join([*inputs, *map(shlex.quote, self.bench_args)])
            steps = (f"{kit} doctor {bundle} --json > {folder}/doctor.json; "
                     f"{kit} bench {bundle} --json {bench} > {folder}/bench.json")
            self.say(f"{device.name}: kit doctor, then kit bench")
            run_on(device, self.ssh_options, _locked(steps, self.budget - REMOTE_MARGIN_SECONDS),
                   doing="kit doctor and kit bench", timeout=self.budget)
            bench = json.loads(run_on(device, self.ssh_options, f"cat {folder}/bench.json",
                                      doing="fetching the results"))
            doctor = json.loads(run_on(device, self.ssh_options, f"cat {folder}/doctor.json",
                                       doing="fetching doctor's report"))
        except RemoteError as error:
            if "(exit 75)" in error.message:
                raise RemoteError(f"{device.name}: another kit bench --on is running there (its lock is held).",
                                  hint="Wait for it, or benchmark another device.") from None
            raise
        finally:
            try:
                run_on(device, self.ssh_options, f"rm -rf {folder}", doing="cleaning up", timeout=CONNECT_SECONDS * 4)
            except KitError:
                pass  # a device that dropped away keeps its scratch folder; the next run's is another
        bench["kit_doctor"] = doctor
        return bench

    def _kit_there(self, device: Device) -> str | None:
        """The device's kit command at this version: the one given, else one --install put there
        earlier; None when --install is to put it there; else the exact install command."""
        self.say(f"{device.name}: checking the kit there")
        candidates = [self.remote_kit, f"{REMOTE_VENV}/bin/kit"]
        answers = run_on(device, self.ssh_options,
                         "; ".join(f'echo "$({kit} --version 2>/dev/null)"' for kit in candidates),
                         doing="kit --version", timeout=CONNECT_SECONDS * 4).splitlines()
        found = [answer.strip().removeprefix("kit ").strip() for answer in answers]
        for kit, version in zip(candidates, found):
            if version == __version__:
                return kit
        if self.wheel is not None:
            return None
        raise RemoteError(f"{device.name}: the kit there is {found[0] or 'missing'}, this one is {__version__}.",
                          hint=f"Add --install, or on the device: pip install \"edge-inference-kit[KIND]=={__version__}"
                               "\" (KIND: cpu, coral or jetson; or the wheel pip wheel --no-deps . makes here).")

    def _install(self, device: Device, folder: str, bundle: str) -> str:
        """This kit's wheel installed in REMOTE_VENV on the device with the extra of its kind (cpu,
        coral, jetson: the runtimes pip has for it); the kit command there. The bundle's pinned
        requirements are not forced on it (another Python may have no such release): kit doctor
        checks the golden outputs on whatever it gets."""
        wheel = self.wheel()
        self.say(f"{device.name}: installing kit {__version__} there ({wheel.stat().st_size / 1e6:.1f} MB wheel)")
        run_on(device, self.ssh_options, f"cat > {folder}/{shlex.quote(wheel.name)}", data=wheel.read_bytes(),
               doing="pushing the kit's wheel", timeout=_push_seconds(wheel.stat().st_size))
        # A venv without a working pip (Debian's python3 -m venv without python3-venv leaves one)
        # is made again, beside it and then moved in, so a failure never leaves half of one.
        script = (f"{DEVICE_KIND}; venv={REMOTE_VENV}; "
                  'if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then '
                  'rm -rf "$venv" "$venv.new"; '
                  'python3 -m venv --system-site-packages "$venv.new" >&2 || exit 3; '
                  '"$venv.new/bin/python" -m pip --version >/dev/null 2>&1 || exit 3; '
                  'mv "$venv.new" "$venv"; fi; '
                  '"$venv/bin/python" -m pip install --quiet --disable-pip-version-check '
                  f'{folder}/"{wheel.name}[$kind]" || exit 4; echo "$kind"')
        try:
            kind = run_on(device, self.ssh_options, _locked(script, STEP_SECONDS - REMOTE_MARGIN_SECONDS),
                          doing="installing the kit").strip()
        except RemoteError as error:
            hints = {"(exit 3)": "It needs python3 with venv there (Debian, Ubuntu, JetPack: sudo apt install "
                                 "python3-venv).",
                     "(exit 4)": "pip's last line is above; the device needs Python 3.10 or newer and a package "
                                 "index it reaches for the runtimes."}
            hint = next((text for code, text in hints.items() if code in error.message), None)
            if hint is None:
                raise
            raise RemoteError(error.message, hint=hint) from None
        self.say(f"{device.name}: installed kit {__version__} with the {kind} runtimes")
        return f"{REMOTE_VENV}/bin/kit"


def merge(found: list[tuple[Device, dict[str, Any]]]) -> dict[str, Any]:
    """One document from the devices': each entry named ``variant @ device`` and carrying the
    device's fingerprint (hostname, board, CPU, runtimes, power mode) and doctor's verdict."""
    document = {key: value for key, value in found[0][1].items() if key not in ("benchmarks", "kit_doctor")}
    document["benchmarks"], document["kit_devices"] = [], {}
    for device, result in found:
        environment = result["machine_info"]["kit_environment"]
        fingerprint = {key: environment.get(key) for key in ("hostname", "board", "cpu", "machine", "os", "jetpack",
                                                             "power_mode", "jetson_clocks", "packages")}
        doctor = result["kit_doctor"]
        document["kit_devices"][device.name] = {  # doctor's verdict and what it found wrong there
            "fingerprint": fingerprint, "ready": doctor.get("ready"),
            "problems": [finding for finding in doctor.get("findings", []) if finding.get("status") == "problem"]}
        for entry in result["benchmarks"]:
            entry = {**entry, "name": f"{entry['name']} @ {device.name}"}
            entry["extra_info"] = {**entry["extra_info"], "kit": {**entry["extra_info"]["kit"], "device": device.name,
                                                                 "fingerprint": fingerprint}}
            document["benchmarks"].append(entry)
    return document

