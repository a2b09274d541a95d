"""kit demo: train a digits CNN, export and quantize it, and benchmark every variant."""

from __future__ import annotations

from pathlib import Path

from kit.cli import args as flags
from kit.cli import render


def add_parser(commands, common) -> None:
    parser = commands.add_parser("demo", parents=[common],
                                 help="train, export, quantize and bench a demo model (--task detect: a detector)")
    flags.add_output(parser, "folder for the demo's files (default ./kit-demo)", default="kit-demo", metavar="DIR",
                     aliases=("--out",))
    parser.add_argument("--task", choices=["classify", "detect"], default="classify",
                        help="classify: a digits CNN (default); detect: a shapes detector on synthetic scenes")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from kit.demo import run_demo

    if args.task == "detect":
        return _detect(args)
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
    out = Path(data["out_dir"])
    sample = next(out.glob("digit_0_*.png"), None)
    console.print("next:")
    if sample:
        console.print(f"  kit run {Path(data['export']['path'])} --image {sample}", highlight=False)
    if data.get("video"):
        console.print(f"  kit run {Path(data['export']['path'])} --source {data['video']} --save "
                      f"{out / 'labelled.mp4'}", highlight=False)
    return 0


def _detect(args) -> int:
    from kit.bench.driver import BenchReport
    from kit.bench.report import print_table
    from kit.detect_demo import run_detect_demo

    with render.progress(args) as say:
        data = run_detect_demo(args.output, progress=say)
    if args.json:
        return render.print_json(data)
    console = render.console()
    out = Path(data["out_dir"])
    console.print(f"trained on {data['train_scenes']} synthetic scenes; held-out set {data['held_out']}; "
                  f"files in {out}")
    console.print("every variant, each in its own process; mAP@0.5:0.95 on the held-out scenes (COCO protocol), "
                  "agreement and SQNR against PyTorch FP32 (the baseline):")
    print_table(BenchReport(data["bench"]), console)
    sample = next((out / "heldout").glob("scene_0000.png"), None)
    console.print("next:")
    if sample:
        console.print(f"  kit run {out / 'shapes.onnx'} --image {sample} --draw {out / 'boxes.png'}")
    console.print(f"  kit eval {out / 'shapes.int8.onnx'} --data {data['held_out']} --baseline {out / 'shapes.onnx'}")
    if data["engine"]:
        manifest = data["engine"]["manifest"]
        target = manifest["target"].get("compute_capability") or "this GPU"
        console.print(f"TensorRT: built {data['engine']['path']} ({manifest['tensorrt_module']} "
                      f"{manifest['tensorrt_version']}, int8, for {target}); engines run only on an NVIDIA GPU, so "
                      "it is not in the table.")
    return 0
