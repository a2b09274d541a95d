"""kit demo: train a digits CNN, export and quantize it, and benchmark every variant."""

from __future__ import annotations

from pathlib import Path

from kit.cli import args as flags
from kit.cli import render


def add_parser(commands, common) -> None:
    parser = commands.add_parser("demo", parents=[common], help="train, export and run a digits CNN end to end")
    flags.add_output(parser, "folder for the demo's files (default ./kit-demo)", default="kit-demo", metavar="DIR",
                     aliases=("--out",))
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from kit.demo import run_demo

    with render.progress(args) as say:
        data = run_demo(args.output, progress=say)
    if args.json:
        return render.print_json(data)
    console = render.console()
    console.print(f"trained on {data['train_samples']} digits, held out {data['test_samples']}; "
                  f"files in {data['out_dir']}")
    from kit.bench.driver import BenchReport
    from kit.bench.report import print_table

    console.print("every variant on every usable backend, each in its own process; top-1 on the held-out digits, "
                  "agreement and SQNR against PyTorch FP32 (the baseline):")
    print_table(BenchReport(data["bench"]), console)
    sample = next(Path(data["out_dir"]).glob("digit_0_*.png"), None)
    if sample:
        console.print(f"next: kit run {Path(data['export']['path'])} --image {sample}")
    return 0
