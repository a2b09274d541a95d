"""Render a bench report: a terminal table, Markdown, and a PNG of latency against accuracy."""

from __future__ import annotations

import os
from typing import Any

from kit.bench.driver import BenchReport
from kit.bench.stats import P99_ROUNDS
from kit.core.errors import RuntimeUnavailableError
from kit.core.fileio import atomic_output
from kit.core.formatting import decibels, percent, seconds, size

LATENCY_COLUMNS = ("median [95% CI]", "min / mean", "p90 / p99", "per s")
MODEL_COLUMNS = ("load / first", "size", "peak RSS", "agree", "SQNR")


def columns(report: BenchReport) -> tuple[str, ...]:
    """The last column holds each variant's accuracy on --data: mAP@0.5:0.95 for a detector's
    variants (one bench scores one model, so every row has the same task), else top-1."""
    accuracy = "mAP (vs base)" if any(row.get("detection") for row in report.rows()) else "top-1 (vs base)"
    return ("variant", *LATENCY_COLUMNS, *MODEL_COLUMNS, accuracy)


def table_rows(report: BenchReport) -> list[list[str]]:
    rows = []
    for row in report.rows():
        latency = row["latency_s"]
        fidelity = row["fidelity"][0] if row["fidelity"] else {}
        accuracy = row.get("accuracy") or {}
        top1 = percent(accuracy.get("top1"))
        if accuracy and not row["baseline"]:
            top1 += f" ({accuracy['delta']:+.2%})"
        if row.get("detection"):  # a detector: mAP@0.5:0.95 in the same column, its header says so
            detection = row["detection"]
            top1 = f"{detection['map']:.3f}" + ("" if row["baseline"] else f" ({detection['delta']:+.3f})")
        batch = f" x{row['batch']}" if (row["batch"] or 1) > 1 else ""
        rows.append([
            row["name"] + batch + (" (baseline)" if row["baseline"] else ""),
            seconds(latency["median"], *latency["median_ci"]),
            f"{seconds(latency['min'])} / {seconds(latency['mean'])}",
            f"{seconds(latency['p90'])} / {seconds(latency['p99'])}",
            f"{row['throughput_per_s']:.0f}",
            f"{seconds(row['load_s'])} / {seconds(row['first_inference_s'])}",
            size(row["size_bytes"]), f"{row['peak_rss_mb']:.0f} MB",
            percent(fidelity.get("top1")), decibels(fidelity.get("sqnr_db")), top1,
        ])
    return rows


PIPELINE_STAGES = ("capture", "wait", "preprocess", "postprocess", "draw", "write")
PIPELINE_COLUMNS = ("pipeline", "frame median [95% CI]", "p99", "FPS", "model", "outside", "capture", "wait",
                    "pre", "post", "draw", "write")


def pipeline_rows(report: BenchReport) -> list[list[str]]:
    """Per variant with --pipeline: the frame's latency, the model call's share of it and the
    rest's, and each other stage's mean."""
    rows = []
    for row in report.pipeline_rows():
        latency, pipeline = row["latency_s"], row["pipeline"]
        stages = pipeline["stages"]
        rows.append([
            row["name"].removesuffix(" pipeline"), seconds(latency["median"], *latency["median_ci"]),
            seconds(latency["p99"]), f"{row['throughput_per_s']:.0f}", percent(stages["inference"]["share"]),
            percent(pipeline["outside_model"]),
            *(seconds(stages[stage]["mean_ms"] / 1e3) if stage in stages else "-" for stage in PIPELINE_STAGES),
        ])
    return rows


POWER_COLUMNS = ("power", "W mean / peak", "per inference", "hottest (rise)", "CPU clock drop", "throttled",
                 "drift")


def power_rows(report: BenchReport) -> list[list[str]]:
    """With --power: per variant, the board's power over its rounds, energy per inference,
    temperatures, clocks, throttling, and the latency's drift."""
    rows = []
    for row in report.rows():
        power = row.get("power")
        if power is None:
            continue
        watts = f"{power['watts_mean']:.2f} / {power['watts_peak']:.2f}" if "watts_mean" in power else "-"
        energy = (f"{power['joules_per_inference'] * 1e3:.3g} mJ" if power.get("joules_per_inference") is not None
                  else "-")
        heat = f"{power['temp_max_c']:.1f} C ({power['temp_rise_c']:+.1f})" if "temp_max_c" in power else "-"
        drop = percent(power["clock_drop"]) if "clock_drop" in power else "-"
        throttled = {True: "yes", False: "no", None: "-"}[power["throttled"]]
        drift = "-" if row.get("latency_drift") is None else f"{row['latency_drift']:+.1%}"
        rows.append([row["name"], watts, energy, heat, drop, throttled, drift])
    return rows


