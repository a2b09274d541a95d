"""Power, temperature and clock readers: the devices' tools' output parsed from samples
(labelled with where each comes from), Linux's files from a copy of their layout and from this
machine for real, and the summary over a measured window."""

import os
import subprocess
import time

import pytest

from kit.bench.samplers import LinuxSensors, Reading, Recorder, Sensors, parse_tegrastats, parse_vcgencmd, summarize

# A real tegrastats line from a Jetson AGX Orin Developer Kit on JetPack 7.2, as jetson_stats'
# tests record it (jtop/tests/test_06_tegra_parse.py): rails with three values, temperatures
# with two.
ORIN_JP7 = ("07-25-2026 09:08:28 RAM 20642/62817MB (lfb 1x2MB) "
            "CPU [23%@2201,10%@2201,4%@2201,14%@2201,30%@2201,18%@2201,10%@2201,10%@2201,33%@2201,7%@2201,5%@2201,"
            "27%@2201] EMC_FREQ 3%@3199 GR3D_FREQ 12%@[1300,1300] NVENC0 off NVDEC0 off NVJPG0 off NVJPG1 off VIC off "
            "OFA off NVDLA0 off NVDLA1 off PVA0_FREQ off APE 174 cpu@52.968C/52.968C soc2@48.406C/48.406C "
            "soc0@49.531C/49.531C gpu@47.625C/47.625C VDD_GPU_SOC 5139mW/5139mW/5139mW VDD_CPU_CV 3268mW/3268mW/3268mW "
            "VIN_SYS_5V0 5500mW/5500mW/5500mW")
# The Nano line of jetson_stats' tegrastats emulator (tests/tegrastats), its random loads fixed:
# milliwatts without the unit, on the POM_5V_IN rail.
NANO = ("RAM 330/3964MB (lfb 758x4MB) SWAP 0/1982MB (cached 0MB) CPU [12%@102,5%@102,0%@102,3%@102] EMC_FREQ 0% "
        "GR3D_FREQ 40% PLL@20.5C CPU@23C PMIC@100C GPU@22.5C AO@27C thermal@22.5C POM_5V_IN 933/933 "
        "POM_5V_GPU 0/0 POM_5V_CPU 84/84")
# The same emulator's Orin line (JetPack 5): sensors that are powered down read -256C.
ORIN_JP5 = ("01-03-2023 16:10:22 RAM 2257/30536MB (lfb 5392x4MB) SWAP 0/15268MB (cached 0MB) CPU [1%@729,2%@729] "
            "EMC_FREQ 0% GR3D_FREQ 0% CV0@-256C CPU@41.375C Tboard@29C SOC2@39C Tdiode@30.75C SOC0@38.906C "
            "CV1@-256C GPU@-256C tj@41.468C SOC1@38.843C CV2@-256C")


def test_tegrastats_lines_of_three_generations():
    orin = parse_tegrastats(ORIN_JP7)
    assert orin.watts == pytest.approx(5.5)  # the board's input rail, not the CPU's or GPU's
    assert orin.temps == {"cpu": 52.968, "soc2": 48.406, "soc0": 49.531, "gpu": 47.625}
    assert orin.cpu_mhz == [2201.0] * 12
    nano = parse_tegrastats(NANO)
    assert nano.watts == pytest.approx(0.933) and nano.cpu_mhz == [102.0] * 4
    assert nano.temps["pmic"] == 100.0 and nano.temps["cpu"] == 23.0
    off = parse_tegrastats(ORIN_JP5)
    assert off.watts is None and "gpu" not in off.temps and off.temps["tj"] == 41.468


def test_tegrastats_is_followed_where_hwmon_shows_no_power(tmp_path, monkeypatch):
    """A Jetson whose hwmon hides the input rail (here: a sysfs copy with thermal zones only):
    tegrastats runs once, each line it prints is read. The tegrastats here is a stand-in script
    replaying the recorded Orin line at the --interval it is given; the following is real."""
    zone = tmp_path / "sys/class/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text("47500\n")
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "tegrastats").write_text(f"""#!/bin/sh
[ "$1" = --interval ] || exit 2
echo $$ > {tmp_path}/pid
while :; do echo '{ORIN_JP7}'; sleep $(awk "BEGIN {{print $2 / 1000}}"); done
""")
    (tools / "tegrastats").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    sensors = Sensors(root=tmp_path, interval=0.05)
    try:
        assert sensors.tegrastats.started.wait(30)  # its first line (a bound, not a speed check)
        readings = [sensors.read() for _ in range(3)]
    finally:
        sensors.close()
    assert sensors.describe() == "1 thermal zone, no clocks, no power in hwmon; power from tegrastats"
    assert all(r.watts == pytest.approx(5.5) for r in readings)  # VIN_SYS_5V0, the input rail
    assert all(r.temps == {"cpu-thermal": 47.5} for r in readings)  # sysfs's zones where it has them
    pid = int((tmp_path / "pid").read_text())
    assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0  # it was ended


def test_tegrastats_is_not_started_where_hwmon_has_the_rail_or_a_meter_is_given(tmp_path, monkeypatch):
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "tegrastats").write_text(f"#!/bin/sh\ntouch {tmp_path}/started\nsleep 60\n")
    (tools / "tegrastats").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    sensors = Sensors(power_command="echo 4.2", root=tmp_path)
    assert sensors.tegrastats is None and sensors.read().watts == pytest.approx(4.2)
    hwmon = tmp_path / "sys/class/hwmon/hwmon0"  # the INA3221's input rail, as a Jetson shows it
    hwmon.mkdir(parents=True)
    for name, value in (("in1_label", "VDD_IN"), ("in1_input", "5000"), ("curr1_input", "1000")):
        (hwmon / name).write_text(f"{value}\n")
    sensors = Sensors(root=tmp_path)
    assert sensors.tegrastats is None and sensors.read().watts == pytest.approx(5.0)
    assert not (tmp_path / "started").exists()


