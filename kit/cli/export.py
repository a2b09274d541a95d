"""kit export: a PyTorch model to ONNX, TFLite or OpenVINO IR, validated against PyTorch."""

from __future__ import annotations

from pathlib import Path

from kit.cli import args as flags
from kit.cli import render
from kit.core.errors import InputError
from kit.core.formatting import decibels, percent, size


def add_parser(commands, common) -> None:
    parser = commands.add_parser("export", parents=[common],
                                 help="export a PyTorch model to ONNX, TFLite or OpenVINO IR (validated)")
    parser.add_argument("source", help="model.pt (TorchScript), model.pt2 (torch.export), or file.py:factory")
    flags.add_output(parser, "output file: model.onnx, model.tflite or model.xml (OpenVINO IR; the suffix picks "
                             "the format)", required=True)
    flags.add_torch_source(parser)
    parser.add_argument("--static", action="store_true", help="keep the batch axis fixed (default: dynamic)")
    parser.add_argument("--dynamic", action="append", metavar="[NAME:]AXIS=DIMNAME",
                        help="make another axis dynamic, e.g. images:2=height")
    parser.add_argument("--opset", type=flags.positive_int, help="ONNX opset (below 18 uses the TorchScript exporter)")
    parser.add_argument("--exporter", choices=["auto", "dynamo", "torchscript"], default="auto")
    parser.add_argument("--format", choices=list(FORMATS), help="default: from the output's suffix")
    parser.add_argument("--precision", choices=["fp32", "fp16", "int8-dynamic", "int8"],
                        help="TFLite and OpenVINO (default fp32; OpenVINO: fp32, fp16, int8); int8 is "
                             "calibrated with --calib")
    flags.add_data(parser, "--calib", "int8 calibration data (the source model's layout)")
    parser.add_argument("--layout", choices=["nhwc", "nchw"], help="TFLite input layout (default nhwc for int8)")
    flags.add_data(parser, "--eval", "TFLite: labelled data to report top-1 of PyTorch and the export")
    parser.add_argument("--simplify", action="store_true", help="simplify with onnxslim (validated again)")
    flags.add_preprocess(parser, stored=True)
    flags.add_task(parser)
    parser.add_argument("--nms", choices=["host", "graph"], default="host",
                        help="detect, ONNX: where NMS runs; graph appends ONNX NonMaxSuppression so the "
                             "model outputs its detections (default host: OpenCV after the model)")
    flags.add_tolerances(parser, per_output=False)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from kit.export.registry import export, format_for

    fmt = format_for(args.output, args.format)
    options, printer = FORMATS[fmt]
    task = flags.task_from(args)  # recorded with the model: run, eval, bench and the device read it back
    with render.progress(args) as say:
        result = export(args.source, args.output, format=fmt, input_shapes=args.input_shape, weights=args.weights,
                        allow_pickle=args.allow_pickle, preprocess=args.preprocess, atol=args.atol, rtol=args.rtol,
                        task=task, progress=say, **options(args))
    data = result.to_dict()
    if args.json:
        return render.print_json(data)
    printer(args, data)
    return 0


def _onnx_options(args) -> dict:
    if args.precision or args.calib or args.layout or args.eval:
        raise InputError("--precision, --calib, --layout and --eval apply to --format tflite; ONNX exports are fp32.",
                         hint="Quantize an ONNX model with kit quantize.")
    return dict(static=args.static, dynamic=args.dynamic, opset=args.opset, simplify=args.simplify,
                exporter=args.exporter, nms=args.nms)


def _print_onnx(args, data: dict) -> None:
    console = render.console()
    console.print(render.styled("exported", "green"), f"{data['path']} ({size(data['size_bytes'])}, "
                  f"{data['exporter']} exporter, opset {data['opset']}{', simplified' if data['simplified'] else ''})"
                  f" in {data['seconds']:.1f} s")
    batches = ", ".join(map(str, data["validation"]["batches"]))
    _print_export(console, data, f"validated against PyTorch on ONNX Runtime at batch {batches} "
                                 f"(atol {args.atol:g}, rtol {args.rtol:g}):")


