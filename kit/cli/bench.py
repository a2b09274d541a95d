"""kit bench: latency, memory, size and accuracy per model and runtime, each variant measured
in its own process under pytest-benchmark; table, JSON, Markdown, plot and regressions."""

from __future__ import annotations

import re
from pathlib import Path

from kit.cli import args as flags
from kit.cli import render
from kit.core.errors import InputError

MAX_TIME_DEFAULT = 2.0


def add_parser(commands, common) -> None:
    parser = commands.add_parser("bench", parents=[common],
                                 help="latency, memory, size and accuracy per model and runtime (pytest-benchmark)")
    parser.add_argument("models", nargs="+", metavar="MODEL")
    flags.add_runtime(parser, several=True)
    flags.add_baseline(parser, default_text=" (default: the first variant)")
    flags.add_data(parser, "--data", "inputs for accuracy, labels in y (default random:16, fidelity only)")
    parser.add_argument("--batch", type=flags.positive_int, default=1, help="batch size for the latency rounds")
    parser.add_argument("--max-time", type=flags.tolerance, default=MAX_TIME_DEFAULT,
                        help="seconds of timing rounds per variant (at most 3600; 10 to 20,000 rounds run)")
    parser.add_argument("--save-json", metavar="OUT.json",
                        help="pytest-benchmark JSON (raw timings; the kit's fields in extra_info) to this file")
    flags.add_output_name(parser)
    parser.add_argument("--pipeline", metavar="VIDEO", help="also time whole frames of this video or image folder "
                                                          "through kit run --source's loop, stage by stage")
    parser.add_argument("--power", action="store_true",
                        help="read power, temperatures and CPU clocks while timing (Linux, Jetson, Raspberry Pi)")
    parser.add_argument("--power-command", metavar="CMD",
                        help="an external meter: a shell command printing the watts it reads (implies --power)")
    parser.add_argument("--streams", type=flags.stream_count, metavar="N",
                        help="also drive each variant with N concurrent callers (OpenVINO: its throughput "
                             "hint and N streams): throughput beside latency")
    parser.add_argument("--sustained", type=flags.positive_float, metavar="SECONDS",
                        help="time each variant this long (thermal steady state) instead of --max-time")
    group = parser.add_argument_group("on devices (over SSH)")
    group.add_argument("--on", action="append", metavar="USER@HOST[:PORT]",
                       help="run the benchmark on this device over SSH (repeatable; devices run in parallel)")
    group.add_argument("--ssh-option", action="append", default=[], metavar="KEY=VALUE",
                       help="passed to ssh as -o KEY=VALUE (your ~/.ssh/config applies too)")
    group.add_argument("--remote-kit", default="kit", metavar="CMD",
                       help="the kit command on the devices (default kit; e.g. ~/venv/bin/kit)")
    group.add_argument("--install", action="store_true",
                       help="where a device's kit is missing or another version, install this one there with the "
                            "bundle's runtimes (in ~/.kit-remote/venv, beside the system's packages)")
    parser.add_argument("--markdown", metavar="OUT.md", help="the table as Markdown")
    parser.add_argument("--plot", metavar="OUT.png", help="latency against accuracy (Pareto front) and distributions")
    parser.add_argument("--compare", metavar="OLD.json",
                        help="mark regressions against an earlier --save-json; exit 1 on any")
    parser.add_argument("--compare-fail", action="append", metavar="FIELD:N%%",
                        help="pytest-benchmark's regression rule, repeatable: median:10%% (the default; judged at "
                             "the low end of the median's interval), mean:5%%, max:0.002 (seconds)")
    flags.add_torch_source(parser)
    flags.add_preprocess(parser)
    flags.add_threads(parser)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from kit.bench import driver as bench
    from kit.bench import regressions as judge
    from kit.bench import report

    # Everything that can fail is checked before the measuring starts.
    bench.require_pytest_benchmark()
    if args.plot:
        report.require_matplotlib()
    bench.check_outputs([args.save_json, args.markdown, args.plot],
                        [*args.models, args.baseline, args.data, args.compare, args.weights, args.pipeline])
    if args.sustained is not None and args.max_time != MAX_TIME_DEFAULT:
        raise InputError("--sustained sets how long each variant runs; found --max-time as well.",
                         hint="Give one of them.")
    if args.compare_fail and not args.compare:
        raise InputError("--compare-fail judges a comparison; no --compare OLD.json was given.",
                         hint="Add --compare OLD.json (a file written by --save-json).")
    if args.compare:
        judge.load_previous(args.compare)
        judge.compare_checks(args.compare_fail)
    torch_options = {}
    for model in [*args.models, args.baseline]:
        torch_options |= flags.torch_options(args, model, None, strict=False)
    if not torch_options and (args.input_shape or args.weights or args.allow_pickle):
        flags.torch_options(args, args.models[0], None)  # raises: no model here is a PyTorch source
    runtimes = [name.strip() for name in args.runtime.split(",")] if args.runtime else None
    if args.on:
        return _on_devices(args)
    if args.ssh_option or args.remote_kit != "kit" or args.install:
        raise InputError("--ssh-option, --remote-kit and --install go with --on user@host.",
                         hint="Add --on, or drop them.")
    with _bench_progress(enabled=not args.json) as progress:
        result = bench.bench(args.models, runtimes=runtimes, baseline=args.baseline, data=args.data,
                             preprocess=args.preprocess, batch=args.batch, threads=args.threads,
                             max_time=args.max_time, options=torch_options, output_name=args.output_name,
                             pipeline=args.pipeline, power=args.power, power_command=args.power_command,
                             sustained=args.sustained, streams=args.streams, progress=progress.update)
    return _report(args, result)


