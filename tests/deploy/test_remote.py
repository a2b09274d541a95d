"""kit bench --on through real OpenSSH: sshd on 127.0.0.1 (high ports, throw-away keys) as the
devices, the kit of this checkout as the kit there. One device, two in parallel, one that is
gone (the other's results kept), a kit of another version, a board whose lock is held, the
benchmark's input files pushed, and --install on a device without the kit (a real pip install
of this checkout's wheel there, from the package index)."""

import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from helpers import KIT, run_kit
from test_stream import classifier, video  # noqa: F401 (fixtures)

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def devices(tmp_path_factory):
    """Three sshd on 127.0.0.1 (devices, each its own KIT_REMOTE_DIR; the third only for --install);
    yields (ports, ssh options, the folder of the devices' scratch folders)."""
    if not Path(SSHD).is_file() or os.geteuid() != 0:
        pytest.skip("needs the OpenSSH server and root (.ci/run installs openssh-server)")
    folder = tmp_path_factory.mktemp("sshd")
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / key)], check=True)
    shutil.copyfile(folder / "client_key.pub", folder / "authorized_keys")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
    ports, servers = [free_port(), free_port(), free_port()], []
    for port in ports:
        config = folder / f"sshd_{port}"
        config.write_text(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder}/host_key\n"
                          f"AuthorizedKeysFile {folder}/authorized_keys\nPidFile {folder}/sshd_{port}.pid\n"
                          "StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                          f'SetEnv KIT_REMOTE_DIR="{folder}/device {port}"\n')  # its own scratch, a space in it
        servers.append(subprocess.Popen([SSHD, "-D", "-f", str(config), "-E", str(folder / f"log_{port}")]))
    options = [f"IdentityFile={folder}/client_key", "StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null",
               "LogLevel=ERROR"]
    deadline = time.monotonic() + 20
    for port in ports:  # bounded: up when it accepts a connection
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
    yield ports, options, folder
    for server in servers:
        server.terminate()
        server.wait(10)


def on(*targets, options, extra=()):
    flags = [flag for option in options for flag in ("--ssh-option", option)]
    return [*(flag for target in targets for flag in ("--on", target)), *flags, "--remote-kit", str(KIT), *extra]


def test_a_bundle_benchmarked_on_a_device(devices, bundle, tmp_path):
    (port, *_), options, folder = devices
    target = f"root@127.0.0.1:{port}"
    ran = run_kit("bench", bundle, *on(target, options=options, extra=("--max-time", "0.1", "--threads", "1")),
                  "--save-json", tmp_path / "devices.json")
    assert ran.returncode == 0, ran.stderr
    assert f"digits.onnx[onnxruntime] @ {target}" in ran.stdout
    assert f"{target}: " in ran.stdout and f"host {platform.node()}" in ran.stdout
    document = json.loads((tmp_path / "devices.json").read_text())
    device = document["kit_devices"][target]
    assert device["ready"] is True and device["fingerprint"]["hostname"] == platform.node()
    names = [b["name"] for b in document["benchmarks"]]
    assert names == [f"{name}[{runtime}] @ {target}" for name, runtime in
                     (("digits.onnx", "onnxruntime"), ("digits.int8.onnx", "onnxruntime"),
                      ("digits.int8.tflite", "tflite"))]
    assert all(b["extra_info"]["kit"]["device"] == target for b in document["benchmarks"])
    assert sorted(p.name for p in (folder / f"device {port}").iterdir()) == ["lock"]  # nothing left there


def test_two_devices_in_parallel_and_one_gone(devices, variant_models):
    (first, second, _), options, folder = devices
    both = run_kit("bench", variant_models[0], *on(f"root@127.0.0.1:{first}", f"ssh://root@127.0.0.1:{second}",
                                                   options=options, extra=("--max-time", "0.1")), "--json")
    assert both.returncode == 0, both.stderr
    assert set(json.loads(both.stdout)["kit_devices"]) == {f"root@127.0.0.1:{first}", f"root@127.0.0.1:{second}"}
    gone = free_port()
    one = run_kit("bench", variant_models[0], *on(f"root@127.0.0.1:{first}", f"root@127.0.0.1:{gone}",
                                                  options=options, extra=("--max-time", "0.1")), "--json")
    assert one.returncode == 1  # a device failed; the other's results are kept
    assert f"error: root@127.0.0.1:{gone}: could not connect" in one.stderr
    assert list(json.loads(one.stdout)["kit_devices"]) == [f"root@127.0.0.1:{first}"]


def test_a_kit_of_another_version_gets_the_install_command(devices, variant_models, tmp_path):
    (port, *_), options, folder = devices
    other = tmp_path / "kit"
    other.write_text("#!/bin/sh\necho kit 0.0.1\n")
    other.chmod(0o755)
    flags = [flag for option in options for flag in ("--ssh-option", option)]
    ran = run_kit("bench", variant_models[0], "--on", f"root@127.0.0.1:{port}", *flags, "--remote-kit", other)
    assert ran.returncode == 1
    assert f"root@127.0.0.1:{port}: the kit there is 0.0.1, this one is" in ran.stderr
    assert 'Add --install, or on the device: pip install "edge-inference-kit[KIND]==' in ran.stderr


