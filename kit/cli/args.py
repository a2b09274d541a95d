"""Flags that several commands take, each declared once here so that it means one thing
everywhere (the pattern of Polygraphy's tools/args). A command adds a group with one call;
where commands differ (a required flag, what the data is for), the difference is a parameter
of the group, visible here. Also the value types that turn a flag's text into a checked value
(an error names what was expected and what was found), and the conversions from parsed flags
to the options the library takes."""

from __future__ import annotations

import argparse
from typing import Any

from kit.core.errors import InputError, KitError

ATOL, RTOL = 1e-4, 1e-3  # the default tolerances of export validation and compare

# ----- value types -------------------------------------------------------------------

# The runtimes' own rule (runtimes/base.py): a few threads per CPU still let a user measure
# oversubscription; --threads 100000 once started 9,000+ threads and was killed for memory.
THREADS_PER_CPU = 4  # a copy, so that `kit --help` imports no numpy; --threads checks with the runtimes' own


def thread_count(text: str) -> int:
    """--threads: the runtimes' own bound (0 for the runtime's default, at most THREADS_PER_CPU per CPU)."""
    from kit.runtimes.base import check_threads

    value = _number(text, int, lambda v: True, "a whole number")
    try:
        return check_threads(value)
    except KitError as error:
        raise argparse.ArgumentTypeError(error.message.rstrip(".")) from None


def stream_count(text: str) -> int:
    """--streams: concurrent callers, at least 1 and bounded as threads are."""
    from kit.runtimes.base import check_threads

    value = _number(text, int, lambda v: True, "a whole number")
    try:
        return check_threads(value, "streams", minimum=1)
    except KitError as error:
        raise argparse.ArgumentTypeError(error.message.rstrip(".")) from None


def positive_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 1, "a whole number >= 1")


def positive_float(text: str) -> float:
    import math

    return _number(text, float, lambda v: math.isfinite(v) and v > 0, "a finite number above 0")


def non_negative_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 0, "a whole number >= 0")


def tolerance(text: str) -> float:
    import math

    return _number(text, float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")


def fraction(text: str) -> float:
    return _number(text, float, lambda v: 0 <= v <= 1, "a number from 0 to 1")


def ratio(text: str) -> float:
    return _number(text, float, lambda v: 0 < v <= 1, "a ratio above 0 and at most 1")


def _number(text: str, kind, valid, wanted: str):
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not valid(value):
        raise argparse.ArgumentTypeError(f"expected {wanted}, found {text!r}")
    return value


# ----- groups ------------------------------------------------------------------------


def common() -> argparse.ArgumentParser:
    """--json and --debug: every command takes them (as a parent parser)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("output and errors")
    group.add_argument("--json", action="store_true", help="print machine-readable JSON to stdout")
    group.add_argument("--debug", action="store_true",
                       help="show the full traceback on errors, and native libraries' log lines")
    return parent


def add_torch_source(parser: argparse.ArgumentParser) -> None:
    """How a PyTorch source (.pt, .pt2, file.py:factory) is opened: its input shapes, its weights,
    and whether a whole pickled model may be loaded."""
    group = parser.add_argument_group("PyTorch sources (.pt, .pt2, file.py:factory)")
    group.add_argument("--input-shape", action="append", metavar="[NAME=]SHAPE[:DTYPE]",
                       help="input shape of a PyTorch source, e.g. 1x3x224x224 or tokens=1x128:int64 "
                            "(repeat per input)")
    group.add_argument("--weights", help="state_dict for a factory source (loaded with weights_only=True)")
    group.add_argument("--allow-pickle", action="store_true",
                       help="allow a whole pickled model (runs code from the file: trusted files only)")


def add_preprocess(parser: argparse.ArgumentParser, *, stored: bool = False) -> None:
    """--preprocess: stored with the model by export; elsewhere, for a model that records none."""
    purpose = ("preprocessing to store with the model" if stored else
               "how images become inputs for a model that records no preprocessing")
    parser.add_argument_group("image preprocessing").add_argument(
        "--preprocess", metavar="KEY=VALUE,...",
        help=f"{purpose}, e.g. size=224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225 (other keys: "
             "color=rgb, layout=nchw, resize=letterbox)")


def add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument_group("threads").add_argument(
        "--threads", type=thread_count,
        help=f"intra-op threads per runtime (0: the runtime's default; at most {THREADS_PER_CPU} per CPU)")


def add_runtime(parser: argparse.ArgumentParser, *, several: bool = False, **choices) -> None:
    """--runtime NAME (a comma-separated list where a command runs several)."""
    parser.add_argument("--runtime", **choices, help=(
        "comma-separated backends (default: every usable one that opens the model)" if several else
        "backend name (default: the first usable one for the file)"))


def add_compute_capability(parser: argparse.ArgumentParser, *, when: str = "") -> None:
    """--compute-capability SM86: TensorRT-RTX builds ahead of time for that GPU, with no GPU here."""
    parser.add_argument("--compute-capability", metavar="SM86",
                        help=f"{when}build ahead of time for this GPU (TensorRT-RTX; no GPU needed)")


def add_output(parser: argparse.ArgumentParser, what: str, *, required: bool = False, metavar: str | None = None,
               default: str | None = None, aliases: tuple[str, ...] = ()) -> None:
    """-o/--output: always a file (or folder) the command writes, never a model's output name."""
    parser.add_argument("-o", "--output", *aliases, required=required, default=default, metavar=metavar, help=what)


def add_data(parser: argparse.ArgumentParser, flag: str, purpose: str, *, required: bool = False,
             forms: str = "an image folder, .npy, .npz or random:N") -> None:
    """A data flag (--data, --calib, --eval): one syntax and metavar everywhere, its use named."""
    parser.add_argument(flag, metavar="DATA", required=required, help=f"{purpose}: {forms}")


def add_tolerances(parser: argparse.ArgumentParser, *, per_output: bool) -> None:
    """--atol/--rtol; per output (``--atol logits=1e-2``, repeatable) where several outputs are judged."""
    for flag, default, kind in (("--atol", ATOL, "absolute"), ("--rtol", RTOL, "relative")):
        if per_output:
            parser.add_argument(flag, action="append", metavar="[OUTPUT=]X",
                                help=f"{kind} tolerance (default {default:g}; repeatable, per output)")
        else:
            parser.add_argument(flag, type=tolerance, default=default, help=f"{kind} tolerance (default {default:g})")


def add_budget(parser: argparse.ArgumentParser, *, keeps_layers: bool = False) -> None:
    """--max-drop / --min-ratio: an accuracy budget against the full-precision model. Quantizing keeps
    layers in float until it holds; evaluating fails when it does not."""
    budget = parser.add_mutually_exclusive_group()
    if keeps_layers:
        budget.add_argument("--max-drop", type=fraction,
                            help="accuracy budget: keep layers in float until top-1 drops at most this much "
                                 "(needs --eval)")
        budget.add_argument("--min-ratio", type=ratio, help="accuracy budget as a ratio of FP32 top-1 (needs --eval)")
    else:
        budget.add_argument("--max-drop", type=fraction,
                            help="fail when top-1 drops more than this below the baseline")
        budget.add_argument("--min-ratio", type=ratio, help="fail below this ratio of the baseline's top-1 (MLPerf)")


def add_baseline(parser: argparse.ArgumentParser, *, default_text: str = "") -> None:
    parser.add_argument("--baseline", metavar="FP32_MODEL",
                        help=f"the full-precision model to measure against{default_text}")


def add_output_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-name", metavar="NAME",
                        help="the classification output to score, when the model has several")


