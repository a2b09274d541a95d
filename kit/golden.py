"""Golden files: inputs and a reference model's outputs in one .npz, so one machine can
check another (a workstation's FP32 outputs against the device's INT8 engine).

Keys: ``input.NAME`` and ``output.NAME`` arrays, and ``meta``: JSON text (model, runtime,
kit version, sample count). Read with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kit import provenance
from kit.errors import InputError
from kit.fileio import atomic_output, check_output_path


@dataclass
class Golden:
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    meta: dict[str, Any]


def check_golden_path(path: str | os.PathLike, *inputs: str | os.PathLike | None) -> Path:
    """Refuse a golden path that is not .npz, or that would overwrite one of the inputs (data, models)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise InputError(f"expected a golden file ending in .npz, found {path}.", hint="Name it golden.npz.")
    return check_output_path(path, *inputs)


def save_golden(path: str | os.PathLike, golden: Golden) -> Path:
    path = check_golden_path(path)
    arrays = {f"input.{k}": v for k, v in golden.inputs.items()} | {f"output.{k}": v for k, v in golden.outputs.items()}
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, meta=np.array(json.dumps(provenance.new(**golden.meta))), **arrays)
    return path


def load_golden(path: str | os.PathLike) -> Golden:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"golden file {path} does not exist.", hint="Write one with kit compare A --save-golden.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            inputs = {k.removeprefix("input."): archive[k] for k in archive.files if k.startswith("input.")}
            outputs = {k.removeprefix("output."): archive[k] for k in archive.files if k.startswith("output.")}
            meta = json.loads(str(archive["meta"])) if "meta" in archive.files else None
    except (ValueError, OSError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise InputError(f"could not read {path} as a golden file ({exc}).",
                         hint="Golden files are written by kit compare --save-golden.") from exc
    if meta is None or not inputs or not outputs:
        raise InputError(f"{path} is not a golden file: expected input.*, output.* and meta entries.",
                         hint="Golden files are written by kit compare --save-golden.")
    return Golden(inputs, outputs, meta)
