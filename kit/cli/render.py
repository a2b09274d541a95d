"""How the commands print: rich consoles, tables that fold instead of cutting, progress on
stderr, JSON for scripts. At 80 columns (every pipe and CI log) no number, node name, path
or install command is ever cut."""

from __future__ import annotations

import json
from typing import Any

from kit.core.errors import InputError


def console(stderr: bool = False):
    from rich.console import Console

    from kit.core.quiet import terminal

    # No markup: shapes like [batch, 3] and user paths must print as they are. Soft wrap: a line of
    # text is never broken by rich (which splits paths and numbers mid-word); the terminal wraps it.
    return Console(file=terminal() if stderr else None, markup=False, soft_wrap=True)


def styled(text: str, style: str):
    from rich.text import Text

    return Text(text, style=style)


def table(title, *columns):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        # A value wider than its column wraps onto the next line ("fold"): rich's default would cut
        # it with an ellipsis, and at 80 columns that cut numbers, node names and paths.
        table.add_column(column, overflow="fold")
    return table


def spec_table(title: str, specs: list[dict]):
    rows = table(title, "name", "shape", "dtype")
    for spec in specs:
        rows.add_row(spec["name"], "[" + ", ".join(map(str, spec["shape"] or ["?"])) + "]", spec["dtype"])
    return rows


class progress:
    """Progress lines on stderr while long work runs (silent with --json)."""

    def __init__(self, args):
        self.enabled = not args.json
        self.status = None

    def __enter__(self):
        if self.enabled:
            self.status = console(stderr=True).status("working")
            self.status.start()
        return self.say

    def say(self, message: str) -> None:
        if self.status is not None:
            self.status.update(message)

    def __exit__(self, *exc_info):
        if self.status is not None:
            self.status.stop()


def print_json(data: Any) -> int:
    print(json.dumps(data, indent=2, default=str))
    return 0


def write_failed(path, exc: OSError) -> InputError:
    """An output that could not be written (permissions, a vanished folder), without the temporary path.
    (A full disk is atomic_output's DiskFullError.)"""
    return InputError(f"could not write {path} ({exc.strerror or type(exc).__name__}); nothing was written.",
                      hint="Choose a folder you can write to.")
