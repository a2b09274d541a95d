"""kit bench --compare: regressions against an earlier run, judged by pytest-benchmark's own
compare rules (and a top-1 drop), with what differs between the two runs' settings and
machines said, since those numbers may not be comparable."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from kit.bench.driver import BenchReport, require_pytest_benchmark
from kit.core.errors import InputError, KitError, KitWarning

DEFAULT_COMPARE_FAIL = ("median:10%",)  # pytest-benchmark's rule syntax: a median 10% slower is a regression


ACCURACY_REGRESSION = 0.005  # a top-1 drop beyond this is a regression


STATS_FIELDS = ("min", "max", "mean", "median", "stddev", "iqr")  # what pytest-benchmark's rules can name


def load_previous(path: str | os.PathLike) -> dict[str, Any]:
    """An earlier --save-json document whose benchmarks carry positive medians (checked before measuring)."""
    if not Path(path).is_file():
        raise InputError(f"--compare file {path} does not exist.", hint="Give a file written by kit bench --save-json.")
    try:
        document = json.loads(Path(path).read_text())
        stats = {b["name"]: {key: float(b["stats"][key]) for key in STATS_FIELDS} for b in document["benchmarks"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"could not read {path} as a kit bench / pytest-benchmark JSON ({type(exc).__name__}: "
                         f"{exc}).", hint="Give a file written by kit bench --save-json.") from exc
    if not stats or min(s["median"] for s in stats.values()) <= 0:
        raise InputError(f"{path} holds no positive median latencies.",
                         hint="Give a file written by kit bench --save-json.")
    return document


def compare_checks(rules: list[str] | None = None) -> list[tuple[str, Any]]:
    """pytest-benchmark's own regression rules (its --benchmark-compare-fail), parsed by it:
    FIELD:N% (slower by more than N percent) or FIELD:SECONDS, FIELD among STATS_FIELDS."""
    require_pytest_benchmark()
    from pytest_benchmark.utils import parse_compare_fail

    checks = []
    for rule in rules or DEFAULT_COMPARE_FAIL:
        try:
            checks.append((rule, parse_compare_fail(rule)))
        except Exception:  # argparse.ArgumentTypeError: pytest-benchmark reports through its option parser
            raise InputError(f"expected a rule like median:10% or mean:0.0005 (FIELD:PERCENT% or FIELD:SECONDS, "
                             f"FIELD among {', '.join(STATS_FIELDS)}), found {rule!r}.",
                             hint="These are pytest-benchmark's --benchmark-compare-fail rules.") from None
    return checks


def regressions(report: BenchReport, old_path: str | os.PathLike,
                rules: list[str] | None = None) -> list[dict[str, Any]]:
    """Variants that fail pytest-benchmark's compare rules against an old report, or whose top-1 fell.

    A rule on the median is applied to the lower bound of this run's median interval, so
    noise alone does not flag. Runs measured with other settings or on another machine are
    still compared, with a KitWarning that says what differs."""
    checks = compare_checks(rules)
    document = load_previous(old_path)
    old = {matching_key(b): b for b in document["benchmarks"]}
    found = []
    for entry in report.benchmarks:
        previous = old.get(matching_key(entry))
        if previous is None:
            continue
        info = entry["extra_info"]["kit"]
        current = {**entry["stats"], "median": info["latency_s"]["median_ci"][0]}
        failed = [rule for rule, check in checks if check.fails(current, previous["stats"])]
        row = {"name": entry["name"], "median_ratio": entry["stats"]["median"] / previous["stats"]["median"],
               "latency_regression": bool(failed), "failed_rules": failed}
        old_top1 = previous.get("extra_info", {}).get("kit", {}).get("accuracy", {}).get("top1")
        new_top1 = info.get("accuracy", {}).get("top1")
        row["accuracy_regression"] = (old_top1 is not None and new_top1 is not None
                                      and old_top1 - new_top1 > ACCURACY_REGRESSION)
        row["top1_change"] = None if old_top1 is None or new_top1 is None else new_top1 - old_top1
        found.append(row)
    if not found:
        raise KitError(f"no benchmark in {old_path} matches this run's variants "
                       f"({', '.join(b['name'] for b in report.benchmarks)}).",
                       hint="Compare runs of the same models and runtimes.")
    for line in setting_differences(report.document, document, old_path):
        warnings.warn(line, KitWarning, stacklevel=2)
    return found


def matching_key(entry: dict[str, Any]) -> tuple:
    """What pairs a benchmark with its earlier run: its name, or on a device of kit bench --on the
    variant and the device's fingerprint (hostname, board, CPU), whatever address reached it."""
    fingerprint = entry.get("extra_info", {}).get("kit", {}).get("fingerprint")
    if not fingerprint:
        return (entry["name"],)
    return (entry["name"].rsplit(" @ ", 1)[0], fingerprint.get("hostname"), fingerprint.get("board"),
            (fingerprint.get("cpu") or {}).get("model"))


def setting_differences(new: dict[str, Any], old: dict[str, Any], old_path: str | os.PathLike) -> list[str]:
    """What differs between two runs besides the models: threads, batch, machine, runtime versions."""
    where = f"{Path(old_path).name} was measured"
    then = old.get("machine_info", {}).get("kit_environment")
    if not then:
        return [f"{Path(old_path).name} records no kit environment (not written by kit bench): its threads, batch "
                "and machine cannot be compared with this run's."]
    now = new["machine_info"]["kit_environment"]
    lines = []
    if then.get("threads_used") != now["threads_used"]:
        lines.append(f"{where} with {_threads(then.get('threads_used'))}, this run with "
                     f"{_threads(now['threads_used'])}: the ratios mix two settings.")
    if _machine(then) != _machine(now):
        lines.append(f"{where} on {_machine(then)}, this run on {_machine(now)}: a change may be the machine's.")
    versions = [f"{name} {then['packages'][name]} -> {version}" for name, version in now["packages"].items()
                if then.get("packages", {}).get(name, version) != version]
    if versions:
        lines.append(f"{where} with other versions ({', '.join(versions)}).")
    old_batches = {matching_key(b): b.get("extra_info", {}).get("kit", {}).get("batch") for b in old["benchmarks"]}
    for entry in new["benchmarks"]:
        key, batch = matching_key(entry), entry["extra_info"]["kit"].get("batch")  # a pipeline: one frame at a time
        if key in old_batches and (old_batches[key] or 1) != (batch or 1):  # None: a static batch of 1
            lines.append(f"{where} with {entry['name']} at batch {old_batches[key] or 1}, this run at batch "
                         f"{batch or 1}.")
    return lines


def _threads(count: int | None) -> str:
    return "the runtime's default threads" if count is None else f"{count} thread{'' if count == 1 else 's'}"


def _machine(env: dict[str, Any]) -> str:
    cpu = env.get("cpu", {}).get("model", "an unknown CPU")
    return f"{cpu} ({env.get('cores', '?')} cores, {env.get('machine', '?')})"
