"""The ``kit`` command line. Each command parses, calls one library function, and prints.

Errors from the kit print one line and exit non-zero; ``--debug`` shows the traceback.
Every command takes ``--json`` for scripts. Nothing heavy is imported before a command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from kit._version import __version__
from kit.core.errors import InputError, KitError, first_line
from kit.core.formatting import decibels, percent, size


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = _parse(parser, sys.argv[1:] if argv is None else list(argv))
    if args is None:
        parser.print_help()
        return 0
    from kit.core.quiet import captured_stderr

    # Libraries' log lines (absl, oneDNN, XNNPACK, ONNX Runtime, torch's logging) stay off the
    # terminal; with --debug they show as they happen.
    with _Interrupts() as interrupts, captured_stderr(enabled=not args.debug) as library_log:
        return _run_command(args, library_log, interrupts)


# Exit codes: 0 ok; 1 a check failed (compare, eval budget, bench regression); 2 bad input or an
# unusable runtime; 3 an export that does not match PyTorch; 70 an internal error; 130 interrupted
# (SIGINT, Ctrl-C); 143 terminated (SIGTERM).
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


def _run_command(args, library_log, interrupts) -> int:
    """Run the handler; print the warnings it raised, then, if it failed, its error as one line."""
    import warnings

    from kit.core.errors import KitWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", KitWarning)
        try:
            code = args.handler(args) or 0
        except BaseException as error:  # noqa: BLE001 - every way out gets its exit code and one line
            _print_warnings(caught)
            return _failed(error, args.debug, library_log, interrupts)
    _print_warnings(caught)
    return _interrupted(interrupts.received) if interrupts.received else code


def _failed(error: BaseException, debug: bool, library_log, interrupts) -> int:
    import signal

    if BrokenPipeError in (type(error), type(error.__context__)):  # rich turns it into SystemExit(1)
        _discard_stdout()  # `kit ... | head`: the reader left; nothing went wrong here
        return 0
    if interrupts.received or isinstance(error, KeyboardInterrupt):
        return _interrupted(interrupts.received or signal.SIGINT)
    if debug or not isinstance(error, Exception):  # --debug, or a SystemExit of the handler's own
        raise error
    if isinstance(error, KitError):
        _error_line(str(error))
        return error.exit_code
    # A bug or a library failure the kit did not anticipate: what the library logged may say why.
    for line in library_log.tail():
        _console(stderr=True).print(line, soft_wrap=True, highlight=False)
    _error_line(f"unexpected {type(error).__name__}: {first_line(error)} (rerun with --debug for the traceback)")
    return EXIT_INTERNAL


_NOISE = (DeprecationWarning, PendingDeprecationWarning, FutureWarning, ImportWarning, ResourceWarning,
          SyntaxWarning, BytesWarning)


def _print_warnings(caught) -> None:
    """The kit's warnings as ``warning:``/``note:`` lines; another library's warning (a numeric
    RuntimeWarning, a UserWarning) once, as ``warning: CATEGORY: first line``. Notices aimed at
    the libraries' own developers (deprecations, future changes, imports) stay out."""
    from kit.core.errors import KitNote, KitWarning

    shown = set()
    for warning in caught:
        category = warning.category
        if issubclass(category, KitWarning):
            line = ("note:" if issubclass(category, KitNote) else "warning:", str(warning.message))
        elif not issubclass(category, _NOISE):
            line = ("warning:", f"{category.__name__}: {first_line(warning.message)}")
        else:
            continue
        if line not in shown:
            shown.add(line)
            _console(stderr=True).print(_styled(line[0], "yellow"), line[1], soft_wrap=True)


def _error_line(message: str) -> None:
    _console(stderr=True).print(_styled("error:", "bold red"), message, soft_wrap=True)


