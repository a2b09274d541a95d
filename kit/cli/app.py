"""The ``kit`` command: the parser assembled from the command modules, exit codes, and how
errors, warnings and signals end a command. Each command parses, calls one library function,
and prints; errors from the kit print one line and exit non-zero (``--debug`` shows the
traceback). Nothing heavy is imported before a command runs."""

from __future__ import annotations

import argparse
import os
import sys

from kit._version import __version__
from kit.cli import args as flags
from kit.cli import (adopt, bench, build, bundle, check, compare, demo, doctor, evaluate, export, inspect,
                     quantize, render, run, runtimes, serve)
from kit.core.errors import KitError, first_line

# In the order `kit --help` lists them.
COMMANDS = (export, run, quantize, compare, evaluate, bench, inspect, build, check, adopt, bundle, doctor,
            serve, runtimes, demo)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = _parse(parser, sys.argv[1:] if argv is None else list(argv))
    if args is None:
        parser.print_help()
        return 0
    from kit.core.quiet import captured_stderr

    # Libraries' log lines (absl, oneDNN, XNNPACK, ONNX Runtime, torch's logging) stay off the
    # terminal; with --debug they show as they happen.
    with _Interrupts() as interrupts, captured_stderr(enabled=not args.debug) as library_log:
        return _run_command(args, library_log, interrupts)


# Exit codes: 0 ok; 1 a check failed (compare, eval budget, bench regression); 2 bad input or an
# unusable runtime; 3 an export that does not match PyTorch; 70 an internal error; 130 interrupted
# (SIGINT, Ctrl-C); 143 terminated (SIGTERM).
EXIT_INTERNAL = 70


EXIT_INTERRUPTED = 130


EXIT_TERMINATED = 143


def _run_command(args, library_log, interrupts) -> int:
    """Run the handler; print the warnings it raised, then, if it failed, its error as one line."""
    import warnings

    from kit.core.errors import KitWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", KitWarning)
        try:
            code = args.handler(args) or 0
        except BaseException as error:  # noqa: BLE001 - every way out gets its exit code and one line
            _print_warnings(caught)
            return _failed(error, args.debug, library_log, interrupts)
    _print_warnings(caught)
    return _interrupted(interrupts.received) if interrupts.received else code


def _failed(error: BaseException, debug: bool, library_log, interrupts) -> int:
    import signal

    if BrokenPipeError in (type(error), type(error.__context__)):  # rich turns it into SystemExit(1)
        _discard_stdout()  # `kit ... | head`: the reader left; nothing went wrong here
        return 0
    if interrupts.received or isinstance(error, KeyboardInterrupt):
        return _interrupted(interrupts.received or signal.SIGINT)
    if debug or not isinstance(error, Exception):  # --debug, or a SystemExit of the handler's own
        raise error
    if isinstance(error, KitError):
        _error_line(str(error))
        return error.exit_code
    # A bug or a library failure the kit did not anticipate: what the library logged may say why.
    for line in library_log.tail():
        render.console(stderr=True).print(line, soft_wrap=True, highlight=False)
    _error_line(f"unexpected {type(error).__name__}: {first_line(error)} (rerun with --debug for the traceback)")
    return EXIT_INTERNAL


_NOISE = (DeprecationWarning, PendingDeprecationWarning, FutureWarning, ImportWarning, ResourceWarning,
          SyntaxWarning, BytesWarning)


def _print_warnings(caught) -> None:
    """The kit's warnings as ``warning:``/``note:`` lines; another library's warning (a numeric
    RuntimeWarning, a UserWarning) once, as ``warning: CATEGORY: first line``. Notices aimed at
    the libraries' own developers (deprecations, future changes, imports) stay out."""
    from kit.core.errors import KitNote, KitWarning

    shown = set()
    for warning in caught:
        category = warning.category
        if issubclass(category, KitWarning):
            line = ("note:" if issubclass(category, KitNote) else "warning:", str(warning.message))
        elif not issubclass(category, _NOISE):
            line = ("warning:", f"{category.__name__}: {first_line(warning.message)}")
        else:
            continue
        if line not in shown:
            shown.add(line)
            render.console(stderr=True).print(render.styled(line[0], "yellow"), line[1], soft_wrap=True)


