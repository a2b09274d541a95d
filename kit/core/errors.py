"""One exception family. Every message says what was expected, what was found, and what to do.

The CLI prints ``str(error)`` as one line and exits with ``error.exit_code``; the
traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import re


class KitError(Exception):
    """Base of every error the kit raises on purpose."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(f"{message} {hint}" if hint else message)


class InputError(KitError):
    """A feed, shape, option or file given by the user does not fit."""


class ModelFileError(KitError):
    """A model file is missing, corrupt, of an unknown kind, or not a model."""


class UnsafeFileError(KitError):
    """A file would need unpickling arbitrary objects and the user has not opted in."""


class RuntimeUnavailableError(KitError):
    """A backend cannot be used here: its library is not installed or did not import."""


class RunError(KitError):
    """A backend failed while running inputs that passed the feed check."""


class ExportError(KitError):
    """A model could not be loaded from its source or exported."""


class DiskFullError(KitError):
    """No space (or quota) was left on a disk the work writes to; nothing was written."""


class KitWarning(UserWarning):
    """Something the user should know that does not stop the work (synthetic calibration data, ...).

    The CLI prints it as a ``warning:`` line on stderr, also when the command then fails.
    """


class KitNote(KitWarning):
    """Information that needs no action (a value capped, a default chosen): a ``note:`` line."""


class ValidationError(KitError):
    """An exported model's outputs differ from the source model's beyond the tolerance."""

    exit_code = 3


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message: libraries' messages run to pages."""
    text = _ANSI.sub("", str(exc)).strip()
    return text.splitlines()[0][:limit] if text else "(no message)"


def root_cause(exc: BaseException) -> str:
    """``Type: first line`` of the innermost cause; wrappers such as TorchExportError say little."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return f"{type(exc).__name__}: {first_line(exc)}"


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def reraise_interrupt(exc: BaseException) -> None:
    """Raise the Ctrl-C or SIGTERM (SystemExit) hidden in ``exc``'s chain, if there is one.

    An interrupt that lands inside an import leaves the module half-initialised; the library
    then fails with another error (torch.onnx wraps an AttributeError about torch._dynamo),
    and code that catches Exception would carry on (a fallback exporter, a clean error).
    """
    pending, seen = [exc], set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        if isinstance(current, (KeyboardInterrupt, SystemExit)):
            raise current
        seen.add(id(current))
        pending += [current.__cause__, current.__context__]
