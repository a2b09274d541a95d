"""kit bundle: model variants, golden outputs, labels and pinned device installs in one folder."""

from __future__ import annotations

import shlex
from pathlib import Path

from kit.cli import args as flags
from kit.cli import render
from kit.core.formatting import size


def add_parser(commands, common) -> None:
    parser = commands.add_parser("bundle", parents=[common],
                                 help="bundle models for a device (kit doctor checks it there)")
    parser.add_argument("models", nargs="+", metavar="MODEL", help=".onnx and .tflite variants of one model")
    flags.add_output(parser, "the bundle: NAME.kitbundle (a folder), or NAME.kitbundle.tar.gz with --archive",
                     required=True)
    parser.add_argument("--archive", action="store_true", help="write one .tar.gz instead of a folder")
    flags.add_data(parser, "--data", "inputs for the golden outputs (default random)")
    parser.add_argument("--golden-samples", type=flags.positive_int, metavar="N",
                        help="golden inputs and outputs per model: the first N of --data (default 8)")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from kit.deploy.bundle import make_bundle, open_bundle

    with render.progress(args) as say:
        made = make_bundle(args.models, args.output, data=args.data, samples=args.golden_samples,
                           archive=args.archive, progress=say)
    with open_bundle(made if isinstance(made, Path) else made.root) as bundle:  # read back: what a device sees
        data = {"path": str(args.output), "manifest": bundle.manifest}
    if args.json:
        return render.print_json(data)
    console = render.console()
    total = sum(entry["size"] for entry in data["manifest"]["files"])
    console.print(render.styled("bundled", "green"), f"{args.output} ({len(data['manifest']['files'])} files, "
                  f"{size(total)}; manifest.json lists each file's SHA-256)")
    for model in data["manifest"]["models"]:
        golden = "golden outputs" if model["golden"] else "no golden outputs (runs on its device only)"
        console.print(f"  {model['name']}: {model['format']} {model['precision']}, for "
                      f"{', '.join(model['devices'])}; {golden}")
    console.print("on the device: pip install -r requirements/KIND.txt (cpu, coral or jetson), then")
    console.print(f"  kit doctor {shlex.quote(Path(args.output).name)}", highlight=False)
    return 0
