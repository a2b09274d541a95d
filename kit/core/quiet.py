"""Keep third-party output off the user's terminal: the kit reports its own progress and errors.

Two layers. ``silenced`` hushes Python-level chatter (warnings, prints, loggers) around one
converter call. ``captured_stderr`` keeps everything third parties write to stderr away from
the terminal for a whole command: C and C++ libraries (absl, oneDNN, XNNPACK, ONNX Runtime)
write to file descriptor 2 directly, past anything Python can redirect, and Python libraries'
log handlers (torch's ``W1128 ... _pytree.py``) hold on to the sys.stderr they started with.
The kit's own lines go to ``terminal()``.
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def silenced(*logger_names: str) -> Iterator[None]:
    """Python warnings, stdout, stderr and these loggers below ERROR, for the block's duration."""
    loggers = [logging.getLogger(name) for name in logger_names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class CapturedLog:
    """What third parties wrote to stderr during a ``captured_stderr`` block."""

    def __init__(self, capture=None):
        self._capture = capture

    def tail(self, lines: int = 10, limit: int = 1 << 16) -> list[str]:
        """The last lines worth showing when a command failed: libraries' start-up banners left out."""
        if self._capture is None:
            return []
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        size = self._capture.seek(0, os.SEEK_END)
        self._capture.seek(max(0, size - limit))
        text = self._capture.read().decode("utf-8", "replace")
        return [line for line in text.splitlines() if line.strip() and not _BANNER.match(line)][-lines:]


# Lines libraries print on every start whatever happens: absl's pre-init notice, absl/glog INFO
# records (I0000 00:00:...), TFLite's "INFO: Created TensorFlow Lite XNNPACK delegate".
_BANNER = re.compile(r"WARNING: All log messages before absl::InitializeLog|I\d{4} |INFO: ")

_terminal = None  # the user's real stderr while captured_stderr holds descriptor 2


def terminal():
    """Where the kit's own stderr lines go: the user's terminal, also during ``captured_stderr``."""
    return _terminal or sys.stderr


@contextlib.contextmanager
def captured_stderr(enabled: bool = True) -> Iterator[CapturedLog]:
    """Send file descriptor 2, and with it sys.stderr, to an anonymous temporary file for the block.

    ``terminal()`` writes to a duplicate of the original descriptor, so the kit's own lines still
    reach the user, and faulthandler reports a native crash (segfault, abort) there too. The
    capture has no name on disk: nothing is left behind, even after a kill. Yields a CapturedLog
    to show the captured tail when a command fails. When sys.stderr is not descriptor 2 (a test's
    capture), it stays where it is and only descriptor 2 moves.
    """
    if not enabled:
        yield CapturedLog()
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no descriptor 2 at all (a detached process)
        yield CapturedLog()
        return
    capture = tempfile.TemporaryFile()
    try:
        with _terminal_on(saved):
            os.dup2(capture.fileno(), 2)
            try:
                yield CapturedLog(capture)
            finally:
                with contextlib.suppress(Exception):
                    sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)
        capture.close()


@contextlib.contextmanager
def _terminal_on(fd: int) -> Iterator[None]:
    """Make ``fd`` the kit's terminal and faulthandler's file, when sys.stderr is descriptor 2."""
    global _terminal
    try:
        stderr_is_fd2 = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # io.StringIO, pytest's capture: not descriptor 2
        stderr_is_fd2 = False
    if not stderr_is_fd2:
        yield
        return
    _terminal = open(fd, "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace", closefd=False)
    crash_reports_were_on = faulthandler.is_enabled()
    faulthandler.enable(file=_terminal)
    try:
        yield
    finally:
        _terminal.flush()
        _terminal = None
        faulthandler.disable()
        if crash_reports_were_on:
            faulthandler.enable(file=sys.stderr)
