"""kit doctor's device checks: OpenCV's video I/O from its build information, Raspberry Pi
throttling flags (vcgencmd's documented bits), the Edge TPU with a delegate library that loads
and finds no device (the stub libedgetpu), and a device with no bundle."""

import json
import os
import shutil

import pytest
from helpers import run_kit

from kit.deploy.doctor import throttling, video_backends

# cv2.getBuildInformation()'s Video I/O section as a Jetson's OpenCV (JetPack 6) prints it.
JETSON_VIDEO_IO = """
  Video I/O:
    DC1394:                      NO
    FFMPEG:                      YES
      avcodec:                   YES (58.54.100)
    GStreamer:                   YES (1.20.3)
    v4l/v4l2:                    YES (linux/videodev2.h)

  Parallel framework:            pthreads
"""


def test_video_backends_from_the_build_information():
    assert video_backends(JETSON_VIDEO_IO) == {"FFmpeg": True, "GStreamer": True, "V4L2": True}
    assert video_backends(JETSON_VIDEO_IO.replace("YES (1.20.3)", "NO")) == {"FFmpeg": True, "GStreamer": False,
                                                                            "V4L2": True}
    import cv2

    assert video_backends(cv2.getBuildInformation())["FFmpeg"]  # pip's OpenCV bundles FFmpeg


@pytest.mark.parametrize("answer, now, since_boot", [
    ("throttled=0x50005", ["under-voltage", "throttled"], ["under-voltage", "throttled"]),  # the docs' example
    ("throttled=0x50000", [], ["under-voltage", "throttled"]),
    ("throttled=0x0", [], []),
    ("throttled=0x80008", ["soft temperature limit"], ["soft temperature limit"]),
])
def test_raspberry_pi_throttling_bits(answer, now, since_boot):
    assert throttling(answer) == (now, since_boot)


def test_doctor_reads_vcgencmd_where_there_is_one(tmp_path):
    """A vcgencmd on PATH answering as a Pi that was under-volted since boot (the documentation's
    sample value, not a measurement)."""
    tool = tmp_path / "vcgencmd"
    tool.write_text("#!/bin/sh\n[ \"$1\" = get_throttled ] && echo throttled=0x50000\n")
    tool.chmod(0o755)
    ran = run_kit("doctor", "--json", env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"})
    assert ran.returncode == 0, ran.stderr  # a past event is worth knowing, not a fault now
    power = {f["area"]: f for f in json.loads(ran.stdout)["findings"]}["raspberry pi power"]
    assert power["status"] == "info" and "since boot: under-voltage, throttled" in power["detail"]


def test_doctor_without_a_bundle_describes_the_device():
    ran = run_kit("doctor")
    assert ran.returncode == 0 and ran.stdout.rstrip().endswith("ready")
    for line in ("python: Python 3.", "runtime onnxruntime:", "opencv:", "cpu:"):
        assert line in ran.stdout


def test_an_edge_tpu_library_without_a_device(stub_edgetpu_library, variant_models, digits_tflite, tmp_path):
    """libedgetpu loads and finds no Edge TPU: doctor says so, the bundle's Edge TPU model is not
    for this device, and run picks another model."""
    shutil.copyfile(digits_tflite["int8"].path, tmp_path / "digits_edgetpu.tflite")
    out = tmp_path / "e.kitbundle"
    assert run_kit("bundle", variant_models[0], str(tmp_path / "digits_edgetpu.tflite"), "-o", str(out)).returncode == 0
    env = {**os.environ, "LD_LIBRARY_PATH": str(stub_edgetpu_library.parent)}
    ran = run_kit("doctor", str(out), "--json", env=env)
    assert ran.returncode == 0, ran.stdout
    checks = {f["area"]: f for f in json.loads(ran.stdout)["findings"]}
    assert checks["runtime edgetpu"]["status"] == "info"
    assert "loaded but found no Edge TPU" in checks["runtime edgetpu"]["detail"]
    assert checks["model digits_edgetpu.tflite"]["status"] == "info"
    assert "not for this device" in checks["model digits_edgetpu.tflite"]["detail"]
    chosen = json.loads(run_kit("run", str(out), "--random", "--json", env=env).stdout)["bundle"]
    assert chosen["model"] == "digits.onnx"


# nvpmodel.conf's mode lines as NVIDIA's Jetson Orin Nano documentation shows them (a sample,
# not a device's file), and the status file nvpmodel writes.
NVPMODEL_CONF = """
< POWER_MODEL ID=0 NAME=15W >
CPU_ONLINE CORE_0 1
< POWER_MODEL ID=1 NAME=7W >
CPU_ONLINE CORE_0 1
"""


@pytest.mark.parametrize("status, named", [("pmode:0001", "7W (mode 1)"), ("pmode:0000", "15W (mode 0)"),
                                           ("pmode:0003", "mode 3"), ("something else", "something else")])
def test_jetson_power_mode_is_named_from_nvpmodel_conf(status, named):
    from kit.core.environment import power_mode

    assert power_mode(status, NVPMODEL_CONF) == named


def test_pinned_cpu_clocks_are_read_from_cpufreq(tmp_path):
    from kit.core.environment import clocks_locked

    def cpu(index, low, high):
        folder = tmp_path / f"cpu{index}" / "cpufreq"
        folder.mkdir(parents=True)
        (folder / "scaling_min_freq").write_text(f"{low}\n")
        (folder / "scaling_max_freq").write_text(f"{high}\n")

    assert clocks_locked(str(tmp_path)) is None  # no cpufreq: unknown
    cpu(0, 1510400, 1510400)
    assert clocks_locked(str(tmp_path)) is True
    cpu(1, 115200, 1510400)  # one core still scales
    assert clocks_locked(str(tmp_path)) is False
