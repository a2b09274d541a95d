"""kit run --source: the model over a camera, video, stream or image folder (kit.deploy.stream),
with its flags and its report."""

from __future__ import annotations

from kit.cli import args as flags
from kit.cli import render
from kit.core.errors import InputError

STREAM_FLAGS = ("show", "save", "jsonl", "max_frames", "duration")


def add_flags(parser) -> None:
    group = parser.add_argument_group("with --source")
    group.add_argument("--show", action="store_true", help="show the frames with their results in a window "
                                                           "(q or Esc ends; needs OpenCV with a GUI)")
    group.add_argument("--save", metavar="OUT.mp4", help="write the frames with results, FPS and latency drawn "
                                                        "(.mp4, .avi or .mkv)")
    group.add_argument("--jsonl", metavar="OUT.jsonl", help="one JSON line per frame: index, timestamp, results, "
                                                           "stage times")
    group.add_argument("--max-frames", type=flags.positive_int, metavar="N", help="stop after N frames")
    group.add_argument("--duration", type=flags.positive_float, metavar="SECONDS", help="stop after this long")


def check_flags(args, reads: list[str]) -> None:
    """Before the model loads: stream flags only with --source, and outputs that are not inputs."""
    from kit.deploy.stream import check_outputs, check_window

    if args.source is None:
        given = [f"--{name.replace('_', '-')}" for name in STREAM_FLAGS if getattr(args, name) not in (None, False)]
        if given:
            raise InputError(f"{', '.join(given)} go with --source (a camera, video, stream or image folder).",
                             hint="Add --source SRC, or drop them.")
        return
    if args.output or args.draw:
        raise InputError("-o and --draw save one run's outputs; with --source the frames' results go to --jsonl and "
                         "the drawn frames to --save.", hint="Use --jsonl results.jsonl and --save out.mp4.")
    check_outputs(args.save, args.jsonl, reads)
    if args.show:
        check_window()


def run_source(args, rt, stored: dict, task) -> tuple[dict, object]:
    """The stream through the loaded runtime; the summary for --json and the result."""
    from kit.deploy.sources import open_source
    from kit.deploy.stream import FrameProcessor, run_stream

    processor = FrameProcessor.for_model(rt, task, stored.get("preprocess"), args.preprocess, model=args.model)
    source = open_source(args.source, prepare=processor.prepare)  # preprocessing beside the model
    with render.progress(args) as say:
        result = run_stream(processor, source, save=args.save, jsonl=args.jsonl, show=args.show,
                            max_frames=args.max_frames, duration=args.duration,
                            on_frame=lambda frames, seconds: say(f"frame {frames}, {frames / seconds:.1f} FPS"
                                                                 if seconds else f"frame {frames}"))
    return result.to_dict() | {"saved": args.save, "jsonl": args.jsonl}, result


def print_report(console, args, info: dict, result) -> None:
    summary = result.to_dict()
    console.print(f"ran {args.model} on {info['runtime']} {info.get('version') or ''}".rstrip(), highlight=False)
    console.print(f"over {result.source}: {result.frames} frames in {result.seconds:.2f} s, {result.fps:.1f} FPS "
                  "sustained", highlight=False)
    dropped = f"{result.dropped} frames dropped" if result.live else "no frame dropped (a file waits for the model)"
    console.print(f"{dropped}; stopped: {result.stopped}", highlight=False)
    rows = render.table("per frame, ms", "stage", "p50", "p99", "mean", "share")
    for stage, stats in summary["stages"].items():
        rows.add_row(stage, f"{stats['p50_ms']:.3f}", f"{stats['p99_ms']:.3f}", f"{stats['mean_ms']:.3f}",
                     f"{stats['share']:.0%}")
    console.print(rows)
    if args.save:
        console.print(f"saved the frames with their results to {args.save}", highlight=False)
    if args.jsonl:
        console.print(f"wrote {result.frames} result lines to {args.jsonl}", highlight=False)
