"""kit build: a TensorRT engine from an ONNX model, with its manifest."""

from __future__ import annotations

from pathlib import Path

from kit.cli import args as flags
from kit.cli import render
from kit.core.formatting import size


def add_parser(commands, common) -> None:
    parser = commands.add_parser("build", parents=[common], help="build a TensorRT engine (with its manifest)")
    parser.add_argument("model", help="the .onnx model (fp32, fp16, or QDQ int8 from kit quantize --target tensorrt)")
    flags.add_runtime(parser, choices=["tensorrt"], default="tensorrt")
    flags.add_output(parser, "output .engine path", required=True)
    parser.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp32")
    flags.add_data(parser, "--calib", "int8 of a float model on TensorRT < 11: implicit calibration data "
                                      "(a QDQ model needs none)")
    for key in ("min", "opt", "max"):
        parser.add_argument(f"--{key}-shape", action="append", metavar="[NAME=]SHAPE",
                            help=f"{key} shape of a dynamic input (default batch {'8' if key == 'max' else '1'})")
    parser.add_argument("--workspace", type=flags.positive_int, metavar="MB", help="workspace memory limit")
    parser.add_argument("--timing-cache", metavar="FILE",
                        help="read and update a TensorRT timing cache (an existing file must be one)")
    parser.add_argument("--dla-core", type=flags.non_negative_int, help="build for this DLA core, GPU fallback on")
    flags.add_compute_capability(parser)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from kit.runtimes.tensorrt.build import build_engine

    with render.progress(args) as say:
        result = build_engine(args.model, args.output, precision=args.precision, min_shapes=args.min_shape,
                              opt_shapes=args.opt_shape, max_shapes=args.max_shape, workspace_mb=args.workspace,
                              timing_cache=args.timing_cache, dla_core=args.dla_core,
                              compute_capability=args.compute_capability, calib=args.calib, progress=say)
    data = result.to_dict()
    if args.json:
        return render.print_json(data)
    manifest = data["manifest"]
    target = manifest["target"]
    console = render.console()
    console.print(render.styled("built", "green"), f"{data['path']} ({size(Path(data['path']).stat().st_size)}, "
                  f"{manifest['tensorrt_module']} {manifest['tensorrt_version']}, {manifest['precision']}"
                  f"{', ' + manifest['quantization'] if manifest['quantization'] else ''}, for "
                  f"{target.get('gpu') or 'any'} {target['compute_capability']}"
                  f"{' ahead of time' if target['ahead_of_time'] else ''}) in {data['seconds']:.1f} s")
    for name, shapes in manifest["profile"].items():
        console.print(f"profile {name}: min {shapes['min']}, opt {shapes['opt']}, max {shapes['max']}")
    console.print(f"manifest: {data['path']}.kit.json; TensorRT's build log: {data['path']}.build.log")
    for note in data["notes"]:
        console.print(render.styled("note:", "yellow"), note)
    return 0