THROUGHPUT_COLUMNS = ("throughput", "streams", "per s", "vs 1 stream", "median / p99 under load")


def throughput_rows(report: BenchReport) -> list[list[str]]:
    """With --streams: per variant, calls per second from that many concurrent callers, against
    its single-stream rate, and what the load does to each call's latency."""
    rows = []
    for row in report.rows():
        found = row.get("throughput")
        if found is None:
            continue
        latency, calls = found["latency_s"], found["calls_per_s"]
        rows.append([row["name"], str(found["streams"]), f"{calls * (row['batch'] or 1):.0f}",
                     f"x{calls * row['latency_s']['mean']:.2f}",  # against one stream's calls per second
                     f"{seconds(latency['median'])} / {seconds(latency['p99'])}"])
    return rows


def extra_tables(report: BenchReport) -> list[tuple[tuple[str, ...], list[list[str]]]]:
    """The tables after the variants' that this run has rows for: pipelines, power, throughput."""
    tables = [(PIPELINE_COLUMNS, pipeline_rows(report)), (POWER_COLUMNS, power_rows(report)),
              (THROUGHPUT_COLUMNS, throughput_rows(report))]
    return [(headers, rows) for headers, rows in tables if rows]


def power_notes(report: BenchReport) -> list[str]:
    rows = [row for row in report.rows() if row.get("power")]
    lines = []
    if rows:
        from kit.bench.driver import POWER_INTERVAL
        from kit.bench.samplers import SPAWNING_INTERVAL

        lines.append(f"power: read every {POWER_INTERVAL:g} s ({SPAWNING_INTERVAL:g} s when a reading starts a process) "
                     "over each variant's rounds "
                     f"from {rows[0]['power']['sensors']}; "
                     "per inference = mean watts x the rounds' time / calls; hottest: the hottest sensor, and its "
                     "change over the rounds; drift: the median of the last tenth of the rounds against the first.")
        if not any("watts_mean" in row["power"] for row in rows):
            lines.append("no power sensor here: give --power-command with a command that prints an external "
                         "meter's watts.")
    for row in report.rows():
        if row.get("sustained") and row.get("latency_drift") is not None and not row.get("power"):
            lines.append(f"{row['name']}: latency drift {row['latency_drift']:+.1%} from the first tenth of the "
                         "rounds to the last.")
    return lines


def pipeline_notes(report: BenchReport) -> list[str]:
    rows = report.pipeline_rows()
    if not rows:
        return []
    dropped = sum(row["pipeline"]["frames_dropped"] for row in rows)
    return [f"pipeline: each round one frame of {rows[0]['pipeline']['source']} through kit run --source's loop "
            "(capture and preprocessing in the source's thread, beside the rest; wait: the loop waiting for a frame), "
            "drawn and JPEG-encoded "
            "(write); model and outside: shares of the frame's mean time; stage columns: means; "
            f"{dropped} frames dropped."]