def test_a_board_in_use_is_not_shared(devices, variant_models):
    (port, *_), options, folder = devices
    lock = folder / f"device {port}" / "lock"
    lock.parent.mkdir(exist_ok=True)
    # -o: flock itself holds the lock, not its sleep; the process group goes at the end all the same.
    holder = subprocess.Popen(["flock", "-o", str(lock), "sleep", "60"], start_new_session=True)
    try:
        time.sleep(0.3)
        ran = run_kit("bench", variant_models[0], *on(f"root@127.0.0.1:{port}", options=options))
    finally:
        os.killpg(holder.pid, signal.SIGTERM)
        holder.wait(10)
    assert ran.returncode == 1 and "another kit bench --on is running there (its lock is held)" in ran.stderr


@pytest.mark.parametrize("extra, message", [
    (["--on", "user@host:99999"], "expected a device as [ssh://]user@host[:port], found 'user@host:99999'"),
    (["--on", "a@b", "--baseline", "x.onnx"], "--baseline names a model here; --on benchmarks the bundle's models, "
                                              "the first of them as the baseline."),
    (["--on", "a@b", "--data", "typo.npz"], "--data typo.npz does not exist."),
    (["--on", "a@b", "--pipeline", "random:4"], "--pipeline random:4 does not exist."),
    (["--ssh-option", "Port=22"], "--ssh-option, --remote-kit and --install go with --on user@host."),
    (["--install"], "--ssh-option, --remote-kit and --install go with --on user@host."),
])
def test_bad_device_arguments(variant_models, extra, message):
    ran = run_kit("bench", variant_models[0], *extra)
    assert ran.returncode == 2 and message in ran.stderr, ran.stderr


def test_compare_matches_a_device_by_its_fingerprint(devices, variant_models, tmp_path):
    """The same board reached by another address (localhost for 127.0.0.1) is the same device."""
    (port, *_), options, folder = devices
    first = run_kit("bench", variant_models[0], *on(f"root@127.0.0.1:{port}", options=options,
                                                    extra=("--max-time", "0.1")), "--save-json", tmp_path / "old.json")
    assert first.returncode == 0, first.stderr
    again = run_kit("bench", variant_models[0], *on(f"root@localhost:{port}", options=options,
                                                    extra=("--max-time", "0.1")), "--compare", tmp_path / "old.json",
                    "--compare-fail", "median:1000%", "--json")
    assert again.returncode == 0, again.stderr
    regressions = json.loads(again.stdout)["kit_regressions"]
    assert [row["name"] for row in regressions] == [f"digits.onnx[onnxruntime] @ root@localhost:{port}"]
    assert regressions[0]["median_ratio"] > 0 and not regressions[0]["latency_regression"]


def test_a_long_benchmark_is_not_taken_for_a_lost_device():
    """The devices' step may last as long as its variants' rounds need (--sustained 300 on a
    bundle of three models), not a fixed ten minutes."""
    from kit.bench.remote import RUNTIMES_PER_MODEL, STEP_SECONDS, VARIANT_OVERHEAD_SECONDS, _bench_seconds

    assert _bench_seconds(["--sustained", "300", "--power"], 3) == \
        STEP_SECONDS + 3 * RUNTIMES_PER_MODEL * (300 + VARIANT_OVERHEAD_SECONDS)
    assert _bench_seconds([], 1) == STEP_SECONDS + RUNTIMES_PER_MODEL * (2.0 + VARIANT_OVERHEAD_SECONDS)
    # four targets, each timed twice (--streams) and its frames once more (--pipeline)
    assert _bench_seconds(["--runtime", "onnxruntime:CPU,a,b,c", "--streams", "2", "--max-time", "10"], 1,
                          pipeline=True) == STEP_SECONDS + 4 * (3 * 10 + VARIANT_OVERHEAD_SECONDS)


def test_the_inputs_go_with_the_bundle(devices, classifier, digits, video, tmp_path):  # noqa: F811
    """--data and --pipeline name files here; the devices get copies and measure the same accuracy."""
    (port, *_), options, folder = devices
    here = run_kit("bench", classifier, "--data", digits.test, "--max-time", "0.1", "--json")
    assert here.returncode == 0, here.stderr
    linked = tmp_path / "held out.npz"  # a link, and a space: the device gets the file it points to
    linked.symlink_to(digits.test)
    there = run_kit("bench", classifier, *on(f"root@127.0.0.1:{port}", options=options),
                    "--data", linked, "--pipeline", video, "--max-time", "0.1", "--json")
    assert there.returncode == 0, there.stderr
    entries = {entry["name"]: entry["extra_info"]["kit"] for entry in json.loads(there.stdout)["benchmarks"]}
    target = f"root@127.0.0.1:{port}"
    model = entries[f"digits.onnx[onnxruntime] @ {target}"]
    local = json.loads(here.stdout)["benchmarks"][0]["extra_info"]["kit"]
    assert model["accuracy"]["top1"] == local["accuracy"]["top1"] > 0.9
    assert model["accuracy"]["count"] == local["accuracy"]["count"] > 300
    pipeline = entries[f"digits.onnx[onnxruntime] pipeline @ {target}"]["pipeline"]
    assert pipeline["source"].startswith("video digits.avi") and pipeline["frames_dropped"] == 0
    assert 0 < pipeline["outside_model"] < 1
    assert sorted(p.name for p in (folder / f"device {port}").iterdir()) == ["lock"]


