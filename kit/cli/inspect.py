"""kit inspect: a model's inputs, outputs, operators, nodes and provenance."""

from __future__ import annotations

import json

from kit.cli import args as flags
from kit.cli import render
from kit.core.formatting import size


def add_parser(commands, common) -> None:
    parser = commands.add_parser("inspect", parents=[common], help="show a model's inputs, outputs, ops, metadata")
    parser.add_argument("model")
    parser.add_argument("--runtime", help="inspect through this backend instead of reading the file")
    parser.add_argument("--nodes", action="store_true", help="list every node's name and op (for --exclude)")
    flags.add_torch_source(parser)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from kit.inspect_model import inspect_model

    data = inspect_model(args.model, args.runtime, nodes=args.nodes,
                         **flags.torch_options(args, args.model, args.runtime))
    if args.json:
        return render.print_json(data)
    console = render.console()
    header = [f"{data['path']}  {data['format']}  {size(data['size_bytes'])}"]
    for key in ("ir_version", "producer", "opsets", "nodes", "parameters"):
        if key in data:
            header.append(f"{key}: {data[key]}")
    console.print("\n".join(header))
    console.print(render.spec_table("inputs", data["inputs"]), render.spec_table("outputs", data["outputs"]))
    if data.get("node_list"):
        nodes = render.table("nodes", "name", "op")
        for node in data["node_list"]:
            nodes.add_row(node["name"], node["op"])
        console.print(nodes)
    if data.get("ops"):
        ops = render.table("operators", "op", "count")
        for op, count in data["ops"].items():
            ops.add_row(op, str(count))
        console.print(ops)
    if data.get("runtime"):
        console.print(f"runtime: {data['runtime']}")
    if data.get("metadata"):
        console.print("provenance: " + json.dumps(data["metadata"], indent=2, sort_keys=True))
    return 0