def notes(report: BenchReport) -> list[str]:
    """What the reader must know to read the table honestly."""
    rows = report.rows()
    devices = report.document.get("kit_devices")
    lines = [*(f"{name}: {device_line(device['fingerprint'])}" for name, device in devices.items())] if devices \
        else [environment_line(report.document["machine_info"]["kit_environment"])]
    for name, device in (devices or {}).items():  # kit doctor's problems there, which may explain the numbers
        for found in device.get("problems", []):
            lines.append(f"{name}: kit doctor: {found['area']}: {found['detail']}"
                         + (f" ({found['fix']})" if found.get("fix") else ""))
    lines.append("per s = batch / mean latency (sustained, stalls included); median interval from this run's rounds "
                 "(run-to-run variation not included); peak RSS of each variant's own process.")
    env = report.document["machine_info"]["kit_environment"]
    if env["cpu"].get("model") in (None, "", env.get("machine")) and not env["cpu"].get("flags"):
        lines.append("the CPU could not be identified (no /proc/cpuinfo, as in a container or an emulated root such "
                     "as qemu): these timings may not describe any real device.")
    if rows and rows[0]["fidelity_data"].startswith("random:"):
        lines.append(f"agree/SQNR measured on {rows[0]['fidelity_data']} (random inputs): give --data with real "
                     "samples for numbers that describe a quantized model.")
    capped = [row for row in rows if row.get("rounds_capped")]
    if capped:  # one line for all: a fast model reaches the cap on every backend
        shortest = min(row["latency_s"]["mean"] * row["latency_s"]["rounds"] for row in capped)
        every = "every variant" if len(capped) == len(rows) else \
            f"{len(capped)} of {len(rows)} variants ({', '.join(row['name'] for row in capped)})"
        lines.append(f"{every} stopped at the cap of {capped[0]['latency_s']['rounds']:,} rounds before the "
                     f"{capped[0]['max_time_s']:g} s of --max-time (the shortest after {seconds(shortest)}).")
    for row in rows:
        found = row.get("throughput") or {}
        ran = (found.get("runtime_info") or {}).get("streams")
        if ran is not None and ran != found["streams"]:  # OpenVINO fits its streams to the cores
            requests = found["runtime_info"].get("optimal_requests")
            lines.append(f"{row['name']}: {found['streams']} callers; OpenVINO ran {ran} stream{'s' * (ran != 1)} "
                         f"(and suggests {requests} request{'s' * (requests != 1)}) on this machine.")
        if found.get("capped"):
            lines.append(f"{row['name']}: the concurrent callers stopped at the cap of {row['latency_s']['rounds']:,} "
                         "calls in one stream, before --max-time; the rate is over the time they ran.")
    for skipped in report.document.get("kit_skipped", []):  # a target this machine lacks
        lines.append(f"skipped {skipped['name']}: {skipped['reason']}. {skipped['needs']}")
    for row in rows:
        latency = row["latency_s"]
        if latency["median_ci"][1] - latency["median_ci"][0] > 0.1 * latency["median"]:
            lines.append(f"{row['name']}: the median's interval is wider than 10% of it; rerun on a quieter machine "
                         "or with --threads 1.")
        if latency["rounds"] < P99_ROUNDS:
            lines.append(f"{row['name']}: {latency['rounds']} rounds, so p99 lies between the two slowest; "
                         "raise --max-time for a tail estimate.")
        if row.get("accuracy_skipped"):
            lines.append(f"{row['name']}: accuracy not scored: {row['accuracy_skipped']}")
    return lines


def device_line(fingerprint: dict[str, Any]) -> str:
    """A device of kit bench --on: what it is, and what it runs."""
    cpu = fingerprint.get("cpu") or {}
    parts = [fingerprint.get("board") or cpu.get("model") or "an unidentified CPU", f"host {fingerprint['hostname']}",
             fingerprint.get("os") or ""]
    parts += [f"{key.replace('_', ' ')} {fingerprint[key]}" for key in ("jetpack", "power_mode") if fingerprint.get(key)]
    parts += [f"{name} {version}" for name, version in (fingerprint.get("packages") or {}).items()]
    return ", ".join(part for part in parts if part)


def environment_line(env: dict[str, Any]) -> str:
    parts = [f"{env['cpu']['model']} ({env['cores']} cores; {', '.join(env['cpu']['flags']) or 'no flags read'})",
             f"threads {env['threads_used'] or 'runtime default'}", f"governor {env['governor'] or 'unknown'}",
             env["os"], f"Python {env['python']}"]
    parts += [f"{key} {env[key]}" for key in ("l4t", "jetpack", "power_mode") if env.get(key)]
    parts += [f"{name} {version}" for name, version in env["packages"].items()]
    return "on " + ", ".join(parts)


def print_table(report: BenchReport, console) -> None:
    """The variants' table, then with --pipeline the pipelines' table, then the notes."""
    _print_fitting(console, columns(report), table_rows(report))
    for headers, rows in extra_tables(report):
        console.print()
        _print_fitting(console, headers, rows)
    for line in notes(report) + pipeline_notes(report) + power_notes(report):
        console.print(line)


