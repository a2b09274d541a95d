"""edgetpu_compiler: the command the kit prints and runs, its log read into numbers, and the
compiled model put beside the original without ever replacing a file (the compiler itself
overwrites). The compiler drops metadata, so the kit's provenance is carried over."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.core import provenance


def compiler_command(model: Path, folder: Path) -> list[str]:
    return ["edgetpu_compiler", "-s", "-o", _argument(folder), _argument(model)]


def _argument(path: Path) -> str:
    """A path the compiler cannot take for an option (-x.tflite becomes ./-x.tflite)."""
    return f"./{path}" if str(path).startswith("-") else str(path)


@dataclass
class Compiled:
    """What one edgetpu_compiler run gave: its log read into numbers, the compiled model's path
    (None when an existing file kept its place), notes for the user, and why it failed."""

    compiler: dict[str, Any] | None = None
    path: str | None = None
    notes: list[str] = field(default_factory=list)
    failure: str | None = None


def compile_model(path: Path) -> Compiled:
    """Run the printed command with a private output folder beside the model, then move its files
    (NAME_edgetpu.tflite, NAME_edgetpu.log) into place: an existing file is never replaced."""
    result = Compiled()
    try:
        workdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        result.notes.append(f"not compiled: cannot write beside {path} ({exc.strerror}); run the command above "
                            "in a folder you can write to.")
        return result
    try:
        result.compiler = _run_compiler(compiler_command(path, workdir))
        result.compiler["log"] = result.compiler["log"].replace(str(workdir), str(path.parent))  # no temporary path
        if result.compiler["returncode"] != 0:
            result.failure = (f"edgetpu_compiler failed (exit {result.compiler['returncode']}): "
                              f"{result.compiler['log'].strip().splitlines()[-1:]}")
            return result
        if result.compiler["ops_on_cpu"]:
            result.notes.append(f"edgetpu_compiler left {result.compiler['ops_on_cpu']} ops on the CPU.")
        compiled = workdir / f"{path.stem}_edgetpu.tflite"
        if compiled.is_file():
            _keep_provenance(path, compiled, result.compiler)
        for produced in sorted(workdir.iterdir()):
            target = path.parent / produced.name
            if _move_without_replacing(produced, target):
                result.path = str(target) if produced == compiled else result.path
            else:
                result.notes.append(f"kept the existing {target}: the kit never replaces a file, so this compile's "
                                    f"{produced.name} was discarded; move the old one away and rerun to replace it.")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def _keep_provenance(original: Path, compiled: Path, compiler: dict[str, Any]) -> None:
    """edgetpu_compiler drops metadata: give the compiled model the original's provenance."""
    stored = provenance.read(original)
    if stored:
        provenance.write_tflite(compiled, {**stored, "stage": "edgetpu-compile", "parent": original.name,
                                           "compiler": compiler["version"]})


def _move_without_replacing(source: Path, target: Path) -> bool:
    """Rename ``source`` to ``target`` unless something (a file, a link) is already there."""
    try:
        os.link(source, target)  # fails on an existing name, atomically
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links
        if os.path.lexists(target):
            return False
        os.replace(source, target)
    return True


def _run_compiler(command: list[str]) -> dict[str, Any]:
    """Run edgetpu_compiler and read its log: version, ops mapped, subgraphs, memory."""
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    log = finished.stdout + finished.stderr
    number = lambda pattern: (int(m.group(1)) if (m := re.search(pattern, log)) else None)  # noqa: E731
    text = lambda pattern: (m.group(1).strip() if (m := re.search(pattern, log)) else None)  # noqa: E731
    return {"returncode": finished.returncode, "version": text(r"(Edge TPU Compiler version [^\n]+)"),
            "ops_on_tpu": number(r"Number of operations that will run on Edge TPU:\s*(\d+)"),
            "ops_on_cpu": number(r"Number of operations that will run on CPU:\s*(\d+)"),
            "subgraphs": number(r"Number of Edge TPU subgraphs:\s*(\d+)"),
            "on_chip_memory": text(r"On-chip memory used for caching model parameters:\s*([^\n]+)"),
            "off_chip_memory": text(r"Off-chip memory used for streaming uncached model parameters:\s*([^\n]+)"),
            "log": log[-4000:]}
