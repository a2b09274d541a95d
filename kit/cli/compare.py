"""kit compare: two models' outputs on the same inputs (or one model against golden files)."""

from __future__ import annotations

from kit.cli import args as flags
from kit.cli import render
from kit.core.errors import InputError
from kit.core.formatting import decibels, percent


def add_parser(commands, common) -> None:
    parser = commands.add_parser("compare", parents=[common], help="compare two models' outputs (or golden files)")
    parser.add_argument("models", nargs="+", metavar="MODEL",
                        help="reference then candidate; one model with --golden (to check it) or --save-golden "
                             "(to record its outputs)")
    flags.add_data(parser, "--data", "inputs (default random:16)")
    parser.add_argument("--random", type=flags.positive_int, metavar="N", help="N random inputs (same as --data random:N)")
    flags.add_tolerances(parser, per_output=True)
    parser.add_argument("--stat", choices=["elementwise", "mean", "median", "max"], default="elementwise",
                        help="elementwise: every element within atol + rtol x |reference|; mean/median/max: that "
                             "statistic of the error within atol (absolute) or rtol (relative)")
    golden = parser.add_mutually_exclusive_group()
    golden.add_argument("--save-golden", metavar="OUT.npz", help="save the inputs and the reference's outputs")
    golden.add_argument("--golden", metavar="IN.npz", help="compare MODEL against saved golden outputs")
    parser.add_argument("--layers", action="store_true", help="per-layer SQNR of a QDQ model against its float model")
    parser.add_argument("--runtime-a", help="backend for the reference")
    parser.add_argument("--runtime-b", help="backend for the candidate")
    flags.add_torch_source(parser)
    flags.add_preprocess(parser)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from kit.check.harness import compare_models

    if args.golden or (args.save_golden and len(args.models) == 1):
        if len(args.models) != 1:
            raise InputError(f"with --golden, expected one model to check; found {len(args.models)}.",
                             hint="kit compare MODEL --golden golden.npz")
        reference, candidate = (None, args.models[0]) if args.golden else (args.models[0], None)
    elif len(args.models) == 2:
        reference, candidate = args.models
    else:
        raise InputError(f"expected two models (reference, candidate); found {len(args.models)}.",
                         hint="kit compare fp32.onnx int8.onnx, kit compare MODEL --save-golden golden.npz, or "
                              "kit compare MODEL --golden golden.npz")
    if args.random is not None and args.data is not None:
        raise InputError("give --data or --random, not both.", hint="--random N is --data random:N.")
    data = args.data or f"random:{args.random or 16}"
    options = (flags.torch_options(args, reference, args.runtime_a, strict=False),
               flags.torch_options(args, candidate, args.runtime_b, strict=False))
    if not any(options) and (args.input_shape or args.weights or args.allow_pickle):
        flags.torch_options(args, candidate or reference, args.runtime_b)  # raises: no model is a PyTorch source
    with render.progress(args) as say:
        say("running both models" if reference and candidate else f"running {reference or candidate}")
        result = compare_models(reference, candidate, data=data, golden=args.golden, save_golden_to=args.save_golden,
                                runtimes=(args.runtime_a, args.runtime_b), options=options,
                                atol=flags.tolerances(args.atol, 1e-4), rtol=flags.tolerances(args.rtol, 1e-3),
                                stat=args.stat, layers=args.layers, preprocess=args.preprocess,
                                progress=lambda done, total: say(f"compared {done:,} of {total:,} samples"))
    data_out = result.to_dict()
    if args.json:
        render.print_json(data_out)
        return 0 if result.passed else 1
    console = render.console()
    if candidate is None:
        console.print(f"saved the inputs and {reference}'s outputs on {result.samples} samples of {data} "
                      f"to {args.save_golden}")
        return 0
    console.print(f"{result.candidate} against {result.reference} on {result.samples} samples ({args.stat}):")
    table = render.table(None, "output", "max abs", "mean abs", "max rel", "cosine", "SQNR", "top-1", "top-5", "result")
    for d in result.outputs:
        table.add_row(d.name, f"{d.max_abs:.3g}", f"{d.mean_abs:.3g}", f"{d.max_rel:.3g}", f"{d.cosine:.6f}",
                      decibels(d.sqnr_db), percent(d.top1), percent(d.top5),
                      render.styled("pass", "green") if d.passed else render.styled("fail", "red"))
    console.print(table)
    for d in result.outputs:
        if not d.passed:  # which rule failed, and by how much
            console.print(render.styled("fail:", "red"), f"output '{d.name}' ({d.rule}): {d.failure}.")
    if result.layers:
        console.print("per layer, largest accumulated-SQNR drop first:")
        layers = render.table(None, "tensor", "producer", "op", "SQNR drop", "accumulated SQNR", "keep in float")
        for layer in data_out["layers"]:
            layers.add_row(layer["tensor"], layer["producer"] or "-", layer["op_type"] or "-",
                           decibels(layer["drop_db"]), decibels(layer["accumulated_sqnr_db"]), ", ".join(layer["keep_in_float"]))
        console.print(layers)
    if args.save_golden:
        console.print(f"saved golden inputs and outputs to {args.save_golden}")
    return 0 if result.passed else 1