def _error_line(message: str) -> None:
    render.console(stderr=True).print(render.styled("error:", "bold red"), message, soft_wrap=True)


def _discard_stdout() -> None:
    """Point stdout at /dev/null so Python's flush at exit does not fail on the closed pipe again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real descriptor (a test's capture)
        pass


class _Terminated(SystemExit):
    """SIGTERM, raised in the main thread so every ``finally`` removes its temporary output."""

    def __init__(self):
        super().__init__(EXIT_TERMINATED)


class _Interrupts:
    """SIGINT and SIGTERM become exceptions in the main thread (KeyboardInterrupt, _Terminated), so
    every ``finally`` removes its temporary output, and are remembered: a library that swallows the
    exception, or wraps it in an error of its own, cannot turn an interrupted command into a
    success or an unrelated error."""

    def __enter__(self):
        import signal

        self.received = None
        self.previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[signum] = signal.signal(signum, self._raise)
            except ValueError:  # not the main thread (e.g. called from a test runner's worker)
                pass
        return self

    def _raise(self, signum, frame):
        import signal

        self.received = self.received or signum
        raise KeyboardInterrupt if signum == signal.SIGINT else _Terminated()

    def __exit__(self, *exc_info):
        import signal

        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def _interrupted(signum: int) -> int:
    import signal

    _error_line(f"{'interrupted' if signum == signal.SIGINT else 'terminated'}; nothing was left half-written.")
    return EXIT_INTERRUPTED if signum == signal.SIGINT else EXIT_TERMINATED


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's help, wrapped without cutting a word: an example such as
    size=224,mean=0.485/0.456/0.406 or a path stays whole (and copyable) past the column."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        import textwrap

        return textwrap.wrap(" ".join(text.split()), width, break_long_words=False, break_on_hyphens=False)


class _Parser(argparse.ArgumentParser):
    """argparse with the kit's error style: one ``error:`` line on stderr and exit 2, no usage dump.

    No abbreviations: a prefix would silently become another flag (the old ``--output NAME`` of
    eval and bench would be read as ``--output-name``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{"allow_abbrev": False, "formatter_class": _HelpFormatter, **kwargs})

    def error(self, message: str):
        _error_line(f"{self.prog}: {message} (see {self.prog} --help).")
        sys.exit(2)


def _parse(parser: _Parser, argv: list[str]) -> argparse.Namespace | None:
    """The command, then its own options and arguments in any order (None: no command given).

    argparse reads options and positionals intermixed (``kit bench a.py:f --input-shape 1x8 b.onnx``)
    only in a parser without subcommands, so the command word is found first and its own parser
    reads everything else with parse_intermixed_args.
    """
    position = next((i for i, word in enumerate(argv) if not word.startswith("-")), None)
    if position is None or {"-h", "--help", "--version"} & set(argv[:position]):
        parser.parse_args(argv[:position])  # kit's own -h/--version, or an option without a command
        return None
    command = argv[position]
    if command not in parser.commands.choices:
        parser.error(f"unknown command {command!r}; expected one of {', '.join(parser.commands.choices)}")
    args = parser.commands.choices[command].parse_intermixed_args(argv[:position] + argv[position + 1:])
    args.command = command
    return args


def _parser() -> _Parser:
    parser = _Parser(
        prog="kit", description="Export PyTorch models, run them on edge runtimes, and measure them. "
                                "Options may come before or after a command's arguments.")
    parser.add_argument("--version", action="version", version=f"kit {__version__}")
    parser.commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = flags.common()
    for command in COMMANDS:
        command.add_parser(parser.commands, common)
    return parser
