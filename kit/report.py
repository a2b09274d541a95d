"""Render a bench report: a terminal table, Markdown, and a PNG of latency against accuracy."""

from __future__ import annotations

import os
from typing import Any

from kit.bench import BenchReport
from kit.errors import RuntimeUnavailableError
from kit.fileio import atomic_output
from kit.formatting import decibels, percent, seconds, size
from kit.stats import P99_ROUNDS

COLUMNS = ("variant", "median [95% CI]", "min / mean", "p90 / p99", "load / first", "per s", "size", "peak RSS",
           "agree", "SQNR", "top-1 (vs base)")


def table_rows(report: BenchReport) -> list[list[str]]:
    rows = []
    for row in report.rows():
        latency = row["latency_s"]
        fidelity = row["fidelity"][0] if row["fidelity"] else {}
        accuracy = row.get("accuracy") or {}
        top1 = percent(accuracy.get("top1"))
        if accuracy and not row["baseline"]:
            top1 += f" ({accuracy['delta']:+.2%})"
        batch = f" x{row['batch']}" if (row["batch"] or 1) > 1 else ""
        rows.append([
            row["name"] + batch + (" (baseline)" if row["baseline"] else ""),
            seconds(latency["median"], *latency["median_ci"]),
            f"{seconds(latency['min'])} / {seconds(latency['mean'])}",
            f"{seconds(latency['p90'])} / {seconds(latency['p99'])}",
            f"{seconds(row['load_s'])} / {seconds(row['first_inference_s'])}",
            f"{row['throughput_per_s']:.0f}", size(row["size_bytes"]), f"{row['peak_rss_mb']:.0f} MB",
            percent(fidelity.get("top1")), decibels(fidelity.get("sqnr_db")), top1,
        ])
    return rows


def notes(report: BenchReport) -> list[str]:
    """What the reader must know to read the table honestly."""
    rows = report.rows()
    lines = [environment_line(report.document["machine_info"]["kit_environment"]),
             "per s = batch / mean latency (sustained, stalls included); median interval from this run's rounds "
             "(run-to-run variation not included); peak RSS of each variant's own process."]
    if rows and rows[0]["fidelity_data"].startswith("random:"):
        lines.append(f"agree/SQNR measured on {rows[0]['fidelity_data']} (random inputs): give --data with real "
                     "samples for numbers that describe a quantized model.")
    for row in rows:
        latency = row["latency_s"]
        if latency["median_ci"][1] - latency["median_ci"][0] > 0.1 * latency["median"]:
            lines.append(f"{row['name']}: the median's interval is wider than 10% of it; rerun on a quieter machine "
                         "or with --threads 1.")
        if row.get("rounds_capped"):
            timed = latency["mean"] * latency["rounds"]
            lines.append(f"{row['name']}: timing stopped at the {latency['rounds']:,}-round cap after {seconds(timed)}, "
                         f"short of --max-time {row['max_time_s']:g} s.")
        if latency["rounds"] < P99_ROUNDS:
            lines.append(f"{row['name']}: {latency['rounds']} rounds, so p99 lies between the two slowest; "
                         "raise --max-time for a tail estimate.")
        if row.get("accuracy_skipped"):
            lines.append(f"{row['name']}: accuracy not scored: {row['accuracy_skipped']}")
    return lines


def environment_line(env: dict[str, Any]) -> str:
    parts = [f"{env['cpu']['model']} ({env['cores']} cores; {', '.join(env['cpu']['flags']) or 'no flags read'})",
             f"threads {env['threads_used'] or 'runtime default'}", f"governor {env['governor'] or 'unknown'}",
             env["os"], f"Python {env['python']}"]
    parts += [f"{key} {env[key]}" for key in ("l4t", "jetpack", "power_mode") if env.get(key)]
    parts += [f"{name} {version}" for name, version in env["packages"].items()]
    return "on " + ", ".join(parts)


def print_table(report: BenchReport, console) -> None:
    from rich.table import Table

    table = Table(title=None)
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    for row in table_rows(report):
        table.add_row(*row)
    console.print(table)
    for line in notes(report):
        console.print(line)


def write_markdown(report: BenchReport, path: str | os.PathLike) -> None:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(report)]
    lines += ["", f"Measured {report.document.get('datetime', '')}."] + [f"- {line}" for line in notes(report)]
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
                                      hint='Install it with: pip install "edge-inference-kit[bench]" (or matplotlib alone), '
                                           'or drop --plot.') from None


def write_plot(report: BenchReport, path: str | os.PathLike) -> None:
    """Latency against accuracy (Pareto front marked) beside each variant's latency distribution."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report.rows()
    names = [row["name"] for row in rows]
    medians = [row["latency_s"]["median"] * 1000 for row in rows]
    scores, label = _plot_scores(rows)
    front = pareto_front(list(zip(medians, scores)))
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    left.scatter(medians, scores, color="tab:blue")
    ordered = sorted(front, key=lambda i: medians[i])
    left.plot([medians[i] for i in ordered], [scores[i] for i in ordered], color="tab:red", marker="o",
              label="Pareto front")
    for name, x, y in zip(names, medians, scores):
        left.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    left.set(xlabel="median latency (ms)", ylabel=label, title="latency against accuracy")
    left.legend()
    timings = [[t * 1000 for t in entry["stats"]["data"]] for entry in report.benchmarks]
    right.boxplot(timings, orientation="horizontal", showfliers=True)
    right.set_xscale("log")  # tails span orders of magnitude on shared machines
    right.set_yticks(range(1, len(names) + 1), names, fontsize=8)
    right.set(xlabel="latency per call (ms)", title="latency distribution (all rounds)")
    figure.tight_layout()
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)


def _plot_scores(rows: list[dict[str, Any]]) -> tuple[list[float], str]:
    if all(row.get("accuracy") for row in rows):
        return [row["accuracy"]["top1"] for row in rows], "top-1 accuracy"
    if all(row["fidelity"] and row["fidelity"][0].get("top1") is not None for row in rows):
        return [row["fidelity"][0]["top1"] for row in rows], "top-1 agreement with the baseline"
    return [row["fidelity"][0]["cosine"] if row["fidelity"] else 1.0 for row in rows], "cosine similarity to baseline"
