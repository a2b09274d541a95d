"""kit bench --on user@host: the benchmark run on devices over SSH, the results brought home.

The system's OpenSSH client does the talking, so the user's ~/.ssh/config, keys and agent
apply (``ssh_options`` adds -o KEY=VALUE). Per device, in its own thread: check the remote
kit's version (the exact install command when it differs; nothing is installed), push the
bundle as one .tar.gz on ssh's stdin, run ``kit doctor`` and ``kit bench`` on it under a lock
(``flock``: two runs never share a board), pull the JSON back, remove the remote copy. A
device that fails is named with its error; the others' results are kept.
"""

from __future__ import annotations

import json
import re
import shlex
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
CONNECT_SECONDS = 15
STEP_SECONDS = 600  # any one remote step beyond this is a lost device (bench adds its own rounds' time)
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
             progress=None) -> tuple[dict[str, Any] | None, list[str]]:
    """Every device benchmarked in parallel; the merged pytest-benchmark document (None when no
    device succeeded) and one error line per device that failed."""
    parsed = [Device.parse(text) for text in devices]
    say = progress or (lambda message: None)
    with tempfile.TemporaryDirectory(prefix="kit-remote.") as scratch:
        archive = _archive(models, Path(scratch), data, say)
        payload = archive.read_bytes()
        lock = threading.Lock()
        errors: list[str] = []

        budget = _bench_seconds(bench_args or [], _variant_count(archive))

        def one(device: Device) -> dict[str, Any] | None:
            try:
                return _bench_device(device, payload, ssh_options or [], remote_kit, bench_args or [], budget, say)
            except KitError as error:
                with lock:
                    errors.append(f"{error.message}" + (f" {error.hint}" if error.hint else ""))
                return None

        with ThreadPoolExecutor(max_workers=len(parsed)) as pool:
            documents = list(pool.map(one, parsed))
    found = [(device, document) for device, document in zip(parsed, documents) if document]
    return (merge(found) if found else None), errors


def _archive(models: list[str], scratch: Path, data: str | None, say) -> Path:
    """The bundle to push as one .tar.gz: a bundle as it is (verified first, golden files and
    all), or the models bundled on the fly."""
    from kit.deploy.bundle import is_bundle, make_bundle, open_bundle, write_archive

    path = scratch / f"{REMOTE_BUNDLE}.tar.gz"
    if len(models) == 1 and is_bundle(models[0]):
        with open_bundle(models[0]) as bundle:
            say(f"archiving {models[0]}")
            write_archive(bundle.root, path, REMOTE_BUNDLE)
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


def _bench_seconds(bench_args: list[str], models: int) -> float:
    """How long the devices' doctor and bench may take before the device is given up: the
    rounds' time of every variant (a model on up to RUNTIMES_PER_MODEL runtimes), with room
    for start-up and the fidelity pass."""
    seconds = 2.0  # kit bench's default --max-time
    for flag in ("--max-time", "--sustained"):
        if flag in bench_args:
            seconds = float(bench_args[bench_args.index(flag) + 1])
    return STEP_SECONDS + models * RUNTIMES_PER_MODEL * (seconds + VARIANT_OVERHEAD_SECONDS)


def _bench_device(device: Device, payload: bytes, ssh_options: list[str], remote_kit: str,
                  bench_args: list[str], budget: float, say) -> dict[str, Any]:
    kit = remote_kit
    say(f"{device.name}: checking the kit there")
    version = run_on(device, ssh_options, f"{kit} --version", doing="kit --version", timeout=CONNECT_SECONDS * 4)
    found = version.strip().removeprefix("kit ").strip()
    if found != __version__:
        raise RemoteError(f"{device.name}: the kit there is {found or 'missing'}, this one is {__version__}.",
                          hint=f"On the device: pip install \"edge-inference-kit=={__version__}\" (or the wheel "
                               "pip wheel --no-deps . makes here), then its runtimes from the bundle's "
                               "requirements/.")
    job = f"{REMOTE_ROOT}/{uuid.uuid4().hex[:12]}"
    say(f"{device.name}: pushing the bundle ({len(payload) / 1e6:.1f} MB)")
    run_on(device, ssh_options, f"mkdir -p {job} && tar -xzf - -C {job}", data=payload, doing="pushing the bundle")
    bundle = f"{job}/{REMOTE_BUNDLE}"
    steps = " && ".join([
        f"{kit} doctor {bundle} --json > {job}/doctor.json; echo $? > {job}/doctor.rc",
        f"{kit} bench {bundle} --json {' '.join(map(shlex.quote, bench_args))} > {job}/bench.json",
    ])
    try:
        say(f"{device.name}: kit doctor, then kit bench")
        # flock -n: another kit bench --on holding this board fails at once instead of sharing it.
        run_on(device, ssh_options, f"flock -n -E 75 {REMOTE_ROOT}/lock sh -c {shlex.quote(steps)}",
               doing="kit doctor and kit bench", timeout=budget)
        bench = json.loads(run_on(device, ssh_options, f"cat {job}/bench.json", doing="fetching the results"))
        doctor = json.loads(run_on(device, ssh_options, f"cat {job}/doctor.json", doing="fetching doctor's report"))
    except RemoteError as error:
        if "(exit 75)" in error.message:
            raise RemoteError(f"{device.name}: another kit bench --on is running there (its lock is held).",
                              hint="Wait for it, or benchmark another device.") from None
        raise
    finally:
        try:
            run_on(device, ssh_options, f"rm -rf {job}", doing="cleaning up", timeout=CONNECT_SECONDS * 4)
        except KitError:
            pass  # a device that dropped away keeps its scratch folder; the next run's is another
    bench["kit_doctor"] = doctor
    return bench


def merge(found: list[tuple[Device, dict[str, Any]]]) -> dict[str, Any]:
    """One document from the devices': each entry named ``variant @ device`` and carrying the
    device's fingerprint (hostname, board, CPU, runtimes, power mode) and doctor's verdict."""
    document = {key: value for key, value in found[0][1].items() if key not in ("benchmarks", "kit_doctor")}
    document["benchmarks"], document["kit_devices"] = [], {}
    for device, result in found:
        environment = result["machine_info"]["kit_environment"]
        fingerprint = {key: environment.get(key) for key in ("hostname", "board", "cpu", "machine", "os", "jetpack",
                                                             "power_mode", "jetson_clocks", "packages")}
        document["kit_devices"][device.name] = {"fingerprint": fingerprint,
                                                "ready": result["kit_doctor"].get("ready")}
        for entry in result["benchmarks"]:
            entry = {**entry, "name": f"{entry['name']} @ {device.name}"}
            entry["extra_info"] = {**entry["extra_info"], "kit": {**entry["extra_info"]["kit"], "device": device.name,
                                                                 "fingerprint": fingerprint}}
            document["benchmarks"].append(entry)
    return document

