"""kit runtimes: every backend, whether it works here, its version and its install command."""

from __future__ import annotations

from kit.cli import render
from kit.core.errors import KitError


def add_parser(commands, common) -> None:
    parser = commands.add_parser("runtimes", parents=[common], help="list backends and whether they work here")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from kit.runtimes.registry import get, known

    rows = []
    for name, target in known().items():
        try:
            cls = get(name)
            state = cls.availability().to_dict()
            rows.append({"name": name, "entry": target, "suffixes": list(cls.suffixes),
                         "named_suffixes": list(cls.named_suffixes), **state})
        except KitError as error:
            rows.append({"name": name, "entry": target, "suffixes": [], "named_suffixes": [], "usable": False,
                         "version": None,
                         "detail": str(error), "install": ""})
    if args.json:
        return render.print_json(rows)
    # Short fields in aligned columns, then the detail and the install command each on a line of their
    # own: a table cell would cut or fold them at 80 columns, and a command must copy as one line.
    from rich.text import Text

    console = render.console()
    name_width = max(len(row["name"]) for row in rows)
    version_width = max(len(row["version"] or "-") for row in rows)
    console.print(f"{'runtime':<{name_width}}  usable  {'version':<{version_width}}  opens")
    for row in rows:
        usable = ("yes   ", "green") if row["usable"] else ("no    ", "red")
        console.print(Text.assemble(f"{row['name']:<{name_width}}  ", usable,
                                    f"  {row['version'] or '-':<{version_width}}  ", _opens(row)))
        if row["detail"]:
            console.print(f"    {row['detail']}", highlight=False)
        if not row["usable"] and row["install"]:
            console.print(f"    install: {row['install']}", highlight=False)
    return 0


def _opens(row: dict) -> str:
    """``.xml (.onnx .tflite with --runtime NAME)``: what it opens by default, then when named."""
    named = f" ({' '.join(row['named_suffixes'])} with --runtime {row['name']})" if row["named_suffixes"] else ""
    return (" ".join(row["suffixes"]) or "-") + named