def _discard_stdout() -> None:
    """Point stdout at /dev/null so Python's flush at exit does not fail on the closed pipe again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real descriptor (a test's capture)
        pass


class _Terminated(SystemExit):
    """SIGTERM, raised in the main thread so every ``finally`` removes its temporary output."""

    def __init__(self):
        super().__init__(EXIT_TERMINATED)


class _Interrupts:
    """SIGINT and SIGTERM become exceptions in the main thread (KeyboardInterrupt, _Terminated), so
    every ``finally`` removes its temporary output, and are remembered: a library that swallows the
    exception, or wraps it in an error of its own, cannot turn an interrupted command into a
    success or an unrelated error."""

    def __enter__(self):
        import signal

        self.received = None
        self.previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[signum] = signal.signal(signum, self._raise)
            except ValueError:  # not the main thread (e.g. called from a test runner's worker)
                pass
        return self

    def _raise(self, signum, frame):
        import signal

        self.received = self.received or signum
        raise KeyboardInterrupt if signum == signal.SIGINT else _Terminated()

    def __exit__(self, *exc_info):
        import signal

        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def _interrupted(signum: int) -> int:
    import signal

    _error_line(f"{'interrupted' if signum == signal.SIGINT else 'terminated'}; nothing was left half-written.")
    return EXIT_INTERRUPTED if signum == signal.SIGINT else EXIT_TERMINATED


# The runtimes' own rule (runtimes/base.py): a few threads per CPU still let a user measure
# oversubscription; --threads 100000 once started 9,000+ threads and was killed for memory.
THREADS_PER_CPU = 4  # a copy, so that `kit --help` imports no numpy; --threads checks with the runtimes' own


def _thread_count(text: str) -> int:
    """--threads: the runtimes' own bound (0 for the runtime's default, at most THREADS_PER_CPU per CPU)."""
    from kit.runtimes.base import check_threads

    value = _number(text, int, lambda v: True, "a whole number")
    try:
        return check_threads(value)
    except KitError as error:
        raise argparse.ArgumentTypeError(error.message.rstrip(".")) from None


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


class _Parser(argparse.ArgumentParser):
    """argparse with the kit's error style: one ``error:`` line on stderr and exit 2, no usage dump.

    No abbreviations: a prefix would silently become another flag (the old ``--output NAME`` of
    eval and bench would be read as ``--output-name``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})

    def error(self, message: str):
        _error_line(f"{self.prog}: {message} (see {self.prog} --help).")
        sys.exit(2)


def _parse(parser: _Parser, argv: list[str]) -> argparse.Namespace | None:
    """The command, then its own options and arguments in any order (None: no command given).

    argparse reads options and positionals intermixed (``kit bench a.py:f --input-shape 1x8 b.onnx``)
    only in a parser without subcommands, so the command word is found first and its own parser
    reads everything else with parse_intermixed_args.
    """
    position = next((i for i, word in enumerate(argv) if not word.startswith("-")), None)
    if position is None or {"-h", "--help", "--version"} & set(argv[:position]):
        parser.parse_args(argv[:position])  # kit's own -h/--version, or an option without a command
        return None
    command = argv[position]
    if command not in parser.commands.choices:
        parser.error(f"unknown command {command!r}; expected one of {', '.join(parser.commands.choices)}")
    args = parser.commands.choices[command].parse_intermixed_args(argv[:position] + argv[position + 1:])
    args.command = command
    return args


