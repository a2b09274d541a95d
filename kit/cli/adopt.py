"""kit adopt: the kit's provenance (inputs, preprocessing, task, labels) for a third-party model."""

from __future__ import annotations

from kit.cli import args as flags
from kit.cli import render


def add_parser(commands, common) -> None:
    parser = commands.add_parser("adopt", parents=[common],
                                 help="give a third-party .onnx/.tflite the provenance kit exports carry")
    parser.add_argument("model", help="the .onnx or .tflite file (left as it is)")
    flags.add_output(parser, "the adopted copy (same format)", required=True)
    flags.add_preprocess(parser, stored=True)
    flags.add_task(parser)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from kit.export.adopt import adopt

    result = adopt(args.model, args.output, preprocess=args.preprocess, task=flags.task_from(args))
    data = result.to_dict()
    if args.json:
        return render.print_json(data)
    console = render.console()
    task = data["task"]
    described = f"task {task['name']}, {len(task['labels']) or 'no'} labels" if task else "no task"
    console.print(render.styled("adopted", "green"), f"{data['path']} ({data['format']} {data['precision']}, "
                  f"{described}); outputs checked equal to {data['source']}", highlight=False)
    for spec in data["inputs"]:
        console.print(f"input {spec['name']}: {spec['dtype']}{spec['shape']}", highlight=False)
    if data["preprocess"]:
        console.print("preprocess: " + ", ".join(f"{k}={v}" for k, v in data["preprocess"].items()), highlight=False)
    for note in data["notes"]:
        console.print(render.styled("note:", "yellow"), note, highlight=False)
    console.print(f"next: kit run {data['path']} --image IMAGE")
    return 0
