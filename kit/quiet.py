"""Keep third-party output off the user's terminal: the kit reports its own progress and errors.

Two layers. ``silenced`` hushes Python-level chatter (warnings, prints, loggers) around one
converter call. ``native_stderr`` keeps what C and C++ libraries write straight to file
descriptor 2 (absl, oneDNN, XNNPACK, ONNX Runtime) away from the terminal for a whole command,
which Python's sys.stderr cannot do: those libraries never go through it.
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


class NativeLog:
    """What native code wrote to file descriptor 2 during a ``native_stderr`` block."""

    def __init__(self, capture=None):
        self._capture = capture

    def tail(self, lines: int = 10, limit: int = 1 << 16) -> list[str]:
        """The last lines worth showing when a command failed: libraries' start-up banners left out."""
        if self._capture is None:
            return []
        self._capture.flush()
        size = self._capture.seek(0, os.SEEK_END)
        self._capture.seek(max(0, size - limit))
        text = self._capture.read().decode("utf-8", "replace")
        return [line for line in text.splitlines() if line.strip() and not _BANNER.match(line)][-lines:]


# Lines libraries print on every start whatever happens: absl's pre-init notice, absl/glog INFO
# records (I0000 00:00:...), TFLite's "INFO: Created TensorFlow Lite XNNPACK delegate".
_BANNER = re.compile(r"WARNING: All log messages before absl::InitializeLog|I\d{4} |INFO: ")


@contextlib.contextmanager
def native_stderr(enabled: bool = True) -> Iterator[NativeLog]:
    """Send file descriptor 2 to an anonymous temporary file for the block.

    Python's own stderr is rebound to a duplicate of the original descriptor, so the kit's lines,
    warnings and tracebacks still reach the terminal, and faulthandler reports a native crash
    (segfault, abort) there too. The capture has no name on disk: nothing is left behind, even
    after a kill. Yields a NativeLog to show the captured tail when a command fails. When
    Python's stderr is not descriptor 2 (a test's capture), only descriptor 2 moves.
    """
    if not enabled:
        yield NativeLog()
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no descriptor 2 at all (a detached process)
        yield NativeLog()
        return
    capture = tempfile.TemporaryFile()
    try:
        with _python_stderr_on(saved):
            os.dup2(capture.fileno(), 2)
            try:
                yield NativeLog(capture)
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)
        capture.close()


@contextlib.contextmanager
def _python_stderr_on(fd: int) -> Iterator[None]:
    """Point sys.stderr (when it writes to descriptor 2) and faulthandler at ``fd`` for the block."""
    previous = sys.stderr
    try:
        writes_fd2 = previous.fileno() == 2
    except (AttributeError, OSError, ValueError):  # io.StringIO, pytest's capture: not descriptor 2
        writes_fd2 = False
    if not writes_fd2:
        yield
        return
    terminal = open(fd, "w", buffering=1, encoding=previous.encoding, errors="backslashreplace", closefd=False)
    crash_reports_were_on = faulthandler.is_enabled()
    faulthandler.enable(file=terminal)
    sys.stderr = terminal
    try:
        yield
    finally:
        sys.stderr = previous
        terminal.flush()
        faulthandler.disable()
        if crash_reports_were_on:
            faulthandler.enable(file=previous)