def _shared_options() -> dict[str, argparse.ArgumentParser]:
    """Flags several commands take, each declared once here so it means one thing everywhere
    (Polygraphy's argument groups); a command subscribes with ``parents=[...]``."""
    common = argparse.ArgumentParser(add_help=False)
    reporting = common.add_argument_group("output and errors")
    reporting.add_argument("--json", action="store_true", help="print machine-readable JSON to stdout")
    reporting.add_argument("--debug", action="store_true",
                           help="show the full traceback on errors, and native libraries' log lines")
    # How to open a PyTorch source (.pt, .pt2, file.py:factory) on the torch reference runtime.
    torch_source = argparse.ArgumentParser(add_help=False)
    source = torch_source.add_argument_group("PyTorch sources (.pt, .pt2, file.py:factory)")
    source.add_argument("--input-shape", action="append", metavar="[NAME=]SHAPE[:DTYPE]",
                        help="input shapes for a PyTorch source (repeat per input)")
    source.add_argument("--weights", help="state_dict for a factory source (loaded with weights_only=True)")
    source.add_argument("--allow-pickle", action="store_true",
                        help="allow a whole pickled model (runs code from the file: trusted files only)")
    preprocess = argparse.ArgumentParser(add_help=False)
    preprocess.add_argument_group("image preprocessing").add_argument(
        "--preprocess", metavar="KEY=VALUE,...",
        help="how images become inputs for a model that records no preprocessing, e.g. size=224,"
             "mean=0.485/0.456/0.406,std=0.229/0.224/0.225,color=rgb,layout=nchw,resize=letterbox")
    threads = argparse.ArgumentParser(add_help=False)
    threads.add_argument_group("threads").add_argument(
        "--threads", type=_thread_count, help="intra-op threads per runtime (0: the runtime's default; at most "
                                              f"{THREADS_PER_CPU} per CPU)")
    return {"common": common, "torch_source": torch_source, "preprocess": preprocess, "threads": threads}