def test_install_puts_this_kit_on_a_device_without_it(devices, variant_models, tmp_path):
    """No kit there: the error says to add --install; with it, this checkout's wheel with the cpu
    extra goes into the device's own environment (a broken one there is made again), which the
    next run uses."""
    *_, port = devices[0]
    options, folder = devices[1:]
    target = f"root@127.0.0.1:{port}"
    missing = ("--remote-kit", str(tmp_path / "no-kit-here"), "--max-time", "0.1")
    flags = [flag for option in options for flag in ("--ssh-option", option)]
    refused = run_kit("bench", variant_models[0], "--on", target, *flags, *missing)
    assert refused.returncode == 1 and f"{target}: the kit there is missing, this one is" in refused.stderr
    assert "Add --install" in refused.stderr

    venv = folder / f"device {port}" / "venv"
    # What Debian's python3 -m venv leaves without python3-venv: a python, no pip. It is made again.
    subprocess.run(["python3", "-m", "venv", "--without-pip", venv], check=True)
    installed = run_kit("bench", variant_models[0], "--on", target, *flags, *missing, "--install", "--json")
    assert installed.returncode == 0, installed.stderr
    assert [entry["name"] for entry in json.loads(installed.stdout)["benchmarks"]] == \
        [f"digits.onnx[onnxruntime] @ {target}"]
    version = subprocess.run([venv / "bin" / "kit", "--version"], capture_output=True, text=True)
    assert version.stdout.strip() == f"kit {kit_version()}"
    probe = subprocess.run([venv / "bin" / "python", "-c", "import onnxruntime, kit; print(kit.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path,
                           env={key: value for key, value in os.environ.items() if key != "PYTHONPATH"})
    assert probe.returncode == 0 and str(venv) in probe.stdout  # the installed wheel, not this checkout

    installed_at = (venv / "bin" / "kit").stat().st_mtime_ns
    again = run_kit("bench", variant_models[0], "--on", target, *flags, *missing)  # no --install: it is there
    assert again.returncode == 0, again.stderr
    assert (venv / "bin" / "kit").stat().st_mtime_ns == installed_at  # found, not installed again


def kit_version() -> str:
    from kit._version import __version__

    return __version__


def test_the_merged_report_names_each_device_and_doctors_problems_there():
    """Two devices' documents become one: names ``variant @ device``, each device's fingerprint,
    and what kit doctor found wrong there in the table's notes (it may explain the numbers)."""
    from kit.bench.driver import BenchReport
    from kit.bench.remote import Device, merge
    from kit.bench.report import notes

    def document(hostname, findings):
        environment = {"hostname": hostname, "board": "Raspberry Pi 5 Model B Rev 1.0", "cpu": {"model": "Cortex-A76"},
                       "machine": "aarch64", "os": "Debian 12", "packages": {"onnxruntime": "1.20.1"}}
        return {"machine_info": {"kit_environment": environment}, "kit_doctor": {"ready": False, "findings": findings},
                "benchmarks": [{"name": "m.onnx[onnxruntime]", "extra_info": {"kit": {"runtime": "onnxruntime"}}}]}

    hot = {"area": "raspberry pi power", "status": "problem", "detail": "under-voltage now", "fix": "Use the 27 W supply"}
    fine = {"area": "python", "status": "ok", "detail": "Python 3.11", "fix": ""}
    merged = merge([(Device.parse("pi@a"), document("a", [fine, hot])), (Device.parse("pi@b:2222"), document("b", []))])
    assert [entry["name"] for entry in merged["benchmarks"]] == ["m.onnx[onnxruntime] @ pi@a",
                                                                 "m.onnx[onnxruntime] @ pi@b:2222"]
    assert merged["kit_devices"]["pi@a"]["problems"] == [hot] and merged["kit_devices"]["pi@b:2222"]["problems"] == []
    assert merged["benchmarks"][1]["extra_info"]["kit"]["fingerprint"]["hostname"] == "b"
    merged["benchmarks"] = []  # the notes on devices only
    lines = notes(BenchReport(merged))
    assert "pi@a: kit doctor: raspberry pi power: under-voltage now (Use the 27 W supply)" in lines
    assert lines[0] == "pi@a: Raspberry Pi 5 Model B Rev 1.0, host a, Debian 12, onnxruntime 1.20.1"
