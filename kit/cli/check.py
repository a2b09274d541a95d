"""kit check: readiness checks (the Edge TPU's op rules, and its compiler when present)."""

from __future__ import annotations

from kit.cli import render


def add_parser(commands, common) -> None:
    parser = commands.add_parser("check", parents=[common], help="readiness checks: check edgetpu MODEL.tflite")
    parser.add_argument("target", choices=["edgetpu"], help="what to check for")
    parser.add_argument("model")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from kit.runtimes.edgetpu.readiness import check_edgetpu

    result = check_edgetpu(args.model)
    data = result.to_dict()
    if args.json:
        render.print_json(data)
        return 0 if result.ready else 1
    console = render.console()
    if result.ready:
        console.print(render.styled("ready", "green"), f"{args.model}: all {len(result.ops)} ops can map to the Edge TPU "
                      f"(compiler 16's op list and versions).")
    else:
        console.print(render.styled("not ready", "red"), f"{args.model}: {len(result.blockers)} blocker(s); the TPU part "
                      f"would end after {result.tpu_ops_before_first_blocker} of {len(result.ops)} ops.")
        for blocker in result.blockers:
            console.print(f"  - [{blocker.kind}] {blocker.message}")
    console.print(f"compile with: {result.compiler_command}" if not result.compiler else
                  f"compiled with: {result.compiler_command}")
    if result.compiler:
        compiled = result.compiler
        console.print(f"edgetpu_compiler: {compiled['ops_on_tpu']} ops on the Edge TPU, {compiled['ops_on_cpu']} on "
                      f"the CPU, {compiled['subgraphs']} subgraph(s); on-chip {compiled['on_chip_memory']}, off-chip "
                      f"{compiled['off_chip_memory']}")
    if result.compiled:
        console.print(f"wrote {result.compiled}")
    for note in result.notes:
        console.print(render.styled("note:", "yellow"), note)
    return 0 if result.ready else 1
