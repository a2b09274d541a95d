"""The kit command: app.py assembles the parser from one module per command, which take
their shared flags from args.py and print through render.py."""

from kit.cli.app import main

__all__ = ["main"]