def add_task(parser: argparse.ArgumentParser) -> None:
    """What the model's outputs mean (recorded in provenance by export; overrides it elsewhere)."""
    group = parser.add_argument_group("task (what the outputs mean)")
    group.add_argument("--task", choices=["classify", "detect"], help="classify: class scores; detect: boxes")
    group.add_argument("--labels", metavar="FILE", help="label names, one per line, class 0 first")
    group.add_argument("--head", choices=["auto", "ultralytics", "ssd", "decoded"],
                       help="detect: the output layout (default auto, told apart by shapes)")
    group.add_argument("--score-threshold", type=fraction, metavar="X", help="detect: lowest score kept (0.25)")
    group.add_argument("--iou-threshold", type=fraction, metavar="X", help="detect: NMS overlap (0.45)")
    group.add_argument("--max-detections", type=positive_int, metavar="N", help="detect: per image (100)")


# ----- from flags to the library's options -------------------------------------------


def torch_options(args, model: str | None, runtime: str | None, strict: bool = True) -> dict[str, Any]:
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


def tolerances(items: list[str] | None, default: float) -> dict[str, float]:
    """``--atol 1e-3 --atol logits=1e-2``: a default ("" key) and per-output values."""
    tolerances = {"": default}
    for item in items or []:
        name, _, value = item.rpartition("=")
        try:
            tolerances[name] = tolerance(value)
        except argparse.ArgumentTypeError:
            raise InputError(f"expected a tolerance like 1e-3 or OUTPUT=1e-3 (finite, >= 0), found {item!r}.",
                             hint="Give a number, optionally prefixed by an output name.") from None
    return tolerances


_DETECT_FLAGS = {"head": "--head", "score_threshold": "--score-threshold", "iou_threshold": "--iou-threshold",
                 "max_detections": "--max-detections"}


def bundle_choice(model: str, name: str | None, runtime: str | None):
    """For a bundle, the model this device runs (verified first), or the one --model names; None
    for a model file, where --model is refused."""
    from kit.deploy.choose import resolve

    choice = resolve(model, name, runtime)
    if choice is None and name:
        raise InputError("--model picks a model inside a bundle; the model given is a file.",
                         hint="Drop --model, or give a .kitbundle folder.")
    return choice


def task_from(args, stored: dict | None = None):
    """The task the flags describe, over the one the model records (``stored``); None for neither."""
    from kit import tasks

    settings = dict(stored or {})
    if args.task:
        settings = {"name": args.task} if args.task != settings.get("name") else settings
    given = {key: getattr(args, key) for key in _DETECT_FLAGS if getattr(args, key) is not None}
    if given and settings.get("name") != "detect":
        raise InputError(f"{', '.join(_DETECT_FLAGS[key] for key in given)} apply to detection; the task is "
                         f"{settings.get('name') or 'not given'}.", hint="Add --task detect.")
    if args.labels:
        settings["labels"] = tasks.read_labels(args.labels)
    if not settings:
        return None
    if "name" not in settings:
        raise InputError("--labels names the classes of a task; found no --task and none recorded.",
                         hint="Add --task classify or --task detect.")
    return tasks.from_dict({**settings, **given})
