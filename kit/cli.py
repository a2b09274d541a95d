"""The ``kit`` command line. Each command parses, calls one library function, and prints.

Errors from the kit print one line and exit non-zero; ``--debug`` shows the traceback.
Every command takes ``--json`` for scripts. Nothing heavy is imported before a command runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from kit._version import __version__
from kit.errors import InputError, KitError, first_line
from kit.formatting import decibels, percent, size


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    _exit_cleanly_on_sigterm()
    import warnings

    from kit.errors import KitWarning

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", KitWarning)
            code = args.handler(args) or 0
        for warning in caught:  # the kit's warnings as the CLI's own lines, not Python's
            if issubclass(warning.category, KitWarning):
                _console(stderr=True).print(_styled("note:", "yellow"), str(warning.message), soft_wrap=True)
        return code
    except BrokenPipeError:  # `kit ... | head`: the reader left; nothing went wrong here
        return 0
    except KitError as error:
        if args.debug:
            raise
        _error_line(str(error))
        return error.exit_code
    except KeyboardInterrupt:
        _error_line("interrupted; nothing was left half-written.")
        return 130
    except Exception as error:  # a bug or a library failure the kit did not anticipate
        if args.debug:
            raise
        _error_line(f"unexpected {type(error).__name__}: {first_line(error)} (rerun with --debug for the traceback)")
        return EXIT_INTERNAL


# Exit codes: 0 ok; 1 a check failed (compare, eval budget, bench regression); 2 bad input or an
# unusable runtime; 3 an export that does not match PyTorch; 70 an internal error; 130 interrupted.
EXIT_INTERNAL = 70


def _error_line(message: str) -> None:
    _console(stderr=True).print(_styled("error:", "bold red"), message, soft_wrap=True)


def _exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so temporary outputs are removed on the way out."""
    import signal

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    try:
        signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread (e.g. called from a test runner's worker)
        pass


def _positive_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 1, "a whole number >= 1")


def _non_negative_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 0, "a whole number >= 0")


