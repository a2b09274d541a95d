"""Golden files: inputs and a reference model's outputs in one .npz, so one machine can
check another (a workstation's FP32 outputs against the device's INT8 engine).

Keys: ``input.NAME`` and ``output.NAME`` arrays, and ``meta``: JSON text (model, runtime,
kit version, sample count). Read with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from kit.core import provenance
from kit.core.errors import InputError
from kit.core.fileio import atomic_output, check_output_path


@dataclass
class Golden:
    inputs: dict[str, np.ndarray]  # memory-mapped when loaded: read as they are sliced
    outputs: dict[str, np.ndarray]
    meta: dict[str, Any]
    close: Callable[[], None] = field(default=lambda: None, repr=False)


def save_arrays(file: str | os.PathLike | IO[bytes], arrays: Mapping[str, np.ndarray]) -> None:
    """numpy.savez for any names: ``np.savez(file, **arrays)`` fails on an array named ``file``
    (its own parameter). Same format (stored .npy members), readable with numpy.load;
    object arrays are refused rather than pickled. Members carry a fixed date, so the same
    arrays give the same bytes (a bundle's manifest hashes its golden files)."""
    with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            with archive.open(zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE), "w", force_zip64=True) as member:
                _write_npy(member, np.asanyarray(array))


CHUNK_BYTES = 1 << 20
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest a zip member can carry


def _write_npy(member: IO[bytes], array: np.ndarray) -> None:
    """numpy.lib.format.write_array without its copies (up to 16 MB at a time, most of a
    memory-mapped golden file): the header, then the rows straight from the array's memory."""
    if array.dtype.hasobject:
        raise InputError("expected numeric arrays to save, found Python objects (dtype object).",
                         hint="Convert them with numpy.asarray(x, dtype=...) first.")
    header = {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False, "shape": array.shape}
    try:
        np.lib.format.write_array_header_1_0(member, header)
    except ValueError:  # a header over 64 KB (a very long shape): format 2.0
        np.lib.format.write_array_header_2_0(member, header)
    if array.ndim == 0:
        member.write(array.tobytes())
        return
    rows = max(1, CHUNK_BYTES // max(1, array[:1].nbytes))
    for start in range(0, len(array), rows):
        member.write(memoryview(np.ascontiguousarray(array[start:start + rows])).cast("B"))  # no copy


def check_golden_path(path: str | os.PathLike, *inputs: str | os.PathLike | None) -> Path:
    """Refuse a golden path that is not .npz, or that would overwrite one of the inputs (data, models)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise InputError(f"expected a golden file ending in .npz, found {path}.", hint="Name it golden.npz.")
    return check_output_path(path, *inputs)


def save_golden(path: str | os.PathLike, golden: Golden) -> Path:
    path = check_golden_path(path)
    with atomic_output(path) as tmp:
        save_arrays(tmp, _entries(golden.inputs, golden.outputs) | {"meta": _meta(golden.meta)})
    return path


def _entries(inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"input.{k}": v for k, v in inputs.items()} | {f"output.{k}": v for k, v in outputs.items()}


def _meta(meta: dict[str, Any]) -> np.ndarray:
    return np.array(json.dumps(provenance.new(**meta)))


class GoldenWriter:
    """A golden file written batch by batch, so no data set has to fit in memory.

    Each array is spooled to an .npy sized for ``count`` samples in the output's temporary
    folder (memory-mapped) and the .npz is assembled from them when the block ends without
    an error; until then nothing appears at ``path``, and on an error nothing is left.
    """

    def __init__(self, path: str | os.PathLike, count: int, meta: dict[str, Any]):
        self.path, self.count, self.meta = check_golden_path(path), count, meta
        self.written = 0
        self._spooled: dict[str, np.memmap] = {}

    def __enter__(self) -> GoldenWriter:
        self._atomic = atomic_output(self.path)
        self._target = self._atomic.__enter__()
        return self

    def add(self, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> None:
        """The next samples: inputs (in the reference's source layout) and the reference's outputs."""
        size = 0
        for key, array in _entries(inputs, outputs).items():
            if key not in self._spooled:
                spool = self._target.with_name(f"spool-{len(self._spooled)}.npy")
                self._spooled[key] = np.lib.format.open_memmap(spool, "w+", array.dtype, (self.count, *array.shape[1:]))
            size = len(array)
            self._spooled[key][self.written:self.written + size] = array
        self.written += size

    def __exit__(self, *exc_info) -> None:
        try:
            if exc_info[0] is None:
                save_arrays(self._target, {key: spooled[:self.written] for key, spooled in self._spooled.items()}
                            | {"meta": _meta(self.meta)})
        finally:
            for spooled in self._spooled.values():  # before the rename: atomic_output moves what it finds
                os.unlink(spooled.filename)
            self._spooled.clear()
        self._atomic.__exit__(*exc_info)


def load_golden(path: str | os.PathLike) -> Golden:
    """A golden file's arrays, memory-mapped (read as they are sliced); ``close()`` when done."""
    from kit.data.arrays import npz_arrays

    path = Path(path)
    hint = "Write one with: kit compare MODEL --save-golden golden.npz --data DATA"
    if not path.is_file():
        raise InputError(f"golden file {path} does not exist.", hint=hint)
    arrays, close = npz_arrays(path)
    try:
        inputs = {k.removeprefix("input."): v for k, v in arrays.items() if k.startswith("input.")}
        outputs = {k.removeprefix("output."): v for k, v in arrays.items() if k.startswith("output.")}
        meta = json.loads(str(np.asarray(arrays["meta"]))) if "meta" in arrays else None
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        close()
        raise InputError(f"could not read {path} as a golden file ({exc}).", hint=hint) from exc
    if not isinstance(meta, dict) or not inputs or not outputs:
        close()
        raise InputError(f"{path} is not a golden file: expected input.*, output.* and meta entries.", hint=hint)
    return Golden(inputs, outputs, meta, close)