def _parser() -> _Parser:
    shared = _shared_options()
    common, torch_source = shared["common"], shared["torch_source"]

    parser = _Parser(
        prog="kit", description="Export PyTorch models, run them on edge runtimes, and measure them. "
                                "Options may come before or after a command's arguments.")
    parser.add_argument("--version", action="version", version=f"kit {__version__}")
    commands = parser.commands = parser.add_subparsers(dest="command", metavar="COMMAND")

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

    run = commands.add_parser("run", parents=[common, torch_source, shared["preprocess"], shared["threads"]],
                              help="run a model once and save its outputs")
    run.add_argument("model", help="model file (or file.py:factory for the torch runtime)")
    run.add_argument("--runtime", help="backend name (default: the first usable one for the file)")
    feed = run.add_mutually_exclusive_group(required=True)
    feed.add_argument("--input", action="append", metavar="[NAME=]FILE",
                      help=".npy per input (NAME=file.npy), or one .npz keyed by input name")
    feed.add_argument("--image", help="an image, decoded with OpenCV and preprocessed as the model records")
    feed.add_argument("--random", type=_positive_int, nargs="?", const=_ONE_BATCH, metavar="N",
                      help="N random samples, seeded (default: one batch): one batch of N when the batch axis is "
                           "dynamic, else one call per batch the model fixes")
    run.add_argument("--seed", type=int, default=0, help="seed for --random")
    run.add_argument("-o", "--output", help="save outputs to this .npz, keyed by output name")
    run.add_argument("--optimization", choices=["disable", "basic", "extended", "all"],
                     help="ONNX Runtime graph optimization level (default all)")
    run.add_argument("--rebuild-if-stale", action="store_true",
                     help="TensorRT: rebuild an engine built for another TensorRT or GPU from its recorded ONNX")
    run.set_defaults(handler=_run)

    quantize = commands.add_parser("quantize", parents=[common, shared["preprocess"]], help="quantize an ONNX model (INT8, FP16)")
    quantize.add_argument("model", help="the float32 .onnx model")
    quantize.add_argument("-o", "--output", required=True, help="output .onnx path")
    quantize.add_argument("--precision", choices=["int8", "int8-dynamic", "fp16"], default="int8",
                          help="int8: static, calibrated on --calib (default); int8-dynamic: int8 weights, "
                               "activations quantized at run time (MatMul-heavy models); fp16: half the size")
    quantize.add_argument("--calib", metavar="DATA",
                          help="calibration data: image folder, .npy, .npz (x or per-input arrays), or random:N")
    quantize.add_argument("--calib-limit", type=int, metavar="N", help="use at most N calibration samples")
    quantize.add_argument("--method", choices=["minmax", "entropy", "percentile"], default="minmax",
                          help="how int8 ranges are chosen from calibration: minmax (default: the observed "
                               "range), entropy or percentile (99.999; both clip outliers)")
    quantize.add_argument("--target", choices=["auto", "avx2", "vnni", "arm64", "tensorrt"], default="auto",
                          help="hardware preset (auto: detect this machine)")
    channel = quantize.add_mutually_exclusive_group()
    channel.add_argument("--per-channel", dest="per_channel", action="store_true", default=True,
                         help="per-channel weight scales (default)")
    channel.add_argument("--per-tensor", dest="per_channel", action="store_false",
                         help="one weight scale per tensor (per-channel is usually more accurate)")
    quantize.add_argument("--exclude", nargs="+", default=[], metavar="NODE", help="node names to keep in float")
    budget = quantize.add_mutually_exclusive_group()
    budget.add_argument("--max-drop", type=_fraction, help="accuracy budget: keep layers in float until top-1 drops "
                                                        "at most this much (needs --eval)")
    budget.add_argument("--min-ratio", type=_ratio, help="accuracy budget as a ratio of FP32 top-1 (needs --eval)")
    quantize.add_argument("--eval", metavar="DATA", help="labelled data for the accuracy budget")
    quantize.set_defaults(handler=_quantize)

    compare = commands.add_parser("compare", parents=[common, torch_source, shared["preprocess"]], help="compare two models' outputs (or golden files)")
    compare.add_argument("models", nargs="+", metavar="MODEL",
                         help="reference then candidate; one model with --golden (to check it) or --save-golden "
                              "(to record its outputs)")
    compare.add_argument("--data", default=None, help="inputs: image folder, .npy, .npz or random:N (default random:16)")
    compare.add_argument("--random", type=_positive_int, metavar="N", help="N random inputs (same as --data random:N)")
    compare.add_argument("--atol", action="append", metavar="[OUTPUT=]X", help="absolute tolerance (default 1e-4)")
    compare.add_argument("--rtol", action="append", metavar="[OUTPUT=]X", help="relative tolerance (default 1e-3)")
    compare.add_argument("--stat", choices=["elementwise", "mean", "median", "max"], default="elementwise",
                         help="elementwise: every element within atol + rtol x |reference|; mean/median/max: that "
                              "statistic of the error within atol (absolute) or rtol (relative)")
    golden = compare.add_mutually_exclusive_group()
    golden.add_argument("--save-golden", metavar="OUT.npz", help="save the inputs and the reference's outputs")
    golden.add_argument("--golden", metavar="IN.npz", help="compare MODEL against saved golden outputs")
    compare.add_argument("--layers", action="store_true", help="per-layer SQNR of a QDQ model against its float model")
    compare.add_argument("--runtime-a", help="backend for the reference")
    compare.add_argument("--runtime-b", help="backend for the candidate")
    compare.set_defaults(handler=_compare)

    evaluate = commands.add_parser("eval", parents=[common, torch_source, shared["preprocess"]], help="top-1/top-5 on labelled data, against a budget")
    evaluate.add_argument("model")
    evaluate.add_argument("--data", required=True, help="labelled data: image folder (one subfolder per class) "
                                                        "or .npz with x and y")
    evaluate.add_argument("--runtime", help="backend name")
    evaluate.add_argument("--output-name", metavar="NAME", help="the classification output, when the model has several")
    evaluate.add_argument("--baseline", metavar="FP32_MODEL", help="the full-precision model to measure against")
    limit = evaluate.add_mutually_exclusive_group()
    limit.add_argument("--max-drop", type=_fraction, help="fail when top-1 drops more than this below the baseline")
    limit.add_argument("--min-ratio", type=_ratio, help="fail below this ratio of the baseline's top-1 (MLPerf)")
    evaluate.set_defaults(handler=_eval)

    # No abbreviations: the old `--output NAME` must not silently become --output-name.
    bench = commands.add_parser("bench", parents=[common, torch_source, shared["preprocess"], shared["threads"]],
                                help="latency, memory, size and accuracy per model and runtime (pytest-benchmark)")
    bench.add_argument("models", nargs="+", metavar="MODEL")
    bench.add_argument("--runtime", help="comma-separated backends (default: every usable one that opens the model)")
    bench.add_argument("--baseline", help="the full-precision model every variant is compared with "
                                          "(default: the first variant)")
    bench.add_argument("--data", help="inputs for accuracy: image folder, .npy, .npz (labels in y) or random:N "
                                      "(default random:16, fidelity only)")
    bench.add_argument("--batch", type=_positive_int, default=1, help="batch size for the latency rounds")
    bench.add_argument("--max-time", type=_tolerance, default=2.0,
                       help="seconds of timing rounds per variant (at most 3600; 10 to 20,000 rounds run)")
    bench.add_argument("--save-json", metavar="OUT.json",
                       help="pytest-benchmark JSON (raw timings; the kit's fields in extra_info) to this file")
    bench.add_argument("--output-name", metavar="NAME",
                       help="the classification output to score, when the model has several")
    bench.add_argument("--markdown", metavar="OUT.md", help="the table as Markdown")
    bench.add_argument("--plot", metavar="OUT.png", help="latency against accuracy (Pareto front) and distributions")
    bench.add_argument("--compare", metavar="OLD.json",
                       help="mark regressions against an earlier --save-json; exit 1 on any")
    bench.add_argument("--compare-fail", action="append", metavar="FIELD:N%%",
                       help="pytest-benchmark's regression rule, repeatable: median:10%% (the default; judged at the "
                            "low end of the median's interval), mean:5%%, max:0.002 (seconds)")
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
    build.add_argument("--timing-cache", metavar="FILE",
                       help="read and update a TensorRT timing cache (an existing file must be one)")
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
    demo.add_argument("-o", "--output", "--out", default="kit-demo", metavar="DIR",
                      help="folder for the demo's files (default ./kit-demo)")
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
    from kit.runtimes.tensorrt.build import build_engine

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
    for note in data["notes"]:
        console.print(_styled("note:", "yellow"), note)
    return 0


