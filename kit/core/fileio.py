"""File helpers: content hashes, output checks and writes that never leave a half-written output."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from kit.core.errors import DiskFullError, InputError


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_output_path(output: str | os.PathLike, *inputs: str | os.PathLike | None) -> Path:
    """Refuse an output that is one of the inputs or that cannot be written.

    "The same file" is decided on the files themselves (device and inode), so an output that
    reaches an input through a symbolic link, a hard link or another spelling of its path is
    refused. An input may be a factory reference (``models.py:make_model``): its file counts.
    """
    output = Path(output)
    for source in inputs:
        source_file = _input_file(source)
        if source_file is not None and same_file(output, source_file):
            linked = output.is_symlink() or source_file.is_symlink() or output.resolve() != source_file.resolve()
            raise InputError(
                f"output {output} is the same file as the input {source}{' (through a link)' if linked else ''}.",
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


def _input_file(source: str | os.PathLike | None) -> Path | None:
    """The file behind an input argument, if there is one (a path, or the file of ``file.py:function``)."""
    if source is None:
        return None
    path = Path(source)
    if path.exists():
        return path
    left, sep, right = str(source).rpartition(":")
    if sep and right.isidentifier() and Path(left).is_file():
        return Path(left)
    return None


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (symlinks followed, hard links included); False if either is missing."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): not the same file
        return False


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM held back until the block ends, then delivered as they would have been
    (Python's handlers are swapped for a recorder: a signal mask would not hold one that another
    thread takes). Only in the main thread, where Python runs signal handlers."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    # A handler a C library installed (getsignal: None) could not be put back: those are left alone.
    held = [number for number in (signal.SIGINT, getattr(signal, "SIGTERM", None))
            if number is not None and signal.getsignal(number) is not None]
    previous = {number: signal.signal(number, lambda number, frame: received.append(number)) for number in held}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in received:
            signal.raise_signal(number)


@contextlib.contextmanager
def atomic_output(output: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write ``output`` to; move it into place only if the block succeeds.

    The temporary path sits in a private folder inside the target folder, so the final
    rename is atomic on the same file system, and companion files written beside it (an
    ONNX model's external data) move with it. On any exception the folder is deleted and
    ``output`` is left as it was; a full disk is reported as such. The folder's name holds
    this process's id, so the leftovers of a killed process are removed on the next write of
    the same output. Files land with the mode new files get (0666 less the umask), whatever
    the library that wrote them chose.
    """
    output = Path(output)
    _remove_stale_temporaries(output)
    workdir = Path(tempfile.mkdtemp(prefix=f".{output.name}.{os.getpid()}.", suffix=".tmp", dir=output.parent))
    try:
        mode = _new_file_mode(workdir)
        yield workdir / output.name
        # Companions first, the main file last: a reader never sees the model without its data.
        # Ctrl-C and SIGTERM wait for the renames: one between them would pair a new companion
        # (an IR's .bin) with the old model file.
        with _signals_held():
            for companion in sorted(p for p in workdir.iterdir() if p.name != output.name):
                _set_mode(companion, mode)
                os.replace(companion, output.parent / companion.name)
            _set_mode(workdir / output.name, mode)
            os.replace(workdir / output.name, output)
    except Exception as exc:
        if disk_full(exc):
            raise disk_full_error(output) from exc
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _remove_stale_temporaries(output: Path) -> None:
    """Delete ``.NAME.PID.XXXX.tmp`` folders of this output whose process no longer runs (it was killed)."""
    pattern = re.compile(rf"\.{re.escape(output.name)}\.(\d+)\.\w+\.tmp")
    with contextlib.suppress(OSError):
        for entry in os.scandir(output.parent):
            match = pattern.fullmatch(entry.name)
            if match and entry.is_dir(follow_symlinks=False) and not _process_exists(int(match.group(1))):
                shutil.rmtree(entry.path, ignore_errors=True)


def _process_exists(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another write of the same output in this process (a thread) is still running
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # alive, another user's; or a number no process has: leave it alone
    return True


def _new_file_mode(folder: Path) -> int:
    """The mode this process gives new files (0666 less the umask), read without changing the umask."""
    probe = folder / ".mode-probe"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        return stat.S_IMODE(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
        os.unlink(probe)


def _set_mode(path: Path, mode: int) -> None:
    if path.is_file() and not path.is_symlink():  # tempfile and some converters create 0600 or 0755 files
        os.chmod(path, mode)


def disk_full_error(output: Path) -> DiskFullError:
    """What filled up while writing ``output``: its folder's disk, or the one holding the temporary
    folder (TMPDIR), where the kit and libraries such as ONNX Runtime keep working files; the
    one with less room left is the one that ran out."""
    folder, temporary = output.resolve().parent, Path(tempfile.gettempdir()).resolve()
    with contextlib.suppress(OSError):
        if shutil.disk_usage(temporary).free < shutil.disk_usage(folder).free:
            return DiskFullError(f"no space left on the disk holding {temporary}, where working files are kept, "
                                 f"while writing {output.name}. Nothing was written.",
                                 hint="Free some space there, or point TMPDIR at a disk with room.")
    return DiskFullError(f"no space left on the disk holding {folder} while writing {output.name}. "
                         "Nothing was written.", hint="Free some space there, or write the output to another disk.")


def disk_full(exc: BaseException) -> bool:
    """A full disk (ENOSPC, or a quota) anywhere in the exception's chain: libraries wrap it."""
    pending, seen = [exc], set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(current):  # libraries that report it as text (ONNX Runtime)
            return True
        seen.add(id(current))
        pending += [current.__cause__, current.__context__]
    return False


def model_files(path: str | os.PathLike) -> list[Path]:
    """The files a model is made of: the file and, for ONNX, the external data files it references;
    for OpenVINO IR (.xml), its weights (.bin beside it).

    A file merely named like a companion (a stale ``model.onnx.data``) is not part of the model.
    """
    path = Path(path)
    if path.suffix.lower() == ".xml":
        return [path, path.with_suffix(".bin")]
    if path.suffix.lower() != ".onnx":
        return [path]
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # no onnx package here, or not a readable model: it references nothing we can name
        return [path]
    return [path, *external_data_files(model, path, strict=False)]


def model_size(path: str | os.PathLike) -> int:
    """Bytes of the model and the external data it references."""
    return sum(p.stat().st_size for p in model_files(path) if p.is_file())


def external_data_files(model, path: str | os.PathLike, *, strict: bool = True) -> list[Path]:
    """The existing files an onnx.ModelProto loaded from ``path`` keeps tensors in.

    A location outside the model's folder (absolute, or climbing with ``..``) is never one of
    them: ``strict`` refuses the model for it, otherwise it is left out.
    """
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    from kit.core.errors import ModelFileError

    path = Path(path)
    folder = path.parent.resolve()
    files: list[Path] = []
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        location = ExternalDataInfo(tensor).location
        file = (folder / location).resolve()
        if os.path.isabs(location) or not file.is_relative_to(folder):
            if not strict:
                continue
            raise ModelFileError(f"{path} keeps tensor {tensor.name!r} in {location!r}, outside the model's folder; "
                                 "the kit does not read it.",
                                 hint="Use a model whose external data sits beside it (re-save it with onnx).")
        if file not in files and file.is_file():
            files.append(file)
    return files