def _tolerance(text: str) -> float:
    import math

    return _number(text, float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")


def _fraction(text: str) -> float:
    return _number(text, float, lambda v: 0 <= v <= 1, "a number from 0 to 1")


def _ratio(text: str) -> float:
    return _number(text, float, lambda v: 0 < v <= 1, "a ratio above 0 and at most 1")


def _number(text: str, kind, valid, wanted: str):
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not valid(value):
        raise argparse.ArgumentTypeError(f"expected {wanted}, found {text!r}")
    return value


# ----- parsing -----------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print machine-readable JSON to stdout")
    common.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    # How to open a PyTorch source (.pt, .pt2, file.py:factory) on the torch reference runtime.
    torch_source = argparse.ArgumentParser(add_help=False)
    torch_source.add_argument("--input-shape", action="append", metavar="[NAME=]SHAPE[:DTYPE]",
                              help="input shapes for a PyTorch source (repeat per input)")
    torch_source.add_argument("--weights", help="state_dict for a factory source (loaded with weights_only=True)")
    torch_source.add_argument("--allow-pickle", action="store_true",
                              help="allow a whole pickled model (runs code from the file: trusted files only)")

    parser = argparse.ArgumentParser(
        prog="kit", description="Export PyTorch models, run them on edge runtimes, and measure them.")
    parser.add_argument("--version", action="version", version=f"kit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    export = commands.add_parser("export", parents=[common], help="export a PyTorch model to ONNX or TFLite (validated)")
    export.add_argument("source", help="model.pt (TorchScript), model.pt2 (torch.export), or file.py:factory")
    export.add_argument("-o", "--output", required=True,
                        help="output file: model.onnx, or model.tflite (the suffix picks the format)")
    export.add_argument("--input-shape", action="append", metavar="[NAME=]SHAPE[:DTYPE]",
                        help="example shape, e.g. 1x3x224x224 or tokens=1x128:int64 (repeat per input)")
    export.add_argument("--static", action="store_true", help="keep the batch axis fixed (default: dynamic)")
    export.add_argument("--dynamic", action="append", metavar="[NAME:]AXIS=DIMNAME",
                        help="make another axis dynamic, e.g. images:2=height")
    export.add_argument("--opset", type=_positive_int, help="ONNX opset (below 18 uses the TorchScript exporter)")
    export.add_argument("--exporter", choices=["auto", "dynamo", "torchscript"], default="auto")
    export.add_argument("--format", choices=["onnx", "tflite"], help="default: from the output's suffix")
    export.add_argument("--precision", choices=["fp32", "fp16", "int8-dynamic", "int8"],
                        help="TFLite only (default fp32); int8 is full integer, calibrated with --calib")
    export.add_argument("--calib", metavar="DATA", help="TFLite int8 calibration data (source model's layout)")
    export.add_argument("--layout", choices=["nhwc", "nchw"], help="TFLite input layout (default nhwc for int8)")
    export.add_argument("--eval", metavar="DATA", help="TFLite: labelled data to report top-1 of PyTorch and the export")
    export.add_argument("--weights", help="state_dict for a factory source (loaded with weights_only=True)")
    export.add_argument("--allow-pickle", action="store_true",
                        help="allow loading a whole pickled model (runs code from the file: trusted files only)")
    export.add_argument("--simplify", action="store_true", help="simplify with onnxslim (validated again)")
    export.add_argument("--preprocess", metavar="KEY=VALUE,...",
                        help="stored preprocessing, e.g. size=224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225,"
                             "color=rgb,layout=nchw,resize=letterbox")
    export.add_argument("--atol", type=_tolerance, default=1e-4, help="validation absolute tolerance (default 1e-4)")
    export.add_argument("--rtol", type=_tolerance, default=1e-3, help="validation relative tolerance (default 1e-3)")
    export.set_defaults(handler=_export)

    run = commands.add_parser("run", parents=[common, torch_source], help="run a model once and save its outputs")
    run.add_argument("model", help="model file (or file.py:factory for the torch runtime)")
    run.add_argument("--runtime", help="backend name (default: the first usable one for the file)")
    feed = run.add_mutually_exclusive_group(required=True)
    feed.add_argument("--input", action="append", metavar="[NAME=]FILE",
                      help=".npy per input (NAME=file.npy), or one .npz keyed by input name")
    feed.add_argument("--image", help="an image, decoded with OpenCV and preprocessed as the model records")
    feed.add_argument("--random", action="store_true", help="random inputs (seeded)")
    run.add_argument("--batch", type=_positive_int, default=1, help="batch size for --random (default 1)")
    run.add_argument("--seed", type=int, default=0, help="seed for --random")
    run.add_argument("-o", "--output", help="save outputs to this .npz, keyed by output name")
    run.add_argument("--threads", type=_non_negative_int, help="intra-op threads (0: the runtime's default)")
    run.add_argument("--optimization", choices=["disable", "basic", "extended", "all"],
                     help="ONNX Runtime graph optimization level (default all)")
    run.add_argument("--rebuild-if-stale", action="store_true",
                     help="TensorRT: rebuild an engine built for another TensorRT or GPU from its recorded ONNX")
    run.set_defaults(handler=_run)

    quantize = commands.add_parser("quantize", parents=[common], help="quantize an ONNX model (INT8, FP16)")
    quantize.add_argument("model", help="the float32 .onnx model")
    quantize.add_argument("-o", "--output", required=True, help="output .onnx path")
    quantize.add_argument("--precision", choices=["int8", "int8-dynamic", "fp16"], default="int8")
    quantize.add_argument("--calib", metavar="DATA",
                          help="calibration data: image folder, .npy, .npz (x or per-input arrays), or random:N")
    quantize.add_argument("--calib-limit", type=int, help="use at most this many calibration samples")
    quantize.add_argument("--method", choices=["minmax", "entropy", "percentile"], default="minmax")
    quantize.add_argument("--target", choices=["auto", "avx2", "vnni", "arm64", "tensorrt"], default="auto",
                          help="hardware preset (auto: detect this machine)")
    channel = quantize.add_mutually_exclusive_group()
    channel.add_argument("--per-channel", dest="per_channel", action="store_true", default=True,
                         help="per-channel weight scales (default)")
    channel.add_argument("--per-tensor", dest="per_channel", action="store_false")
    quantize.add_argument("--exclude", nargs="+", default=[], metavar="NODE", help="node names to keep in float")
    budget = quantize.add_mutually_exclusive_group()
    budget.add_argument("--max-drop", type=_fraction, help="accuracy budget: keep layers in float until top-1 drops "
                                                        "at most this much (needs --eval)")
    budget.add_argument("--min-ratio", type=_ratio, help="accuracy budget as a ratio of FP32 top-1 (needs --eval)")
    quantize.add_argument("--eval", metavar="DATA", help="labelled data for the accuracy budget")
    quantize.set_defaults(handler=_quantize)

    compare = commands.add_parser("compare", parents=[common, torch_source], help="compare two models' outputs (or golden files)")
    compare.add_argument("models", nargs="+", metavar="MODEL", help="reference then candidate, or one model with --golden")
    compare.add_argument("--data", default=None, help="inputs: image folder, .npy, .npz or random:N (default random:16)")
    compare.add_argument("--random", type=_positive_int, metavar="N", help="N random inputs (same as --data random:N)")
    compare.add_argument("--atol", action="append", metavar="[OUTPUT=]X", help="absolute tolerance (default 1e-4)")
    compare.add_argument("--rtol", action="append", metavar="[OUTPUT=]X", help="relative tolerance (default 1e-3)")
    compare.add_argument("--stat", choices=["elementwise", "mean", "median", "max"], default="elementwise")
    golden = compare.add_mutually_exclusive_group()
    golden.add_argument("--save-golden", metavar="OUT.npz", help="save the inputs and the reference's outputs")
    golden.add_argument("--golden", metavar="IN.npz", help="compare MODEL against saved golden outputs")
    compare.add_argument("--layers", action="store_true", help="per-layer SQNR of a QDQ model against its float model")
    compare.add_argument("--runtime-a", help="backend for the reference")
    compare.add_argument("--runtime-b", help="backend for the candidate")
    compare.set_defaults(handler=_compare)

    evaluate = commands.add_parser("eval", parents=[common, torch_source], help="top-1/top-5 on labelled data, against a budget")
    evaluate.add_argument("model")
    evaluate.add_argument("--data", required=True, help="labelled data: image folder (one subfolder per class) "
                                                        "or .npz with x and y")
    evaluate.add_argument("--runtime", help="backend name")
    evaluate.add_argument("--output", help="the classification output, when the model has several")
    evaluate.add_argument("--baseline", metavar="FP32_MODEL", help="the full-precision model to measure against")
    limit = evaluate.add_mutually_exclusive_group()
    limit.add_argument("--max-drop", type=_fraction, help="fail when top-1 drops more than this below the baseline")
    limit.add_argument("--min-ratio", type=_ratio, help="fail below this ratio of the baseline's top-1 (MLPerf)")
    evaluate.set_defaults(handler=_eval)

    bench = commands.add_parser("bench", parents=[torch_source],
                                help="latency, memory, size and accuracy per model and runtime (pytest-benchmark)")
    bench.add_argument("models", nargs="+", metavar="MODEL")
    bench.add_argument("--runtime", help="comma-separated backends (default: every usable one that opens the model)")
    bench.add_argument("--baseline", help="the full-precision model every variant is compared with "
                                          "(default: the first variant)")
    bench.add_argument("--data", help="inputs for accuracy: image folder, .npy, .npz (labels in y) or random:N "
                                      "(default random:16, fidelity only)")
    bench.add_argument("--batch", type=_positive_int, default=1, help="batch size for the latency rounds")
    bench.add_argument("--threads", type=_non_negative_int, help="intra-op threads per runtime")
    bench.add_argument("--max-time", type=_tolerance, default=2.0,
                       help="seconds of timing rounds per variant (at least 10 rounds run)")
    bench.add_argument("--json", metavar="OUT.json",
                       help="pytest-benchmark JSON (the kit's fields in extra_info) to this file, or - for stdout")
    bench.add_argument("--output", help="the classification output to score, when the model has several")
    bench.add_argument("--markdown", metavar="OUT.md", help="the table as Markdown")
    bench.add_argument("--plot", metavar="OUT.png", help="latency against accuracy (Pareto front) and distributions")
    bench.add_argument("--compare", metavar="OLD.json", help="mark regressions against an earlier --json; exit 1 on any")
    bench.add_argument("--threshold", type=_tolerance,
                       help="median slow-down counted as a regression (default 0.10 = 10%%)")
    bench.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    bench.set_defaults(handler=_bench)

    inspect = commands.add_parser("inspect", parents=[common, torch_source], help="show a model's inputs, outputs, ops, metadata")
    inspect.add_argument("model")
    inspect.add_argument("--runtime", help="inspect through this backend instead of reading the file")
    inspect.add_argument("--nodes", action="store_true", help="list every node's name and op (for --exclude)")
    inspect.set_defaults(handler=_inspect)

    build = commands.add_parser("build", parents=[common], help="build a TensorRT engine (with its manifest)")
    build.add_argument("model", help="the .onnx model (fp32, fp16, or QDQ int8 from kit quantize --target tensorrt)")
    build.add_argument("--runtime", choices=["tensorrt"], default="tensorrt")
    build.add_argument("-o", "--output", required=True, help="output .engine path")
    build.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp32")
    build.add_argument("--calib", metavar="DATA", help="int8 of a float model on TensorRT < 11: implicit "
                                                       "calibration data (a QDQ model needs none)")
    for key in ("min", "opt", "max"):
        build.add_argument(f"--{key}-shape", action="append", metavar="[NAME=]SHAPE",
                           help=f"{key} shape of a dynamic input (default batch {'8' if key == 'max' else '1'})")
    build.add_argument("--workspace", type=_positive_int, metavar="MB", help="workspace memory limit")
    build.add_argument("--timing-cache", metavar="FILE", help="read and update a timing cache file")
    build.add_argument("--dla-core", type=_non_negative_int, help="build for this DLA core, GPU fallback on")
    build.add_argument("--compute-capability", metavar="SM86",
                       help="build ahead of time for this GPU (TensorRT-RTX; no GPU needed)")
    build.set_defaults(handler=_build)

    check = commands.add_parser("check", parents=[common], help="readiness checks: check edgetpu MODEL.tflite")
    check.add_argument("target", choices=["edgetpu"], help="what to check for")
    check.add_argument("model")
    check.set_defaults(handler=_check)

    runtimes = commands.add_parser("runtimes", parents=[common], help="list backends and whether they work here")
    runtimes.set_defaults(handler=_runtimes)

    demo = commands.add_parser("demo", parents=[common], help="train, export and run a digits CNN end to end")
    demo.add_argument("--out", default="kit-demo", help="folder for the demo's files (default ./kit-demo)")
    demo.set_defaults(handler=_demo)
    return parser


# ----- commands ----------------------------------------------------------------------


def _export(args) -> int:
    fmt = args.format or ("tflite" if str(args.output).lower().endswith(".tflite") else "onnx")
    if fmt == "tflite":
        return _export_tflite(args)
    if args.precision or args.calib or args.layout or args.eval:
        raise InputError("--precision, --calib, --layout and --eval apply to --format tflite; ONNX exports are fp32.",
                         hint="Quantize an ONNX model with kit quantize.")
    from kit.export.onnx import export_onnx

    with _progress(args) as say:
        result = export_onnx(
            args.source, args.output, input_shapes=args.input_shape, static=args.static, dynamic=args.dynamic,
            opset=args.opset, weights=args.weights, allow_pickle=args.allow_pickle, simplify=args.simplify,
            preprocess=args.preprocess, atol=args.atol, rtol=args.rtol, exporter=args.exporter, progress=say)
    data = result.to_dict()
    if args.json:
        return _print_json(data)
    console = _console()
    console.print(_styled("exported", "green"), f"{data['path']} ({size(data['size_bytes'])}, {data['exporter']} exporter, "
                  f"opset {data['opset']}{', simplified' if data['simplified'] else ''}) in {data['seconds']:.1f} s")
    batches = ", ".join(map(str, data["validation"]["batches"]))
    _print_export(console, data, f"validated against PyTorch on ONNX Runtime at batch {batches} "
                                 f"(atol {args.atol:g}, rtol {args.rtol:g}):")
    return 0


def _export_tflite(args) -> int:
    if args.opset or args.simplify or args.dynamic or args.exporter != "auto" or args.static:
        raise InputError("--opset, --simplify, --dynamic, --static and --exporter apply to ONNX; a TFLite export "
                         "has static shapes.", hint="Drop them for --format tflite.")
    from kit.export.tflite import export_tflite

    with _progress(args) as say:
        result = export_tflite(args.source, args.output, precision=args.precision or "fp32", layout=args.layout,
                               calib=args.calib, eval_data=args.eval, input_shapes=args.input_shape,
                               weights=args.weights,
                               allow_pickle=args.allow_pickle, preprocess=args.preprocess, atol=args.atol,
                               rtol=args.rtol, progress=say)
    data = result.to_dict()
    if args.json:
        return _print_json(data)
    console = _console()
    console.print(_styled("exported", "green"), f"{data['path']} ({size(data['size_bytes'])}, TFLite "
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
    return 0


def _print_export(console, data: dict, validated: str) -> None:
    console.print(_spec_table("inputs", data["inputs"]), _spec_table("outputs", data["outputs"]))
    console.print(validated)
    table = _table(None, "output", "max abs error", "max rel error", "top-1 agreement", "SQNR", "result")
    for diff in data["validation"]["outputs"]:
        table.add_row(diff["name"], f"{diff['max_abs']:.3g}", f"{diff['max_rel']:.3g}", percent(diff.get("top1")),
                      decibels(diff.get("sqnr_db")), _styled("pass", "green") if diff["passed"] else
                      _styled("fail", "red"))
    console.print(table)
    for note in data["notes"]:
        console.print(_styled("note:", "yellow"), note)


def _build(args) -> int:
    from kit.export.tensorrt import build_engine

    with _progress(args) as say:
        result = build_engine(args.model, args.output, precision=args.precision, min_shapes=args.min_shape,
                              opt_shapes=args.opt_shape, max_shapes=args.max_shape, workspace_mb=args.workspace,
                              timing_cache=args.timing_cache, dla_core=args.dla_core,
                              compute_capability=args.compute_capability, calib=args.calib, progress=say)
    data = result.to_dict()
    if args.json:
        return _print_json(data)
    manifest = data["manifest"]
    target = manifest["target"]
    console = _console()
    console.print(_styled("built", "green"), f"{data['path']} ({size(Path(data['path']).stat().st_size)}, "
                  f"{manifest['tensorrt_module']} {manifest['tensorrt_version']}, {manifest['precision']}"
                  f"{', ' + manifest['quantization'] if manifest['quantization'] else ''}, for "
                  f"{target.get('gpu') or 'any'} {target['compute_capability']}"
                  f"{' ahead of time' if target['ahead_of_time'] else ''}) in {data['seconds']:.1f} s")
    for name, shapes in manifest["profile"].items():
        console.print(f"profile {name}: min {shapes['min']}, opt {shapes['opt']}, max {shapes['max']}")
    console.print(f"manifest: {data['path']}.kit.json; TensorRT's build log: {data['path']}.build.log")
    return 0


def _check(args) -> int:
    from kit.export.edgetpu import check_edgetpu

    result = check_edgetpu(args.model)
    data = result.to_dict()
    if args.json:
        _print_json(data)
        return 0 if result.ready else 1
    console = _console()
    if result.ready:
        console.print(_styled("ready", "green"), f"{args.model}: all {len(result.ops)} ops can map to the Edge TPU "
                      f"(compiler 16's op list and versions).")
    else:
        console.print(_styled("not ready", "red"), f"{args.model}: {len(result.blockers)} blocker(s); the TPU part "
                      f"would end after {result.tpu_ops_before_first_blocker} of {len(result.ops)} ops.")
        for blocker in result.blockers:
            console.print(f"  - [{blocker.kind}] {blocker.message}")
    console.print(f"compile with: {result.compiler_command}" if not result.compiler else
                  f"compiled with: {result.compiler_command}")
    if result.compiler:
        compiled = result.compiler
        console.print(f"edgetpu_compiler: {compiled['ops_on_tpu']} ops on the Edge TPU, {compiled['ops_on_cpu']} on "
                      f"the CPU, {compiled['subgraphs']} subgraph(s); on-chip {compiled['on_chip_memory']}, off-chip "
                      f"{compiled['off_chip_memory']}")
    for note in result.notes:
        console.print(_styled("note:", "yellow"), note)
    return 0 if result.ready else 1


def _run(args) -> int:
    import numpy as np

    from kit import provenance
    from kit.feeds import feeds_from_files, feeds_from_image
    from kit.fileio import atomic_output, check_output_path
    from kit.runtimes.registry import load
    from kit.specs import batch_feeds

    if args.output:
        if Path(args.output).suffix != ".npz":
            raise InputError(f"expected an output path ending in .npz, found {args.output}.", hint="Use -o out.npz.")
        check_output_path(args.output, args.model)
    options = _open_options(args, args.model, args.runtime)
    if args.threads is not None:
        options["threads"] = args.threads
    if args.optimization:
        options["optimization"] = args.optimization
    if args.rebuild_if_stale:
        options["rebuild_if_stale"] = True
    with load(args.model, args.runtime, **options) as rt:
        if args.image:
            feeds = feeds_from_image(rt.inputs, args.image, provenance.read(args.model).get("preprocess"))
        elif args.random:
            feeds = batch_feeds(rt.inputs, args.batch, seed=args.seed)
        else:
            feeds = feeds_from_files(rt.inputs, args.input)
        outputs = rt.run(feeds)
        info = rt.info
    if args.output:
        with atomic_output(args.output) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **outputs)
    summary = {"model": args.model, "runtime": info, "output_file": args.output,
               "outputs": {name: _summarize(array) for name, array in outputs.items()}}
    if args.json:
        return _print_json(summary)
    console = _console()
    console.print(f"ran {args.model} on {info['runtime']} {info.get('version') or ''}")
    table = _table(None, "output", "shape", "dtype", "min", "max", "mean", "top-5 (first row)")
    for name, stats in summary["outputs"].items():
        top = ", ".join(f"{i}:{v:.3g}" for i, v in stats.get("top5", []))
        table.add_row(name, str(stats["shape"]), stats["dtype"], f"{stats['min']:.4g}", f"{stats['max']:.4g}",
                      f"{stats['mean']:.4g}", top)
    console.print(table)
    if args.output:
        console.print(f"saved outputs to {args.output}")
    return 0


def _quantize(args) -> int:
    import warnings

    from kit.errors import KitWarning
    from kit.export.quantize import quantize, quantize_to_budget

    options = dict(precision=args.precision, calib=args.calib, method=args.method, target=args.target,
                   per_channel=args.per_channel, exclude=args.exclude, calib_limit=args.calib_limit)
    budgeted = args.max_drop is not None or args.min_ratio is not None
    if budgeted != (args.eval is not None):
        raise InputError("an accuracy budget needs both --max-drop/--min-ratio and --eval DATA.",
                         hint="E.g. --max-drop 0.01 --eval heldout.npz")
    if budgeted and args.precision != "int8":
        raise InputError(f"the accuracy budget applies to static int8, found --precision {args.precision}.",
                         hint="Drop --precision or the budget.")
    with _progress(args) as say, warnings.catch_warnings():
        warnings.simplefilter("ignore", KitWarning)  # printed below as the CLI's own lines
        if budgeted:
            options.pop("precision")
            result = quantize_to_budget(args.model, args.output, eval_data=args.eval, max_drop=args.max_drop,
                                        min_ratio=args.min_ratio, progress=say, **options)
        else:
            result = quantize(args.model, args.output, progress=say, **options)
    data = result.to_dict()
    if args.json:
        return _print_json(data)
    console = _console()
    described = ", ".join(filter(None, [data["precision"], data["target"] and f"preset {data['target']}",
                                        data["method"], data["per_channel"] is not None and
                                        ("per-channel" if data["per_channel"] else "per-tensor")]))
    console.print(_styled("quantized", "green"), f"{data['path']} ({described}): "
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
        console.print(f"budget {budget['rule']}: top-1 {budget['top1']:.2%} vs {budget['baseline_top1']:.2%} float "
                      f"(delta {budget['delta']:+.2%}); kept in float: {', '.join(budget['kept_in_float']) or 'none'}")
    for message in data["warnings"]:
        console.print(_styled("warning:", "yellow"), message)
    for note in data["notes"]:
        console.print(_styled("note:", "yellow"), note)
    return 0


def _compare(args) -> int:
    from kit.harness import compare_models

    if args.golden:
        if len(args.models) != 1:
            raise InputError(f"with --golden, expected one model to check; found {len(args.models)}.",
                             hint="kit compare MODEL --golden golden.npz")
        reference, candidate = None, args.models[0]
    elif len(args.models) == 2:
        reference, candidate = args.models
    else:
        raise InputError(f"expected two models (reference, candidate); found {len(args.models)}.",
                         hint="kit compare fp32.onnx int8.onnx, or kit compare MODEL --golden golden.npz")
    if args.random is not None and args.data is not None:
        raise InputError("give --data or --random, not both.", hint="--random N is --data random:N.")
    data = args.data or f"random:{args.random or 16}"
    options = (_open_options(args, reference, args.runtime_a, strict=False),
               _open_options(args, candidate, args.runtime_b, strict=False))
    if not any(options) and (args.input_shape or args.weights or args.allow_pickle):
        _open_options(args, candidate, args.runtime_b)  # raises: neither model is a PyTorch source
    with _progress(args) as say:
        say("running both models")
        result = compare_models(reference, candidate, data=data, golden=args.golden, save_golden_to=args.save_golden,
                                runtimes=(args.runtime_a, args.runtime_b), options=options,
                                atol=_tolerances(args.atol, 1e-4), rtol=_tolerances(args.rtol, 1e-3),
                                stat=args.stat, layers=args.layers)
    data_out = result.to_dict()
    if args.json:
        _print_json(data_out)
        return 0 if result.passed else 1
    console = _console()
    console.print(f"{result.candidate} against {result.reference} on {result.samples} samples ({args.stat}):")
    table = _table(None, "output", "max abs", "mean abs", "max rel", "cosine", "SQNR", "top-1", "top-5", "result")
    for d in data_out["outputs"]:
        table.add_row(d["name"], f"{d['max_abs']:.3g}", f"{d['mean_abs']:.3g}", f"{d['max_rel']:.3g}",
                      f"{d['cosine']:.6f}", decibels(d["sqnr_db"]), percent(d["top1"]), percent(d["top5"]),
                      _styled("pass", "green") if d["passed"] else _styled("fail", "red"))
    console.print(table)
    if result.layers:
        console.print("per layer, largest accumulated-SQNR drop first:")
        layers = _table(None, "tensor", "producer", "op", "SQNR drop", "accumulated SQNR", "keep in float")
        for layer in data_out["layers"]:
            layers.add_row(layer["tensor"], layer["producer"] or "-", layer["op_type"] or "-",
                           decibels(layer["drop_db"]), decibels(layer["accumulated_sqnr_db"]), ", ".join(layer["keep_in_float"]))
        console.print(layers)
    if args.save_golden:
        console.print(f"saved golden inputs and outputs to {args.save_golden}")
    return 0 if result.passed else 1


def _eval(args) -> int:
    import math

    from kit.accuracy import check_budget
    from kit.harness import evaluate

    budget = ({"max_drop": args.max_drop} if args.max_drop is not None else
              {"min_ratio": args.min_ratio} if args.min_ratio is not None else None)
    if budget and not args.baseline:
        raise InputError("an accuracy budget needs --baseline FP32_MODEL.", hint="Add --baseline model.onnx.")
    check = None
    with _progress(args) as say:
        say(f"evaluating {args.model}")
        result, correct = evaluate(args.model, args.data, runtime=args.runtime, output=args.output,
                                   **_open_options(args, args.model, args.runtime, strict=not args.baseline))
        report: dict[str, Any] = {"model": args.model, "data": args.data, **result.to_dict()}
        if args.baseline:
            say(f"evaluating the baseline {args.baseline}")
            base, base_correct = evaluate(args.baseline, args.data, output=args.output,
                                          **_open_options(args, args.baseline, None, strict=False))
            check = check_budget(base_correct, correct, **(budget or {"max_drop": math.inf}))
            report["baseline"] = {"model": args.baseline, **base.to_dict()}
            report["against_baseline"] = {k: v for k, v in check.to_dict().items()
                                          if budget or k not in ("passed", "rule")}
    failed = budget is not None and not check.passed
    if args.json:
        _print_json(report)
        return 1 if failed else 0
    console = _console()
    console.print(f"{args.model}: top-1 {result.top1:.2%} (95% CI {result.top1_ci[0]:.2%} - {result.top1_ci[1]:.2%})"
                  + (f", top-5 {result.top5:.2%}" if result.top5 is not None else "") + f" on {result.count} samples")
    if check is not None:
        console.print(f"baseline {args.baseline}: top-1 {check.baseline:.2%}; delta {check.delta:+.2%} "
                      f"(95% CI {check.delta_ci[0]:+.2%} - {check.delta_ci[1]:+.2%}), ratio {check.ratio:.4f}")
    if budget:
        console.print(_styled("pass" if check.passed else "FAIL", "green" if check.passed else "red"),
                      f"budget {check.rule}")
    return 1 if failed else 0


def _open_options(args, model: str | None, runtime: str | None, strict: bool = True) -> dict[str, Any]:
    """The torch-source options given on the command line, for a model the torch runtime opens.

    ``strict``: refuse them for a model that is not a PyTorch source, rather than ignore them.
    """
    from kit.runtimes.pytorch import TorchRuntime

    given = {"input_shapes": args.input_shape, "weights": args.weights, "allow_pickle": args.allow_pickle or None}
    given = {key: value for key, value in given.items() if value}
    if model is None or not given:
        return {}
    if runtime == "torch" or (runtime is None and TorchRuntime.can_open(str(model))):
        return given
    if strict:
        raise InputError(f"--input-shape, --weights and --allow-pickle apply to PyTorch sources; {model} is not "
                         "opened by the torch runtime.", hint="Drop them for this model.")
    return {}


def _tolerances(items: list[str] | None, default: float) -> dict[str, float]:
    """``--atol 1e-3 --atol logits=1e-2``: a default ("" key) and per-output values."""
    tolerances = {"": default}
    for item in items or []:
        name, _, value = item.rpartition("=")
        try:
            tolerances[name] = _tolerance(value)
        except argparse.ArgumentTypeError:
            raise InputError(f"expected a tolerance like 1e-3 or OUTPUT=1e-3 (finite, >= 0), found {item!r}.",
                             hint="Give a number, optionally prefixed by an output name.") from None
    return tolerances


def _bench(args) -> int:
    from kit import bench, report

    json_file = None if args.json in (None, "-") else args.json
    bench.check_outputs([json_file, args.markdown, args.plot],
                        [*args.models, args.baseline, args.data, args.compare, args.weights])
    if args.compare:
        bench.load_previous(args.compare)  # a bad comparison file fails now, not after the measuring
    torch_options = {}
    for model in [*args.models, args.baseline]:
        torch_options |= _open_options(args, model, None, strict=False)
    if not torch_options and (args.input_shape or args.weights or args.allow_pickle):
        _open_options(args, args.models[0], None)  # raises: no model here is a PyTorch source
    runtimes = [name.strip() for name in args.runtime.split(",")] if args.runtime else None
    progress = _bench_progress(enabled=args.json != "-")
    with progress:
        result = bench.bench(args.models, runtimes=runtimes, baseline=args.baseline, data=args.data,
                             batch=args.batch, threads=args.threads, max_time=args.max_time,
                             options=torch_options, output=args.output, progress=progress.update)
    if json_file:  # written before any verdict, so a failed comparison never loses the run
        bench.write_json(result, json_file)
    if args.markdown:
        report.write_markdown(result, args.markdown)
    if args.plot:
        report.write_plot(result, args.plot)
    threshold = bench.REGRESSION_THRESHOLD if args.threshold is None else args.threshold
    found = bench.regressions(result, args.compare, threshold) if args.compare else []
    failed = any(row["latency_regression"] or row["accuracy_regression"] for row in found)
    if args.json == "-":
        _print_json(result.document | ({"kit_regressions": found} if args.compare else {}))
        return 1 if failed else 0
    console = _console()
    report.print_table(result, console)
    for row in found:
        flag = row["latency_regression"] or row["accuracy_regression"]
        change = "" if row["top1_change"] is None else f", top-1 {row['top1_change']:+.2%}"
        console.print(_styled("REGRESSION" if flag else "ok", "red" if flag else "green"),
                      f"{row['name']}: median x{row['median_ratio']:.2f} against {args.compare}{change}")
    for path in filter(None, (json_file, args.markdown, args.plot)):
        console.print(f"wrote {path}")
    return 1 if failed else 0


class _bench_progress:
    """A progress bar on stderr over the variants, each measured in its own process."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = self.task = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import Progress

            self.bar = Progress(console=_console(stderr=True), transient=True)
            self.bar.start()
        return self

    def update(self, name: str, done: int, total: int) -> None:
        if self.bar is None:
            return
        if self.task is None:
            self.task = self.bar.add_task("benchmarking", total=total)
        self.bar.update(self.task, completed=done, description=f"benchmarking {name}")

    def __exit__(self, *exc_info):
        if self.bar is not None:
            self.bar.stop()


def _inspect(args) -> int:
    from kit.inspect_model import inspect_model

    data = inspect_model(args.model, args.runtime, nodes=args.nodes,
                         **_open_options(args, args.model, args.runtime))
    if args.json:
        return _print_json(data)
    console = _console()
    header = [f"{data['path']}  {data['format']}  {size(data['size_bytes'])}"]
    for key in ("ir_version", "producer", "opsets", "nodes", "parameters"):
        if key in data:
            header.append(f"{key}: {data[key]}")
    console.print("\n".join(header))
    console.print(_spec_table("inputs", data["inputs"]), _spec_table("outputs", data["outputs"]))
    if data.get("node_list"):
        nodes = _table("nodes", "name", "op")
        for node in data["node_list"]:
            nodes.add_row(node["name"], node["op"])
        console.print(nodes)
    if data.get("ops"):
        ops = _table("operators", "op", "count")
        for op, count in data["ops"].items():
            ops.add_row(op, str(count))
        console.print(ops)
    if data.get("runtime"):
        console.print(f"runtime: {data['runtime']}")
    if data.get("metadata"):
        console.print("provenance: " + json.dumps(data["metadata"], indent=2, sort_keys=True))
    return 0


def _runtimes(args) -> int:
    from kit.runtimes.registry import get, known

    rows = []
    for name, target in known().items():
        try:
            cls = get(name)
            state = cls.availability().to_dict()
            rows.append({"name": name, "entry": target, "suffixes": list(cls.suffixes), **state})
        except KitError as error:
            rows.append({"name": name, "entry": target, "suffixes": [], "usable": False, "version": None,
                         "detail": str(error), "install": ""})
    if args.json:
        return _print_json(rows)
    table = _table("runtimes", "name", "usable", "version", "opens", "detail / how to install")
    for row in rows:
        table.add_row(row["name"], _styled("yes", "green") if row["usable"] else _styled("no", "red"), row["version"] or "-",
                      " ".join(row["suffixes"]), row["detail"] if row["usable"] else f"{row['install']}  ({row['detail']})")
    _console().print(table)
    return 0


def _demo(args) -> int:
    from kit.demo import run_demo

    with _progress(args) as say:
        data = run_demo(args.out, progress=say)
    if args.json:
        return _print_json(data)
    console = _console()
    console.print(f"trained on {data['train_samples']} digits, held out {data['test_samples']}; "
                  f"files in {data['out_dir']}")
    from kit.bench import BenchReport
    from kit.report import print_table

    console.print("every variant on every usable backend, each in its own process; top-1 on the held-out digits, "
                  "agreement and SQNR against PyTorch FP32 (the baseline):")
    print_table(BenchReport(data["bench"]), console)
    sample = next(Path(data["out_dir"]).glob("digit_0_*.png"), None)
    if sample:
        console.print(f"next: kit run {Path(data['export']['path'])} --image {sample}")
    return 0


# ----- output helpers ----------------------------------------------------------------


def _console(stderr: bool = False):
    from rich.console import Console

    # No markup: shapes like [batch, 3] and user paths must print as they are. Soft wrap: a line of
    # text is never broken by rich (which splits paths and numbers mid-word); the terminal wraps it.
    return Console(stderr=stderr, markup=False, soft_wrap=True)


def _styled(text: str, style: str):
    from rich.text import Text

    return Text(text, style=style)


def _table(title, *columns):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    return table


def _spec_table(title: str, specs: list[dict]):
    table = _table(title, "name", "shape", "dtype")
    for spec in specs:
        table.add_row(spec["name"], "[" + ", ".join(map(str, spec["shape"] or ["?"])) + "]", spec["dtype"])
    return table


class _progress:
    """Progress lines on stderr while long work runs (silent with --json)."""

    def __init__(self, args):
        self.enabled = not args.json
        self.status = None

    def __enter__(self):
        if self.enabled:
            self.status = _console(stderr=True).status("working")
            self.status.start()
        return self.say

    def say(self, message: str) -> None:
        if self.status is not None:
            self.status.update(message)

    def __exit__(self, *exc_info):
        if self.status is not None:
            self.status.stop()


def _summarize(array) -> dict[str, Any]:
    import numpy as np

    stats: dict[str, Any] = {"shape": list(array.shape), "dtype": array.dtype.name}
    values = array.astype(np.float64)
    stats.update(min=float(values.min()), max=float(values.max()), mean=float(values.mean()))
    if array.ndim == 2 and array.shape[1] > 1:
        order = np.argsort(-values[0])[:5]
        stats["top5"] = [(int(i), float(values[0, i])) for i in order]
    return stats


def _print_json(data: Any) -> int:
    print(json.dumps(data, indent=2, default=str))
    return 0
