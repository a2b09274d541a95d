"""Tasks: what a model's outputs mean. Each task is one module (decoding and post-processing,
how results print, serialize and draw, and later its metrics); adding segmentation or pose
is one more module and one line in TASKS. A model's task, labels and post-processing settings
are recorded in its provenance (key ``task``), so run, eval, bench and the device read them
back instead of asking again."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from kit.core.errors import InputError
from kit.tasks.base import Task

TASKS = {"classify": "kit.tasks.classify:Classify", "detect": "kit.tasks.detect:Detect"}


def get(name: str) -> type[Task]:
    if name not in TASKS:
        raise InputError(f"expected a task among {', '.join(TASKS)}, found {name!r}.",
                         hint="classify for class scores, detect for boxes.")
    module, _, cls = TASKS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def from_dict(data: dict[str, Any]) -> Task:
    """The task a model's provenance records."""
    return get(data.get("name", "")).from_dict(data)


def read_labels(path: str | Path) -> list[str]:
    """Label names, one per line (class 0 first); blank lines at the end are ignored."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"labels file {path} does not exist.", hint="One label per line, class 0 first.")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"labels file {path} is not UTF-8 text.", hint="One label per line, class 0 first.") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise InputError(f"labels file {path} is empty.", hint="One label per line, class 0 first.")
    return [line.strip() for line in lines]