def _print_fitting(console, headers, rows) -> None:
    """One table when it fits the console. Else the rows are numbered and their columns
    packed, in order, into as few tables keyed by number as fit (two at 80 columns), so no
    number or name is cut or folded in a pipe or a CI log."""
    wide = _table(headers, rows)
    if _natural_width(console, wide) <= console.width:
        console.print(wide)
    else:
        for number, row in enumerate(rows, 1):
            console.print(f"{number:<3}{row[0]}")
        numbered = [[str(number), *row[1:]] for number, row in enumerate(rows, 1)]
        for group in _pack(console, headers, numbered):
            console.print()
            console.print(_table(["#", *(headers[i] for i in group)], [[r[0], *(r[i] for i in group)]
                                                                       for r in numbered], compact=True))
        console.print()


def _pack(console, headers: tuple[str, ...], numbered: list[list[str]]) -> list[list[int]]:
    """Column indices (after the number) grouped greedily, in order, into tables that fit the console."""
    groups: list[list[int]] = [[]]
    for index in range(1, len(headers)):
        trial = groups[-1] + [index]
        table = _table(["#", *(headers[i] for i in trial)], [[r[0], *(r[i] for i in trial)] for r in numbered],
                       compact=True)
        if groups[-1] and _natural_width(console, table) > console.width:
            groups.append([index])
        else:
            groups[-1] = trial
    return groups


def _natural_width(console, table) -> int:
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update_width(10**6), table).maximum