def _check(args) -> int:
    from kit.runtimes.edgetpu.check import check_edgetpu

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
    if result.compiled:
        console.print(f"wrote {result.compiled}")
    for note in result.notes:
        console.print(_styled("note:", "yellow"), note)
    return 0 if result.ready else 1


def _run(args) -> int:
    from kit.core import provenance
    from kit.core.fileio import atomic_output, check_output_path
    from kit.data.feeds import feeds_from_files, feeds_from_image
    from kit.data.golden import save_arrays
    from kit.runtimes.registry import load

    if args.output:
        if Path(args.output).suffix != ".npz":
            raise InputError(f"expected an output path ending in .npz, found {args.output}.", hint="Use -o out.npz.")
        check_output_path(args.output, *_files_run_reads(args))
    if args.preprocess and not args.image:
        raise InputError("--preprocess describes how an image becomes the model's input; found no --image.",
                         hint="Add --image FILE, or drop --preprocess.")
    options = _open_options(args, args.model, args.runtime)
    if args.threads is not None:
        options["threads"] = args.threads
    if args.optimization:
        options["optimization"] = args.optimization
    if args.rebuild_if_stale:
        options["rebuild_if_stale"] = True
    with load(args.model, args.runtime, **options) as rt:
        if args.image:
            outputs = rt.run(feeds_from_image(rt.inputs, args.image, provenance.read(args.model).get("preprocess"),
                                              args.preprocess, model=args.model))
        elif args.random is not None:
            outputs = _run_random(rt, args.random, args.seed)
        else:
            outputs = rt.run(feeds_from_files(rt.inputs, args.input))
        info = rt.info
    if args.output:
        try:
            with atomic_output(args.output) as tmp, open(tmp, "wb") as handle:
                save_arrays(handle, outputs)  # np.savez(handle, **outputs) breaks on an output named 'file'
        except OSError as exc:  # a full disk or a quota: the temporary file is gone, nothing is at -o
            raise _write_failed(args.output, exc) from exc
    summary = {"model": args.model, "runtime": info, "output_file": args.output,
               "outputs": {name: _summarize(array) for name, array in outputs.items()}}
    if args.json:
        return _print_json(summary)
    # One line per output rather than a table: output names and numbers are never cut at 80 columns.
    console = _console()
    console.print(f"ran {args.model} on {info['runtime']} {info.get('version') or ''}".rstrip())
    for name, stats in summary["outputs"].items():
        console.print(f"{name}: {stats['dtype']}{stats['shape']}, min {stats['min']:.4g}, max {stats['max']:.4g}, "
                      f"mean {stats['mean']:.4g}")
        if stats.get("top5"):
            console.print("  top-5 of the first row (class:value): "
                          + ", ".join(f"{i}:{v:.3g}" for i, v in stats["top5"]))
    if args.output:
        console.print(f"saved outputs to {args.output}")
    return 0


