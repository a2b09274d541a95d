"""kit run: a model once, on given, image or random inputs (outputs summarized and saved), or
over a camera, video, stream or image folder (--source, kit.cli.stream)."""

from __future__ import annotations

from pathlib import Path

from kit.cli import args as flags
from kit.cli import render, stream
from kit.core.errors import InputError

_ONE_BATCH = 0  # --random without N: one call at the model's own batch


def add_parser(commands, common) -> None:
    parser = commands.add_parser("run", parents=[common], help="run a model once and save its outputs")
    parser.add_argument("model", help="model file, a bundle folder (its best model here), or file.py:factory "
                                      "for the torch runtime")
    parser.add_argument("--model", dest="bundle_model", metavar="NAME",
                        help="with a bundle: run this model of it instead of the one chosen for this device")
    flags.add_runtime(parser)
    feed = parser.add_mutually_exclusive_group(required=True)
    feed.add_argument("--input", action="append", metavar="[NAME=]FILE",
                      help=".npy per input (NAME=file.npy), or one .npz keyed by input name")
    feed.add_argument("--image", help="an image, decoded with OpenCV and preprocessed as the model records")
    feed.add_argument("--source", metavar="SRC", help="frames from a camera (0, /dev/video0), a video file, an "
                                                      "rtsp:// or http:// stream, a folder of images, or "
                                                      "gst:PIPELINE (OpenCV with GStreamer)")
    feed.add_argument("--random", type=flags.positive_int, nargs="?", const=_ONE_BATCH, metavar="N",
                      help="N random samples, seeded (default: one batch): one batch of N when the batch axis is "
                           "dynamic, else one call per batch the model fixes")
    parser.add_argument("--seed", type=flags.non_negative_int, default=0, help="seed for --random (a whole number >= 0)")
    flags.add_output(parser, "save outputs to this .npz, keyed by output name")
    parser.add_argument("--optimization", choices=["disable", "basic", "extended", "all"],
                        help="ONNX Runtime graph optimization level (default all)")
    parser.add_argument("--rebuild-if-stale", action="store_true",
                        help="TensorRT: rebuild an engine built for another TensorRT or GPU from its recorded ONNX")
    parser.add_argument("--draw", metavar="OUT.jpg", help="with --image and a task: the image with its results drawn")
    flags.add_task(parser)
    flags.add_torch_source(parser)
    flags.add_preprocess(parser)
    flags.add_threads(parser)
    stream.add_flags(parser)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from kit.core import provenance
    from kit.core.fileio import atomic_output, check_output_path
    from kit.data.feeds import feeds_from_files
    from kit.data.golden import save_arrays
    from kit.runtimes.registry import load

    if args.output:
        if Path(args.output).suffix != ".npz":
            raise InputError(f"expected an output path ending in .npz, found {args.output}.", hint="Use -o out.npz.")
        check_output_path(args.output, *_files_run_reads(args))
    if args.preprocess and not (args.image or args.source):
        raise InputError("--preprocess describes how an image becomes the model's input; found no --image or "
                         "--source.", hint="Add --image FILE, or drop --preprocess.")
    stream.check_flags(args, _files_run_reads(args))
    if args.draw:
        _check_draw(args)
    options = flags.torch_options(args, args.model, args.runtime)
    if args.threads is not None:
        options["threads"] = args.threads
    if args.optimization:
        options["optimization"] = args.optimization
    if args.rebuild_if_stale:
        options["rebuild_if_stale"] = True
    image = None
    choice = _bundle_choice(args)
    if choice:
        args.model, args.runtime = str(choice.path), choice.runtime
    with load(args.model, args.runtime, **options) as rt:
        stored = provenance.read(args.model)  # after loading: a broken file is the runtime's to explain
        task = flags.task_from(args, stored.get("task"))
        if args.draw and task is None:
            raise InputError("--draw draws a task's results; this model records no task.",
                             hint="Add --task classify or --task detect (and --labels FILE).")
        if args.source is not None:
            summary, result = stream.run_source(args, rt, stored, task)
        elif args.image:  # the way a frame of --source and an image sent to kit serve go
            from kit.deploy.stream import FrameProcessor

            processor = FrameProcessor.for_model(rt, task, stored.get("preprocess"), args.preprocess,
                                                 model=args.model)
            image = processor.steps.read(args.image)
            processed = processor(image)
            outputs = processed.outputs
        elif args.random is not None:
            outputs = _run_random(rt, args.random, args.seed)
        else:
            outputs = rt.run(feeds_from_files(rt.inputs, args.input))
        info, input_spec = rt.info, rt.inputs[0]
    if args.source is not None:
        summary = {"model": args.model, "bundle": choice.to_dict() if choice else None, "runtime": info,
                   "task": task.name if task else None, **summary}
        if args.json:
            return render.print_json(summary)
        console = render.console()
        if choice:
            console.print(f"bundle: chose {choice.why}", highlight=False)
        stream.print_report(console, args, info, result)
        return 0
    if args.output:
        try:
            with atomic_output(args.output) as tmp, open(tmp, "wb") as handle:
                save_arrays(handle, outputs)  # np.savez(handle, **outputs) breaks on an output named 'file'
        except OSError as exc:  # a full disk or a quota: the temporary file is gone, nothing is at -o
            raise render.write_failed(args.output, exc) from exc
    results = None if not task else [processed.results] if image is not None else task.results(
        outputs, input_hw=_input_hw(input_spec))
    if args.draw:
        _draw(args.draw, task.draw(image, results[0]))
    summary = {"model": args.model, "bundle": choice.to_dict() if choice else None, "runtime": info,
               "output_file": args.output}
    if image is not None:  # as kit serve's /predict reports an image
        from kit.deploy.stream import image_report

        summary.update(image_report(processed, task))
    else:
        from kit.core.formatting import summaries

        summary["outputs"] = summaries(outputs)
        if task:  # one list of results per sample
            summary.update(task=task.name, results=results)
    if args.json:
        return render.print_json(summary)
    # One line per output rather than a table: output names and numbers are never cut at 80 columns.
    console = render.console()
    if choice:
        console.print(f"bundle: chose {choice.why}", highlight=False)
    console.print(f"ran {args.model} on {info['runtime']} {info.get('version') or ''}".rstrip())
    for name, stats in summary["outputs"].items():
        console.print(f"{name}: {stats['dtype']}{stats['shape']}, min {stats['min']:.4g}, max {stats['max']:.4g}, "
                      f"mean {stats['mean']:.4g}")
        if stats.get("top5") and not task:
            console.print("  top-5 of the first row (class:value): "
                          + ", ".join(f"{i}:{v:.3g}" for i, v in stats["top5"]))
    for index, sample in enumerate((results or [])[:MAX_SAMPLES_PRINTED]):
        where = args.image if image is not None else f"sample {index}"
        console.print(f"{task.name} {where}" + (" (boxes in the image's pixels):" if task.name == "detect" and image
                                                 is not None else ":"))
        for line in task.lines(sample):
            console.print(f"  {line}", highlight=False)
    if results and len(results) > MAX_SAMPLES_PRINTED:
        console.print(f"(results of {len(results) - MAX_SAMPLES_PRINTED} more samples in --json)")
    if args.output:
        console.print(f"saved outputs to {args.output}")
    if args.draw:
        console.print(f"drew the results on {args.draw}")
    return 0