def _table(columns, rows, compact: bool = False):
    from rich import box
    from rich.table import Table

    # compact: a rule under the header and two spaces between columns, no frame
    table = (Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True) if compact
             else Table(box=box.HEAVY_HEAD))
    for index, column in enumerate(columns):
        table.add_column(column, overflow="fold", justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def write_markdown(report: BenchReport, path: str | os.PathLike) -> None:
    headers = columns(report)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(report)]
    for headers, rows in extra_tables(report):
        lines += ["", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", f"Measured {report.document.get('datetime', '')}."] + [
        f"- {line}" for line in notes(report) + pipeline_notes(report) + power_notes(report)]
    with atomic_output(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both lower latency and higher accuracy."""
    front = []
    for i, (latency, score) in enumerate(points):
        dominated = any(other_latency <= latency and other_score >= score and (other_latency, other_score) !=
                        (latency, score) for other_latency, other_score in points)
        if not dominated:
            front.append(i)
    return front


def require_matplotlib() -> None:
    """--plot is the one part of kit bench that draws: only it needs matplotlib (a device may lack it)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise RuntimeUnavailableError("--plot needs matplotlib, which is not installed.",
                                      hint='Install it with: pip install "edge-inference-kit[plot]", or drop --plot.') from None


def time_unit(seconds: list[float]) -> tuple[str, float]:
    """The unit and factor to draw these durations in: pytest-benchmark's rule (the unit of
    the fastest value, as its own tables scale), so 7 us is "7 us", not "0.0070 ms"."""
    from pytest_benchmark.utils import time_unit as pytest_benchmark_unit

    prefix, factor = pytest_benchmark_unit(min(seconds))
    return f"{prefix}s", factor


def score_limits(scores: list[float], low: float, high: float) -> tuple[float, float]:
    """Axis limits around the scores with a margin, never beyond the metric's own range [low, high]."""
    margin = max(0.1 * (max(scores) - min(scores)), 0.005 * (high - low))
    return max(low, min(scores) - margin), min(high, max(scores) + margin)


def plot_figure(report: BenchReport):
    """Latency against accuracy (Pareto front marked) beside each variant's latency distribution,
    and with --power a third panel: each variant's energy per inference.

    Every variant has its own colour and marker, named in a legend outside the axes, so no
    two names are drawn over each other however close their points lie."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogFormatter, PercentFormatter

    rows = report.rows()
    names = [row["name"] for row in rows]
    medians = [row["latency_s"]["median"] for row in rows]
    unit, factor = time_unit(medians)
    scores, label, (low, high) = _plot_scores(rows)
    energy = [(row.get("power") or {}).get("joules_per_inference") for row in rows]
    panels = 3 if any(joules is not None for joules in energy) else 2
    figure, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 5 + 0.2 * len(rows)),
                                gridspec_kw={"width_ratios": [1, 1, 0.6][:panels]}, layout="constrained")
    if panels == 3:
        axes[2].sharey(axes[1])
    left, right = axes[:2]
    ordered = sorted(pareto_front(list(zip(medians, scores))), key=lambda i: medians[i])
    left.plot([medians[i] * factor for i in ordered], [scores[i] for i in ordered], color="0.5", linestyle="--",
              marker="o", markersize=13, markerfacecolor="none", zorder=1, clip_on=False, label="Pareto front")
    colours = plt.get_cmap("tab10" if len(rows) <= 10 else "tab20").colors
    for index, (name, median, score) in enumerate(zip(names, medians, scores)):
        left.scatter(median * factor, score, color=colours[index % len(colours)], marker="osD^vP*Xh<>"[index % 11],
                     s=50, zorder=2, clip_on=False, label=name)  # clip_on: a point at 100% is drawn whole
    left.set_ylim(*score_limits(scores, low, high))
    if high == 1 and low == 0:
        left.yaxis.set_major_formatter(PercentFormatter(1.0))
    plain = FuncFormatter(lambda value, _: f"{value:g}")  # 20, not 2x10^1
    if max(medians) > 10 * min(medians):
        left.set_xscale("log")
        left.xaxis.set_major_formatter(plain)
    left.set(xlabel=f"median latency ({unit})", ylabel=label, title="latency against accuracy")
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8, frameon=False)
    timings = [entry["stats"]["data"] for entry in report.benchmarks if "pipeline" not in entry["extra_info"]["kit"]]
    unit, factor = time_unit([min(t) for t in timings])
    right.boxplot([[t * factor for t in data] for data in timings], orientation="horizontal", showfliers=True)
    right.set_xscale("log")  # tails span orders of magnitude on shared machines
    right.xaxis.set_major_formatter(plain)
    # Within about a decade matplotlib labels some minor ticks, as 6x10^0 unless told to write 6.
    right.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
    right.set_yticks(range(1, len(names) + 1), names, fontsize=8)
    right.set(xlabel=f"latency per call ({unit})", title="latency distribution (all rounds)")
    if panels == 3:
        _energy_panel(axes[2], names, energy)
    return figure


def _energy_panel(axes, names: list[str], energy: list[float | None]) -> None:
    """Joules per inference as bars, in mJ or uJ; a variant without a power reading has no bar
    and says so."""
    measured = [joules for joules in energy if joules is not None]
    unit, factor = ("mJ", 1e3) if max(measured) >= 1e-3 else ("uJ", 1e6)
    positions = range(1, len(names) + 1)  # the rows of the distribution panel (shared), first at the bottom
    axes.barh(positions, [(joules or 0.0) * factor for joules in energy], color="tab:orange")
    for position, joules in zip(positions, energy):
        if joules is None:
            axes.text(0, position, " no power reading", va="center", fontsize=8)
    axes.tick_params(labelleft=False)  # the names are the distribution panel's, beside it
    axes.set(xlabel=f"energy per inference ({unit})", title="energy per inference (--power)")


def write_plot(report: BenchReport, path: str | os.PathLike) -> None:
    figure = plot_figure(report)
    import matplotlib.pyplot as plt

    try:
        with atomic_output(path) as tmp:
            figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")  # the legend below the axes too
    finally:
        plt.close(figure)


def _plot_scores(rows: list[dict[str, Any]]) -> tuple[list[float], str, tuple[float, float]]:
    """The quality axis: top-1 accuracy, else top-1 agreement, else cosine; with the metric's range."""
    if all(row.get("detection") for row in rows):
        return [row["detection"]["map"] for row in rows], "mAP@0.5:0.95", (0.0, 1.0)
    if all(row.get("accuracy") for row in rows):
        return [row["accuracy"]["top1"] for row in rows], "top-1 accuracy", (0.0, 1.0)
    if all(row["fidelity"] and row["fidelity"][0].get("top1") is not None for row in rows):
        return [row["fidelity"][0]["top1"] for row in rows], "top-1 agreement with the baseline", (0.0, 1.0)
    return ([row["fidelity"][0]["cosine"] if row["fidelity"] else 1.0 for row in rows],
            "cosine similarity to baseline", (-1.0, 1.0))