def _openvino_options(args) -> dict:
    if args.layout or args.eval:
        raise InputError("--layout and --eval apply to --format tflite; OpenVINO IR keeps the model's layout.",
                         hint="Drop them for --format openvino.")
    if args.calib and args.precision != "int8":
        raise InputError("--calib calibrates --precision int8; found no int8.", hint="Add --precision int8.")
    return dict(precision=args.precision or "fp32", calib=args.calib, static=args.static, dynamic=args.dynamic,
                opset=args.opset, simplify=args.simplify, exporter=args.exporter, nms=args.nms)


def _print_openvino(args, data: dict) -> None:
    console = render.console()
    weights = Path(data["path"]).with_suffix(".bin").name
    console.print(render.styled("exported", "green"), f"{data['path']} and {weights} ({size(data['size_bytes'])}, "
                  f"OpenVINO IR {data['precision']}) in {data['seconds']:.1f} s")
    rule = "by top-1 agreement and SQNR" if data["precision"] == "int8" else "elementwise"
    _print_export(console, data, f"validated against its ONNX model on ONNX Runtime ({rule}):")


def _tflite_options(args) -> dict:
    if args.opset or args.simplify or args.dynamic or args.exporter != "auto" or args.static:
        raise InputError("--opset, --simplify, --dynamic, --static and --exporter apply to ONNX; a TFLite export "
                         "has static shapes.", hint="Drop them for --format tflite.")
    if args.nms != "host":
        raise InputError("--nms graph puts NMS in an ONNX graph; TFLite and the Edge TPU run NMS on the host.",
                         hint="Drop --nms for --format tflite.")
    return dict(precision=args.precision or "fp32", layout=args.layout, calib=args.calib, eval_data=args.eval)


def _print_tflite(args, data: dict) -> None:
    console = render.console()
    console.print(render.styled("exported", "green"), f"{data['path']} ({size(data['size_bytes'])}, TFLite "
                  f"{data['precision']}, {data['layout'].upper()} input) in {data['seconds']:.1f} s")
    _print_export(console, data, "validated against PyTorch on the TFLite interpreter"
                                 + (f" on {data['calibration']['count']} calibration samples:" if data["calibration"]
                                    else ":"))
    if data["accuracy"]:
        acc = data["accuracy"]
        console.print(f"top-1 on {acc['count']} samples of {acc['data']}: PyTorch {acc['pytorch_top1']:.2%}, "
                      f"TFLite {acc['tflite_top1']:.2%} ({acc['delta']:+.2%})")
    if data["precision"] == "int8":
        console.print(f"next: kit check edgetpu {data['path']}")


# Each format: the options only it takes (given for another format, they are an error, not
# ignored) and how its result prints. The registry (kit.export.registry) writes the file.
FORMATS = {"onnx": (_onnx_options, _print_onnx), "tflite": (_tflite_options, _print_tflite),
           "openvino": (_openvino_options, _print_openvino)}


def _print_export(console, data: dict, validated: str) -> None:
    console.print(render.spec_table("inputs", data["inputs"]), render.spec_table("outputs", data["outputs"]))
    console.print(validated)
    table = render.table(None, "output", "max abs error", "max rel error", "top-1 agreement", "SQNR", "result")
    for diff in data["validation"]["outputs"]:
        table.add_row(diff["name"], f"{diff['max_abs']:.3g}", f"{diff['max_rel']:.3g}", percent(diff.get("top1")),
                      decibels(diff.get("sqnr_db")), render.styled("pass", "green") if diff["passed"] else
                      render.styled("fail", "red"))
    console.print(table)
    if data.get("task"):
        task = data["task"]
        console.print(f"task: {task['name']}, {len(task['labels']) or 'no'} labels (recorded with the model)")
    for note in data["notes"]:
        console.print(render.styled("note:", "yellow"), note)
