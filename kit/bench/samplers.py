"""Power, temperature and clocks read while a benchmark runs, and what they add up to over the
measured window: mean and peak watts, joules per inference, the hottest sensor and its rise,
the CPU clock's drop, and whether the board throttled.

Readers, from the most specific the device has:
- any Linux: thermal zones (/sys/class/thermal, millidegrees), cpufreq (scaling_cur_freq,
  kHz; else /proc/cpuinfo's "cpu MHz"), and input power where the kernel exposes it: a
  Jetson's INA3221 rails through hwmon (in*_label, in*_input mV x curr*_input mA; the input
  rail is VDD_IN, POM_5V_IN, VIN_SYS_5V0 or SYS5V by board), or hwmon power*_input (uW);
- a Jetson's tegrastats, started once and followed line by line (parse_tegrastats) where
  hwmon does not show the input rail (a container, a JetPack that hides it); a Raspberry
  Pi's vcgencmd answers (measure_temp, measure_clock arm, get_throttled);
- an external meter: a command that prints the watts it reads (``--power-command``).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "VIN_SYS_5V0", "SYS5V")  # the board's input, by Jetson generation
SPAWNING_INTERVAL = 0.5  # seconds between readings that start a process (vcgencmd, a meter's command)
MAX_READINGS = 100_000  # at 10 a second, over two and a half hours: a recorder never grows past this
OFF_SENSOR_C = -200.0  # tegrastats reports a powered-down sensor as -256C


@dataclass
class Reading:
    t: float  # time.perf_counter(), comparable with the benchmark's own clock
    watts: float | None = None  # the board's input power, where something measures it
    temps: dict[str, float] = field(default_factory=dict)  # degrees Celsius per sensor
    cpu_mhz: list[float] = field(default_factory=list)  # per CPU
    throttled: bool | None = None  # the board says so (Raspberry Pi); None: it does not tell


# ----- parsers of the devices' own tools ----------------------------------------------------

_TEMP = re.compile(r"\b(\w+)@(-?[0-9.]+)C\b")
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) ([0-9.]+)(m?)W?/[0-9.]+")
_CPU = re.compile(r"CPU \[([^\]]*)\]")


def parse_tegrastats(line: str) -> Reading:
    """One tegrastats line: the input rail's watts, each live temperature sensor, CPU clocks.
    Rails print as ``VDD_IN 4585mW/4585mW`` (JetPack 5+; 7 adds a third value) or
    ``POM_5V_IN 933/933`` (older, milliwatts without the unit)."""
    rails = {name: float(value) / 1000 for name, value, _ in _RAIL.findall(line)}
    watts = next((rails[name] for name in INPUT_RAILS if name in rails), None)
    temps = {name.lower(): float(value) for name, value in _TEMP.findall(line) if float(value) > OFF_SENSOR_C}
    cpus = _CPU.search(line)
    clocks = [float(mhz) for mhz in re.findall(r"@(\d+)", cpus[1])] if cpus else []
    return Reading(time.perf_counter(), watts, temps, clocks)


def parse_vcgencmd(temp: str | None, clock: str | None, throttled: str | None) -> Reading:
    """A Raspberry Pi's ``vcgencmd measure_temp`` (``temp=52.0'C``), ``measure_clock arm``
    (``frequency(48)=1500398464``, Hz) and ``get_throttled`` (``throttled=0x50005``)."""
    from kit.deploy.doctor import throttling

    temps = {"soc": float(match[1])} if temp and (match := re.search(r"temp=([0-9.]+)", temp)) else {}
    clocks = [int(match[1]) / 1e6] if clock and (match := re.search(r"=(\d+)", clock)) else []
    return Reading(time.perf_counter(), None, temps, clocks, bool(throttling(throttled)[0]) if throttled else None)


# ----- Linux ------------------------------------------------------------------------------


class LinuxSensors:
    """The sysfs files a Linux board exposes, found once; ``root`` is / (a test gives a copy)."""

    def __init__(self, root: str | Path = "/"):
        root = Path(root)
        self.zones = {}
        for zone in sorted((root / "sys/class/thermal").glob("thermal_zone*")):
            kind = _text(zone / "type") or zone.name
            self.zones[kind if kind not in self.zones else zone.name] = zone / "temp"
        self.cpufreq = sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_cur_freq"))
        self.cpuinfo = root / "proc/cpuinfo"
        self.power = _input_power(root / "sys/class/hwmon")

    def read(self) -> Reading:
        temps = {name: value / 1000 for name, path in self.zones.items() if (value := _number(path)) is not None}
        clocks = [value / 1000 for path in self.cpufreq if (value := _number(path)) is not None]
        if not clocks and self.cpuinfo.is_file():  # a VM or container: no cpufreq, but cpuinfo's MHz
            clocks = [float(mhz) for mhz in re.findall(r"^cpu MHz\s*:\s*([0-9.]+)", _text(self.cpuinfo) or "",
                                                       re.MULTILINE)]
        return Reading(time.perf_counter(), self.power() if self.power else None, temps, clocks)

    def describe(self) -> str:
        zones = len(self.zones)
        found = [f"{zones} thermal zone{'s' if zones > 1 else ''}" if zones else "no thermal zones",
                 "cpufreq" if self.cpufreq else "cpuinfo clocks" if self.cpuinfo.is_file() else "no clocks",
                 "input power (hwmon)" if self.power else "no power in hwmon"]
        return ", ".join(found)


def _input_power(hwmon: Path):
    """A function reading the input watts from hwmon, or None where nothing measures them."""
    for device in sorted(hwmon.glob("hwmon*")):
        for label in sorted(device.glob("in*_label")):  # INA3221 (Jetson): voltage x current per rail
            if (_text(label) or "").strip() in INPUT_RAILS:
                channel = label.name[len("in"):-len("_label")]
                volts, amps = device / f"in{channel}_input", device / f"curr{channel}_input"
                if volts.is_file() and amps.is_file():
                    return lambda v=volts, a=amps: _product_mw(v, a)
        for power in sorted(device.glob("power*_input")):  # microwatts
            return lambda p=power: (value / 1e6 if (value := _number(p)) is not None else None)
    return None


def _product_mw(volts: Path, amps: Path) -> float | None:
    millivolts, milliamps = _number(volts), _number(amps)
    return millivolts * milliamps / 1e6 if millivolts is not None and milliamps is not None else None


def _text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _number(path: Path) -> float | None:
    try:
        return float(_text(path) or "")
    except ValueError:
        return None


# ----- recording and summing up -------------------------------------------------------------


class Recorder:
    """Readings of ``sensors`` every ``interval`` seconds in a thread, between start() and stop()."""

    def __init__(self, sensors, interval: float = 0.1):
        self.sensors, self.interval = sensors, interval
        self.readings: list[Reading] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kit-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.readings) < MAX_READINGS:
            self.readings.append(self.sensors.read())
            self._stop.wait(self.interval)

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(5)
        self.readings.append(self.sensors.read())  # the state at the end, whatever the interval


def summarize(readings: list[Reading], start: float, end: float, calls: int) -> dict[str, Any]:
    """The readings within [start, end] (perf_counter seconds) over ``calls`` inferences."""
    window = [r for r in readings if start <= r.t <= end] or readings[-1:]
    summary: dict[str, Any] = {"readings": len(window), "seconds": end - start}
    watts = [r.watts for r in window if r.watts is not None]
    if watts:
        mean = sum(watts) / len(watts)
        summary.update(watts_mean=mean, watts_peak=max(watts),
                       joules_per_inference=mean * (end - start) / calls if calls else None)
    temps = [max(r.temps.values()) for r in window if r.temps]
    if temps:
        summary.update(temp_max_c=max(temps), temp_rise_c=temps[-1] - temps[0])
    clocks = [sum(r.cpu_mhz) / len(r.cpu_mhz) for r in window if r.cpu_mhz]
    if clocks:
        summary.update(cpu_mhz_max=max(clocks), cpu_mhz_min=min(clocks),
                       clock_drop=1 - min(clocks) / max(clocks) if max(clocks) else 0.0)
    flags = [r.throttled for r in window if r.throttled is not None]
    summary["throttled"] = any(flags) if flags else None
    return summary


class CommandMeter:
    """An external meter: ``command`` (run through the shell) prints the watts it reads now."""

    def __init__(self, command: str):
        self.command = command

    def watts(self) -> float | None:
        import subprocess

        try:
            done = subprocess.run(self.command, shell=True, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return None
        match = re.search(r"-?[0-9]+(?:\.[0-9]+)?", done.stdout) if done.returncode == 0 else None
        return float(match[0]) if match else None


class Tegrastats:
    """A Jetson's tegrastats run once for the whole recording (``--interval`` in ms) and followed:
    every line it prints is parsed as it comes; ``read`` gives the newest. One process for the
    run, not one per reading, so following it costs the board next to nothing."""

    def __init__(self, command: str = "tegrastats", interval: float = 0.1):
        import subprocess

        self.process = subprocess.Popen([command, "--interval", str(max(1, round(interval * 1000)))],
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.latest: Reading | None = None
        self.started = threading.Event()  # set at the first line read
        self._thread = threading.Thread(target=self._follow, name="kit-tegrastats", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        for line in self.process.stdout:
            self.latest = parse_tegrastats(line)
            self.started.set()

    def read(self) -> Reading | None:
        return self.latest

    def close(self) -> None:
        import subprocess

        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._thread.join(5)
        self.process.stdout.close()


class Sensors:
    """What this device measures: Linux's files, a Jetson's tegrastats where hwmon does not show
    the input power, a Raspberry Pi's vcgencmd where there is one, and an external meter's watts
    (``power_command``) over any other power reading. ``close`` ends what it started."""

    def __init__(self, power_command: str | None = None, root: str | Path = "/", interval: float = 0.1):
        import shutil

        self.linux = LinuxSensors(root)
        self.meter = CommandMeter(power_command) if power_command else None
        self.on_pi = shutil.which("vcgencmd") is not None  # a Raspberry Pi's firmware tool
        wants_power = self.linux.power is None and self.meter is None
        self.tegrastats = Tegrastats(interval=interval) if wants_power and shutil.which("tegrastats") else None

    def read(self) -> Reading:
        reading = self.linux.read()
        jetson = self.tegrastats.read() if self.tegrastats else None
        if jetson is not None:
            reading.watts = jetson.watts
            reading.temps = reading.temps or jetson.temps  # the thermal zones where sysfs has them
            reading.cpu_mhz = reading.cpu_mhz or jetson.cpu_mhz
        if self.on_pi:
            from kit.deploy.doctor import vcgencmd

            pi = parse_vcgencmd(vcgencmd("measure_temp"), None, vcgencmd("get_throttled"))
            reading.temps.update(pi.temps)
            reading.throttled = pi.throttled
        if self.meter:
            reading.watts = self.meter.watts()
        return reading

    def close(self) -> None:
        if self.tegrastats:
            self.tegrastats.close()

    @property
    def spawns(self) -> bool:
        """Whether a reading starts processes (vcgencmd, the meter's command)."""
        return bool(self.on_pi or self.meter)

    def describe(self) -> str:
        parts = [self.linux.describe()] + (["power from tegrastats"] if self.tegrastats else []) + (
            ["vcgencmd"] if self.on_pi else []) + ([f"power from: {self.meter.command}"] if self.meter else [])
        return "; ".join(parts)