def _files_run_reads(args) -> list[str]:
    """Every file ``kit run`` reads, so that -o never replaces one. ``--input NAME=FILE`` counts
    both ways: which reading applies is known only once the model's input names are."""
    items = args.input or []
    named = [item.partition("=")[2] for item in items if "=" in item]
    return [path for path in (args.model, args.weights, args.image, *items, *named) if path]


_ONE_BATCH = 0  # --random without N: one call at the model's own batch


def _run_random(rt, count: int, seed: int) -> dict:
    """--random N: N seeded samples. One batch of N when every input's batch axis is dynamic; else
    one call per batch the model fixes (TFLite models are static), outputs joined along axis 0."""
    import numpy as np

    from kit.core.specs import batch_feeds, check_memory, describe_specs

    specs = rt.inputs
    if all(spec.dynamic_batch for spec in specs):
        count = count or 1
        return rt.run(batch_feeds(specs, count, seed=seed))
    fixed = next((spec.shape[0] for spec in specs if spec.shape and isinstance(spec.shape[0], int)), 1)
    count = count or fixed
    if count % fixed:
        raise InputError(f"--random {count} does not divide into the batches of {fixed} this model fixes "
                         f"({describe_specs(specs)}).", hint=f"Use a multiple of {fixed}.")
    calls = count // fixed
    first = batch_feeds(specs, seed=seed)
    check_memory(calls * sum(array.nbytes for array in first.values()), f"--random {count}",
                 hint="Ask for fewer samples.")
    results = [rt.run(first), *(rt.run(batch_feeds(specs, seed=seed + i)) for i in range(1, calls))]
    if calls == 1:
        return results[0]
    return {name: np.concatenate([r[name] for r in results]) if array.ndim else np.stack([r[name] for r in results])
            for name, array in results[0].items()}


def _write_failed(path, exc: OSError) -> InputError:
    """An output that could not be written (permissions, a vanished folder), without the temporary path.
    (A full disk is atomic_output's DiskFullError.)"""
    return InputError(f"could not write {path} ({exc.strerror or type(exc).__name__}); nothing was written.",
                      hint="Choose a folder you can write to.")


def _quantize(args) -> int:
    from kit.export.quantize import quantize, quantize_to_budget

    options = dict(precision=args.precision, calib=args.calib, method=args.method, target=args.target,
                   per_channel=args.per_channel, exclude=args.exclude, calib_limit=args.calib_limit,
                   preprocess=args.preprocess)
    budgeted = args.max_drop is not None or args.min_ratio is not None
    if budgeted != (args.eval is not None):
        raise InputError("an accuracy budget needs both --max-drop/--min-ratio and --eval DATA.",
                         hint="E.g. --max-drop 0.01 --eval heldout.npz")
    if budgeted and args.precision != "int8":
        raise InputError(f"the accuracy budget applies to static int8, found --precision {args.precision}.",
                         hint="Drop --precision or the budget.")
    with _progress(args) as say:  # its warnings reach main, which prints them even when quantizing fails
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
    for note in data["notes"]:
        console.print(_styled("note:", "yellow"), note)
    return 0


