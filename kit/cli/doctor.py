"""kit doctor: this device's runtimes, video I/O and platform, and a bundle's files, golden outputs
and TensorRT engines (built with --build)."""

from __future__ import annotations

from kit.cli import args as flags
from kit.cli import render


INDENT = 9  # "problem" and a space, then the text


def add_parser(commands, common) -> None:
    parser = commands.add_parser("doctor", parents=[common],
                                 help="is this device ready (and does it run a bundle as the workstation did)")
    parser.add_argument("bundle", nargs="?", help="a .kitbundle folder or .kitbundle.tar.gz to check")
    parser.add_argument("--build", action="store_true",
                        help="build the bundle's missing or stale TensorRT engines (into NAME.kitbundle.engines/)")
    flags.add_compute_capability(parser, when="with --build: ")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from kit.deploy.doctor import diagnose, ready, report

    with render.progress(args) as say:
        findings = diagnose(args.bundle, build=args.build, compute_capability=args.compute_capability, progress=say)
    code = 0 if ready(findings) else 1
    if args.json:
        render.print_json(report(findings))
        return code
    import textwrap

    console = render.console()
    colours = {"ok": "green", "info": "yellow", "problem": "red"}
    # The detail wraps at the console's width under its status, between words only (a path or a
    # number is never split); the fix, often a command to copy, gets a line of its own, unwrapped.
    width = max(40, console.width - INDENT)
    for finding in findings:
        lines = textwrap.wrap(f"{finding.area}: {finding.detail}", width, break_long_words=False,
                              break_on_hyphens=False)
        console.print(render.styled(f"{finding.status:<{INDENT - 1}}", colours[finding.status]), lines[0],
                      highlight=False)
        for line in lines[1:]:
            console.print(" " * INDENT + line, highlight=False)
        if finding.fix and finding.status != "ok":
            console.print(" " * INDENT + "fix: " + finding.fix, highlight=False)
    problems = sum(f.status == "problem" for f in findings)
    console.print(render.styled("ready", "green") if code == 0 else
                  render.styled(f"not ready: {problems} problem(s)", "red"))
    return code
