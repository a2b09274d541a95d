"""Reading .npy and .npz files safely (no pickled objects) and without loading them whole:
memory-mapped where they lie, compressed members decompressed row by row."""

from __future__ import annotations

import os
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kit.core.errors import InputError


def load_npy(path: Path) -> np.ndarray:
    """An .npy file memory-mapped (never unpickled)."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # EOFError: an empty file
        if "Python objects" in str(exc) or "allow_pickle" in str(exc):
            raise _objects_refused(path) from None
        raise InputError(f"could not read {path} as a numpy .npy file ({exc}).",
                         hint="Save arrays with numpy.save.") from exc
    if not isinstance(array, np.ndarray):
        raise InputError(f"could not read {path} as a numpy .npy file (it is an .npz archive).",
                         hint="Name it .npz, or save one array with numpy.save.")
    return array


def _objects_refused(path, key: str | None = None) -> InputError:
    where = f"{path}" + (f" (array {key})" if key else "")
    return InputError(f"{where} holds Python objects (dtype object); the kit reads numeric arrays and never "
                      "unpickles data.", hint="Save numeric arrays, e.g. numpy.asarray(x, dtype=numpy.float32).")


_LOCAL_HEADER = struct.Struct("<4s5H3I2H")  # a zip local file header, 30 bytes


def npz_arrays(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], Callable[[], None]]:
    """Every array of an .npz, keyed as numpy.load keys them, without reading the data, and a
    function that closes what stays open. Object arrays are refused (nothing is unpickled)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            entries = {info.filename.removesuffix(".npy"): _npz_member(path, archive, info)
                       for info in archive.infolist() if info.filename.endswith(".npy")}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, struct.error) as exc:
        raise InputError(f"could not read {path} as a numpy .npz file ({exc}).",
                         hint="Save arrays with numpy.savez.") from exc

    def close():  # a memory map is unmapped (and its file closed) when the last reference goes
        for entry in entries.values():
            if isinstance(entry, _CompressedRows):
                entry.close()
        entries.clear()

    return entries, close


def _npz_member(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo):
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"array {info.filename} uses .npy format {version[0]}.{version[1]}")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(member)
        header_size = member.tell()
    if dtype.hasobject:
        raise _objects_refused(path, info.filename.removesuffix(".npy"))
    if info.flag_bits & 0x1:
        raise ValueError(f"array {info.filename} is encrypted")
    order = "F" if fortran else "C"
    if np.prod(shape, dtype=np.float64) == 0:
        return np.empty(shape, dtype, order=order)
    if info.compress_type == zipfile.ZIP_STORED:  # numpy.savez: the bytes lie as they are in the file
        with open(path, "rb") as handle:
            handle.seek(info.header_offset)
            fields = _LOCAL_HEADER.unpack(handle.read(_LOCAL_HEADER.size))
        if fields[0] != b"PK\x03\x04":
            raise ValueError(f"array {info.filename} has no local zip header")
        start = info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1] + header_size
        return np.memmap(path, dtype=dtype, mode="r", offset=start, shape=shape, order=order)
    if fortran:  # samples are not contiguous: decompress it whole (rare: numpy.savez_compressed of x.T)
        with archive.open(info) as member:
            return np.lib.format.read_array(member, allow_pickle=False)
    return _CompressedRows(path, info.filename, shape, dtype, header_size)


class _CompressedRows:
    """A compressed .npz member read by rows: each slice decompresses only what it needs,
    continuing where the previous one ended (batches in order never decompress twice)."""

    def __init__(self, path: Path, name: str, shape: tuple[int, ...], dtype: np.dtype, header_size: int):
        self.path, self.name, self.shape, self.dtype, self.header_size = path, name, shape, dtype, header_size
        self.ndim = len(shape)
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        self._archive = self._member = None

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice) -> np.ndarray:
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise TypeError("compressed .npz arrays are read by contiguous slices of samples")
        start, stop, _ = rows.indices(self.shape[0])
        stop = max(start, stop)
        if self._member is None:
            self._archive = zipfile.ZipFile(self.path)
            self._member = self._archive.open(self.name)
        self._member.seek(self.header_size + start * self.row_bytes)  # forward: reads on; backward: restarts
        data = self._member.read((stop - start) * self.row_bytes)
        return np.frombuffer(data, self.dtype).reshape((stop - start, *self.shape[1:]))

    def __array__(self, dtype=None, copy=None):
        array = self[:]
        return array if dtype is None else array.astype(dtype)

    def close(self) -> None:
        if self._member is not None:
            self._member.close()
            self._archive.close()
            self._member = self._archive = None