MAX_SAMPLES_PRINTED = 4


def _bundle_choice(args):
    """For a bundle: the model this device runs (verified first), or the one --model names."""
    choice = flags.bundle_choice(args.model, args.bundle_model, args.runtime)
    for output in filter(None, (args.output, args.draw, args.save, args.jsonl)) if choice else ():  # only read
        if Path(args.model).resolve() in Path(output).resolve().parents:
            raise InputError(f"{output} is inside the bundle {args.model}, which kit run only reads.",
                             hint="Write it beside the bundle.")
    return choice


def _input_hw(spec) -> tuple[int, int] | None:
    """Height and width of an image input (NCHW or NHWC), for boxes given as fractions of it."""
    shape = spec.shape or ()
    if len(shape) != 4:
        return None
    hw = shape[2:4] if shape[1] in (1, 3) else shape[1:3]
    return tuple(hw) if all(isinstance(d, int) for d in hw) else None


def _check_draw(args) -> None:
    from kit.core.fileio import check_output_path

    if not args.image:
        raise InputError("--draw draws a task's results on the input image; it needs --image and a task (recorded "
                         "with the model, or --task).", hint="Add --image FILE and --task classify|detect.")
    if Path(args.draw).suffix.lower() not in (".jpg", ".jpeg", ".png", ".bmp", ".webp"):
        raise InputError(f"expected --draw to end in .jpg, .png, .bmp or .webp, found {args.draw}.",
                         hint="Use --draw out.jpg.")
    check_output_path(args.draw, *_files_run_reads(args))


def _draw(path: str, image) -> None:
    import cv2

    from kit.core.fileio import atomic_output

    encoded, data = cv2.imencode(Path(path).suffix.lower(), image)
    if not encoded:
        raise InputError(f"OpenCV could not encode {path}.", hint="Use --draw out.jpg or out.png.")
    try:
        with atomic_output(path) as tmp:
            tmp.write_bytes(data.tobytes())
    except OSError as exc:
        raise render.write_failed(path, exc) from exc


def _files_run_reads(args) -> list[str]:
    """Every file ``kit run`` reads, so that -o never replaces one. ``--input NAME=FILE`` counts
    both ways: which reading applies is known only once the model's input names are."""
    items = args.input or []
    named = [item.partition("=")[2] for item in items if "=" in item]
    source = [args.source] if args.source and Path(args.source).is_file() else []  # a video file
    return [path for path in (args.model, args.weights, args.image, args.labels, *items, *named, *source) if path]




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