def _compare(args) -> int:
    from kit.check.harness import compare_models

    if args.golden or (args.save_golden and len(args.models) == 1):
        if len(args.models) != 1:
            raise InputError(f"with --golden, expected one model to check; found {len(args.models)}.",
                             hint="kit compare MODEL --golden golden.npz")
        reference, candidate = (None, args.models[0]) if args.golden else (args.models[0], None)
    elif len(args.models) == 2:
        reference, candidate = args.models
    else:
        raise InputError(f"expected two models (reference, candidate); found {len(args.models)}.",
                         hint="kit compare fp32.onnx int8.onnx, kit compare MODEL --save-golden golden.npz, or "
                              "kit compare MODEL --golden golden.npz")
    if args.random is not None and args.data is not None:
        raise InputError("give --data or --random, not both.", hint="--random N is --data random:N.")
    data = args.data or f"random:{args.random or 16}"
    options = (_open_options(args, reference, args.runtime_a, strict=False),
               _open_options(args, candidate, args.runtime_b, strict=False))
    if not any(options) and (args.input_shape or args.weights or args.allow_pickle):
        _open_options(args, candidate or reference, args.runtime_b)  # raises: no model is a PyTorch source
    with _progress(args) as say:
        say("running both models" if reference and candidate else f"running {reference or candidate}")
        result = compare_models(reference, candidate, data=data, golden=args.golden, save_golden_to=args.save_golden,
                                runtimes=(args.runtime_a, args.runtime_b), options=options,
                                atol=_tolerances(args.atol, 1e-4), rtol=_tolerances(args.rtol, 1e-3),
                                stat=args.stat, layers=args.layers, preprocess=args.preprocess,
                                progress=lambda done, total: say(f"compared {done:,} of {total:,} samples"))
    data_out = result.to_dict()
    if args.json:
        _print_json(data_out)
        return 0 if result.passed else 1
    console = _console()
    if candidate is None:
        console.print(f"saved the inputs and {reference}'s outputs on {result.samples} samples of {data} "
                      f"to {args.save_golden}")
        return 0
    console.print(f"{result.candidate} against {result.reference} on {result.samples} samples ({args.stat}):")
    table = _table(None, "output", "max abs", "mean abs", "max rel", "cosine", "SQNR", "top-1", "top-5", "result")
    for d in result.outputs:
        table.add_row(d.name, f"{d.max_abs:.3g}", f"{d.mean_abs:.3g}", f"{d.max_rel:.3g}", f"{d.cosine:.6f}",
                      decibels(d.sqnr_db), percent(d.top1), percent(d.top5),
                      _styled("pass", "green") if d.passed else _styled("fail", "red"))
    console.print(table)
    for d in result.outputs:
        if not d.passed:  # which rule failed, and by how much
            console.print(_styled("fail:", "red"), f"output '{d.name}' ({d.rule}): {d.failure}.")
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

    from kit.check.accuracy import check_budget
    from kit.check.harness import evaluate

    budget = ({"max_drop": args.max_drop} if args.max_drop is not None else
              {"min_ratio": args.min_ratio} if args.min_ratio is not None else None)
    if budget and not args.baseline:
        raise InputError("an accuracy budget needs --baseline FP32_MODEL.", hint="Add --baseline model.onnx.")
    check = None
    with _progress(args) as say:
        say(f"evaluating {args.model}")
        result, correct = evaluate(args.model, args.data, runtime=args.runtime, output=args.output_name,
                                   preprocess=args.preprocess,
                                   **_open_options(args, args.model, args.runtime, strict=not args.baseline))
        report: dict[str, Any] = {"model": args.model, "data": args.data, **result.to_dict()}
        if args.baseline:
            say(f"evaluating the baseline {args.baseline}")
            base, base_correct = evaluate(args.baseline, args.data, output=args.output_name, preprocess=args.preprocess,
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
    from kit.bench import driver as bench
    from kit.bench import report

    # Everything that can fail is checked before the measuring starts.
    bench.require_pytest_benchmark()
    if args.plot:
        report.require_matplotlib()
    bench.check_outputs([args.save_json, args.markdown, args.plot],
                        [*args.models, args.baseline, args.data, args.compare, args.weights])
    if args.compare_fail and not args.compare:
        raise InputError("--compare-fail judges a comparison; no --compare OLD.json was given.",
                         hint="Add --compare OLD.json (a file written by --save-json).")
    if args.compare:
        bench.load_previous(args.compare)
        bench.compare_checks(args.compare_fail)
    torch_options = {}
    for model in [*args.models, args.baseline]:
        torch_options |= _open_options(args, model, None, strict=False)
    if not torch_options and (args.input_shape or args.weights or args.allow_pickle):
        _open_options(args, args.models[0], None)  # raises: no model here is a PyTorch source
    runtimes = [name.strip() for name in args.runtime.split(",")] if args.runtime else None
    with _bench_progress(enabled=not args.json) as progress:
        result = bench.bench(args.models, runtimes=runtimes, baseline=args.baseline, data=args.data,
                             preprocess=args.preprocess, batch=args.batch, threads=args.threads,
                             max_time=args.max_time, options=torch_options, output_name=args.output_name,
                             progress=progress.update)
    if args.save_json:  # written before any verdict, so a failed comparison never loses the run
        bench.write_json(result, args.save_json)
    if args.markdown:
        report.write_markdown(result, args.markdown)
    if args.plot:
        report.write_plot(result, args.plot)
    found = bench.regressions(result, args.compare, args.compare_fail) if args.compare else []
    failed = any(row["latency_regression"] or row["accuracy_regression"] for row in found)
    if args.json:
        _print_json(result.document | ({"kit_regressions": found} if args.compare else {}))
        return 1 if failed else 0
    console = _console()
    report.print_table(result, console)
    for row in found:
        flag = row["latency_regression"] or row["accuracy_regression"]
        change = "" if row["top1_change"] is None else f", top-1 {row['top1_change']:+.2%}"
        rules = f" ({', '.join(row['failed_rules'])} failed)" if row["failed_rules"] else ""
        console.print(_styled("REGRESSION" if flag else "ok", "red" if flag else "green"),
                      f"{row['name']}: median x{row['median_ratio']:.2f} against {args.compare}{change}{rules}")
    for path in filter(None, (args.save_json, args.markdown, args.plot)):
        console.print(f"wrote {path}")
    return 1 if failed else 0


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

            console = _console(stderr=True)
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
    # Short fields in aligned columns, then the detail and the install command each on a line of their
    # own: a table cell would cut or fold them at 80 columns, and a command must copy as one line.
    from rich.text import Text

    console = _console()
    name_width = max(len(row["name"]) for row in rows)
    version_width = max(len(row["version"] or "-") for row in rows)
    console.print(f"{'runtime':<{name_width}}  usable  {'version':<{version_width}}  opens")
    for row in rows:
        usable = ("yes   ", "green") if row["usable"] else ("no    ", "red")
        console.print(Text.assemble(f"{row['name']:<{name_width}}  ", usable,
                                    f"  {row['version'] or '-':<{version_width}}  ", " ".join(row["suffixes"]) or "-"))
        if row["detail"]:
            console.print(f"    {row['detail']}", highlight=False)
        if not row["usable"] and row["install"]:
            console.print(f"    install: {row['install']}", highlight=False)
    return 0


def _demo(args) -> int:
    from kit.demo import run_demo

    with _progress(args) as say:
        data = run_demo(args.output, progress=say)
    if args.json:
        return _print_json(data)
    console = _console()
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


# ----- output helpers ----------------------------------------------------------------


def _console(stderr: bool = False):
    from rich.console import Console

    from kit.core.quiet import terminal

    # No markup: shapes like [batch, 3] and user paths must print as they are. Soft wrap: a line of
    # text is never broken by rich (which splits paths and numbers mid-word); the terminal wraps it.
    return Console(file=terminal() if stderr else None, markup=False, soft_wrap=True)


def _styled(text: str, style: str):
    from rich.text import Text

    return Text(text, style=style)


def _table(title, *columns):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        # A value wider than its column wraps onto the next line ("fold"): rich's default would cut
        # it with an ellipsis, and at 80 columns that cut numbers, node names and paths.
        table.add_column(column, overflow="fold")
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