def test_vcgencmd_answers():
    """The formats the Raspberry Pi documentation gives for measure_temp, measure_clock arm and
    get_throttled (its example value 0x50005: under-voltage and throttled now)."""
    pi = parse_vcgencmd("temp=52.0'C", "frequency(48)=1500398464", "throttled=0x50005")
    assert (pi.temps, pi.cpu_mhz, pi.throttled) == ({"soc": 52.0}, [pytest.approx(1500.398464)], True)
    assert parse_vcgencmd("temp=42.8'C", None, "throttled=0x50000").throttled is False  # only since boot


def test_linux_files_of_a_jetson(tmp_path):
    """The layout of sysfs on a Jetson Orin Nano (thermal zones, cpufreq, the INA3221's hwmon)."""
    def write(relative, text):
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{text}\n")

    write("sys/class/thermal/thermal_zone0/type", "cpu-thermal")
    write("sys/class/thermal/thermal_zone0/temp", "47500")
    write("sys/class/thermal/thermal_zone1/type", "gpu-thermal")
    write("sys/class/thermal/thermal_zone1/temp", "45250")
    for cpu, khz in enumerate((1510400, 729600)):
        write(f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq", khz)
    for channel, (label, millivolts, milliamps) in enumerate([("VDD_IN", 5080, 1240), ("VDD_SOC", 5072, 300)], 1):
        write(f"sys/class/hwmon/hwmon1/in{channel}_label", label)
        write(f"sys/class/hwmon/hwmon1/in{channel}_input", millivolts)
        write(f"sys/class/hwmon/hwmon1/curr{channel}_input", milliamps)
    sensors = LinuxSensors(tmp_path)
    reading = sensors.read()
    assert reading.temps == {"cpu-thermal": 47.5, "gpu-thermal": 45.25}
    assert reading.cpu_mhz == [1510.4, 729.6]
    assert reading.watts == pytest.approx(5.080 * 1.240)
    assert sensors.describe() == "2 thermal zones, cpufreq, input power (hwmon)"


def test_this_machine_for_real():
    """Whatever this Linux exposes (here, in a VM: cpuinfo's clocks only) is read, and the rest
    is said to be absent rather than made up."""
    sensors = LinuxSensors()
    with Recorder(sensors, interval=0.05) as recorder:
        started = time.perf_counter()
        while time.perf_counter() - started < 0.3:
            sum(range(10_000))
        ended = time.perf_counter()
    assert len(recorder.readings) >= 3
    summary = summarize(recorder.readings, started, ended, calls=100)
    assert summary["readings"] >= 1 and summary["seconds"] == pytest.approx(ended - started)
    if sensors.power is None:
        assert "watts_mean" not in summary and "no power in hwmon" in sensors.describe()


def test_the_summary_over_the_measured_window_only():
    readings = [Reading(0.0, 50.0, {"cpu": 40.0}, [2000.0]),  # before the window: left out
                Reading(1.0, 4.0, {"cpu": 50.0, "gpu": 45.0}, [2000.0, 2000.0]),
                Reading(2.0, 6.0, {"cpu": 56.0}, [1500.0, 1500.0], throttled=False),
                Reading(3.0, 5.0, {"cpu": 58.0}, [1000.0, 1000.0], throttled=True),
                Reading(9.0, 50.0, {"cpu": 90.0}, [100.0])]  # after it
    summary = summarize(readings, 1.0, 3.0, calls=400)
    assert summary["watts_mean"] == pytest.approx(5.0) and summary["watts_peak"] == 6.0
    assert summary["joules_per_inference"] == pytest.approx(5.0 * 2.0 / 400)
    assert (summary["temp_max_c"], summary["temp_rise_c"]) == (58.0, 8.0)
    assert (summary["cpu_mhz_max"], summary["cpu_mhz_min"], summary["clock_drop"]) == (2000.0, 1000.0, 0.5)
    assert summary["throttled"] is True


def test_bench_reads_power_over_the_rounds(tiny_onnx, tmp_path):
    """An external meter's command (here one that always reads 4.2 W) through the real kit bench:
    energy per inference is the mean power over the rounds' time per call."""
    import json

    from helpers import run_kit

    ran = run_kit("bench", tiny_onnx, "--power", "--power-command", "echo 4.2", "--sustained", "0.3", "--json")
    assert ran.returncode == 0, ran.stderr
    info = json.loads(ran.stdout)["benchmarks"][0]["extra_info"]["kit"]
    power = info["power"]
    assert power["watts_mean"] == power["watts_peak"] == 4.2 and "power from: echo 4.2" in power["sensors"]
    calls = info["latency_s"]["rounds"] + 10  # the warm-up rounds are in the window too
    assert power["joules_per_inference"] == pytest.approx(4.2 * power["seconds"] / calls)
    assert info["sustained"] and info["latency_drift"] is not None
    table = run_kit("bench", tiny_onnx, "--power", "--max-time", "0.1")
    assert table.returncode == 0 and "W mean / peak" in table.stdout
    both = run_kit("bench", tiny_onnx, "--sustained", "1", "--max-time", "1")
    assert both.returncode == 2 and "--sustained sets how long each variant runs; found --max-time" in both.stderr
