"""File helpers: content hashes and writes that never leave a half-written output."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from kit.errors import InputError


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_output_path(output: str | os.PathLike, *inputs: str | os.PathLike) -> Path:
    """Refuse an output that would overwrite one of the inputs or land in a missing folder."""
    output = Path(output)
    for source in inputs:
        if source is not None and Path(source).exists() and output.exists() and output.samefile(source):
            raise InputError(
                f"output {output} is the same file as the input {source}.",
                hint="Choose another output path; the kit never overwrites its input.",
            )
    if not output.parent.is_dir():
        raise InputError(
            f"the folder for the output {output} does not exist.",
            hint=f"Create {output.parent} first or choose another output path.",
        )
    if output.is_dir():
        raise InputError(f"output {output} is a folder; expected a file path.", hint="Give a file name.")
    try:  # a folder may exist and still refuse files (read-only mounts, /proc): find out before the work
        fd, probe = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".probe", dir=output.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"cannot write {output} ({exc.strerror}).",
                         hint="Choose a folder you can write to.") from exc
    return output


@contextlib.contextmanager
def atomic_output(output: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write ``output`` to; move it into place only if the block succeeds.

    The temporary path sits in a private folder inside the target folder, so the final
    rename is atomic on the same file system, and companion files written beside it (an
    ONNX model's external data) move with it. On any exception the folder is deleted and
    ``output`` is left as it was.
    """
    output = Path(output)
    workdir = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent))
    try:
        yield workdir / output.name
        # Companions first, the main file last: a reader never sees the model without its data.
        for companion in sorted(p for p in workdir.iterdir() if p.name != output.name):
            os.replace(companion, output.parent / companion.name)
        os.replace(workdir / output.name, output)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
