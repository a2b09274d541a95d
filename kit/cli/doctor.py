"""kit doctor: this device's runtimes, video I/O and platform, and a bundle's files and golden outputs."""

from __future__ import annotations

from kit.cli import render


def add_parser(commands, common) -> None:
    parser = commands.add_parser("doctor", parents=[common],
                                 help="is this device ready (and does it run a bundle as the workstation did)")
    parser.add_argument("bundle", nargs="?", help="a .kitbundle folder or .kitbundle.tar.gz to check")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from kit.deploy.doctor import diagnose, ready, report

    findings = diagnose(args.bundle)
    code = 0 if ready(findings) else 1
    if args.json:
        render.print_json(report(findings))
        return code
    console = render.console()
    colours = {"ok": "green", "info": "yellow", "problem": "red"}
    for finding in findings:
        console.print(render.styled(f"{finding.status:<7}", colours[finding.status]), f"{finding.area}: "
                      f"{finding.detail}", highlight=False)
        if finding.fix and finding.status != "ok":
            console.print(f"         {finding.fix}", highlight=False)
    problems = sum(f.status == "problem" for f in findings)
    console.print(render.styled("ready", "green") if code == 0 else
                  render.styled(f"not ready: {problems} problem(s)", "red"))
    return code
