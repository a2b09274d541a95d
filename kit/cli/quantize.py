"""kit quantize: an ONNX model to INT8 (static or dynamic) or FP16, optionally to an accuracy budget."""

from __future__ import annotations

from kit.cli import args as flags
from kit.cli import render
from kit.core.errors import InputError
from kit.core.formatting import decibels, size


def add_parser(commands, common) -> None:
    parser = commands.add_parser("quantize", parents=[common], help="quantize an ONNX model (INT8, FP16)")
    parser.add_argument("model", help="the float32 .onnx model")
    flags.add_output(parser, "output .onnx path", required=True)
    parser.add_argument("--precision", choices=["int8", "int8-dynamic", "fp16"], default="int8",
                        help="int8: static, calibrated on --calib (default); int8-dynamic: int8 weights, "
                             "activations quantized at run time (MatMul-heavy models); fp16: half the size")
    flags.add_data(parser, "--calib", "calibration data (.npz: x or per-input arrays)")
    parser.add_argument("--calib-limit", type=int, metavar="N", help="use at most N calibration samples")
    parser.add_argument("--method", choices=["minmax", "entropy", "percentile"], default="minmax",
                        help="how int8 ranges are chosen from calibration: minmax (default: the observed "
                             "range), entropy or percentile (99.999; both clip outliers)")
    parser.add_argument("--target", choices=["auto", "avx2", "vnni", "arm64", "tensorrt"], default="auto",
                        help="hardware preset (auto: detect this machine)")
    channel = parser.add_mutually_exclusive_group()
    channel.add_argument("--per-channel", dest="per_channel", action="store_true", default=True,
                         help="per-channel weight scales (default)")
    channel.add_argument("--per-tensor", dest="per_channel", action="store_false",
                         help="one weight scale per tensor (per-channel is usually more accurate)")
    parser.add_argument("--exclude", nargs="+", default=[], metavar="NODE", help="node names to keep in float")
    parser.add_argument("--quantize-mixed-joins", dest="keep_mixed_joins", action="store_false",
                        help="int8 also for a Concat joining very different ranges (a detector's boxes "
                             "and scores), which is kept in float by default")
    flags.add_budget(parser, keeps_layers=True)
    flags.add_data(parser, "--eval", "labelled data for the accuracy budget")
    flags.add_preprocess(parser)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from kit.export.quantize import quantize, quantize_to_budget

    options = dict(precision=args.precision, calib=args.calib, method=args.method, target=args.target,
                   per_channel=args.per_channel, exclude=args.exclude, calib_limit=args.calib_limit,
                   preprocess=args.preprocess, keep_mixed_joins=args.keep_mixed_joins)
    budgeted = args.max_drop is not None or args.min_ratio is not None
    if budgeted != (args.eval is not None):
        raise InputError("an accuracy budget needs both --max-drop/--min-ratio and --eval DATA.",
                         hint="E.g. --max-drop 0.01 --eval heldout.npz")
    if budgeted and args.precision != "int8":
        raise InputError(f"the accuracy budget applies to static int8, found --precision {args.precision}.",
                         hint="Drop --precision or the budget.")
    with render.progress(args) as say:  # its warnings reach main, which prints them even when quantizing fails
        if budgeted:
            options.pop("precision")
            result = quantize_to_budget(args.model, args.output, eval_data=args.eval, max_drop=args.max_drop,
                                        min_ratio=args.min_ratio, progress=say, **options)
        else:
            result = quantize(args.model, args.output, progress=say, **options)
    data = result.to_dict()
    if args.json:
        return render.print_json(data)
    console = render.console()
    described = ", ".join(filter(None, [data["precision"], data["target"] and f"preset {data['target']}",
                                        data["method"], data["per_channel"] is not None and
                                        ("per-channel" if data["per_channel"] else "per-tensor")]))
    console.print(render.styled("quantized", "green"), f"{data['path']} ({described}): "
                  f"{size(data['size_bytes'])} from {size(data['source_size_bytes'])} in {data['seconds']:.1f} s")
    if data["calibration"]:
        cal = data["calibration"]
        console.print(f"calibration: {cal['count']} samples from {cal['source']} (sha256 {cal['sha256'][:12]})")
    for diff in data["fidelity"]:
        console.print(f"against float on calibration samples, output {diff['name']}: SQNR {decibels(diff['sqnr_db'])}, "
                      f"cosine {diff['cosine']:.5f}" + (f", top-1 agreement {diff['top1']:.2%}" if diff["top1"]
                                                         is not None else ""))
    if data["budget"]:
        budget = data["budget"]
        metric = budget["metric"]
        shown = (lambda v, sign="": f"{v:{sign}.2%}") if metric == "top1" else (  # noqa: E731
            lambda v, sign="": f"{v:{sign}.4f}")
        label = {"top1": "top-1", "map": "mAP@0.5:0.95"}[metric]
        console.print(f"budget {budget['rule']}: {label} {shown(budget[metric])} vs {shown(budget['baseline_' + metric])}"
                      f" float (delta {shown(budget['delta'], '+')}); kept in float: "
                      f"{', '.join(budget['kept_in_float']) or 'none'}")
    for note in data["notes"]:
        console.print(render.styled("note:", "yellow"), note)
    return 0