def _report(args, result, failed_devices: bool = False) -> int:
    """The files, the comparison and the table of a run, here or on devices; exit 1 on a
    regression or a device that failed."""
    from kit.bench import driver as bench
    from kit.bench import regressions as judge
    from kit.bench import report

    if args.save_json:  # written before any verdict, so a failed comparison never loses the run
        bench.write_json(result, args.save_json)
    if args.markdown:
        report.write_markdown(result, args.markdown)
    if args.plot:
        report.write_plot(result, args.plot)
    found = judge.regressions(result, args.compare, args.compare_fail) if args.compare else []
    failed = failed_devices or any(row["latency_regression"] or row["accuracy_regression"] for row in found)
    if args.json:
        render.print_json(result.document | ({"kit_regressions": found} if args.compare else {}))
        return 1 if failed else 0
    console = render.console()
    report.print_table(result, console)
    for row in found:
        flag = row["latency_regression"] or row["accuracy_regression"]
        change = "" if row["top1_change"] is None else f", top-1 {row['top1_change']:+.2%}"
        rules = f" ({', '.join(row['failed_rules'])} failed)" if row["failed_rules"] else ""
        console.print(render.styled("REGRESSION" if flag else "ok", "red" if flag else "green"),
                      f"{row['name']}: median x{row['median_ratio']:.2f} against {args.compare}{change}{rules}")
    for path in filter(None, (args.save_json, args.markdown, args.plot)):
        console.print(f"wrote {path}")
    return 1 if failed else 0


# What the devices' kit bench gets as it was given here; the files PUSHED go with the bundle
# (random:N is forwarded as it is); the models LOCAL_ONLY names are not in the bundle.
FORWARDED = {"max_time": "--max-time", "batch": "--batch", "threads": "--threads", "runtime": "--runtime",
             "power": "--power", "power_command": "--power-command", "sustained": "--sustained",
             "output_name": "--output-name", "preprocess": "--preprocess", "streams": "--streams"}
PUSHED = {"data": "--data", "pipeline": "--pipeline"}
LOCAL_ONLY = {"baseline": "--baseline", "weights": "--weights"}


def _on_devices(args) -> int:
    """kit bench --on: the devices run it; one table (and JSON, Markdown, plot, comparison) of them all."""
    from kit.bench import remote
    from kit.bench.driver import BenchReport

    given = [flag for key, flag in LOCAL_ONLY.items() if getattr(args, key, None)]
    if given:
        raise InputError(f"{' and '.join(given)} {'name models' if len(given) > 1 else 'names a model'} here; --on "
                         "benchmarks the bundle's models, the first of them as the baseline.",
                         hint="Drop them with --on, or bundle those models too.")
    for key, flag in PUSHED.items():  # a mistyped path is this command's input error, not every device's
        value = getattr(args, key)
        if value and not Path(value).exists() and not (key == "data" and re.fullmatch(r"random:\d+", value)):
            raise InputError(f"{flag} {value} does not exist.",
                             hint="Give a file or folder here: it is pushed to the devices with the bundle.")
    bench_args = []
    for key, flag in FORWARDED.items():
        value = getattr(args, key)
        if value is True:
            bench_args.append(flag)
        elif value not in (None, False) and not (key == "max_time" and args.sustained) and not (
                key == "batch" and value == 1):
            bench_args += [flag, str(value)]
    with render.progress(args) as say:
        document, errors = remote.bench_on(args.on, args.models, ssh_options=args.ssh_option,
                                           remote_kit=args.remote_kit, bench_args=bench_args, data=args.data,
                                           inputs={flag: getattr(args, key) for key, flag in PUSHED.items()
                                                   if getattr(args, key)}, install=args.install, progress=say)
    for line in errors:
        render.console(stderr=True).print(render.styled("error:", "red"), line, highlight=False)
    if document is None:
        raise remote.RemoteError(f"no device gave results ({len(errors)} failed).", hint="The lines above say why.")
    return _report(args, BenchReport(document), failed_devices=bool(errors))


class _bench_progress:
    """A progress bar on stderr over the variants, each measured in its own process.

    Only on a terminal (in a pipe or a CI log it would leave blank lines), and started at the
    first variant, so input errors found before any measuring print alone."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = self.task = None

    def __enter__(self):
        return self

    def update(self, name: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from rich.progress import Progress

            console = render.console(stderr=True)
            if not console.is_terminal:
                self.enabled = False
                return
            self.bar = Progress(console=console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task("benchmarking", total=total)
        self.bar.update(self.task, completed=done, description=f"benchmarking {name}")

    def __exit__(self, *exc_info):
        if self.bar is not None:
            self.bar.stop()
