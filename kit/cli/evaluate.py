"""kit eval: top-1/top-5 on labelled data, against a full-precision baseline and a budget."""

from __future__ import annotations

from typing import Any

from kit.cli import args as flags
from kit.cli import render
from kit.core.errors import InputError


def add_parser(commands, common) -> None:
    parser = commands.add_parser("eval", parents=[common], help="top-1/top-5 on labelled data, against a budget")
    parser.add_argument("model")
    flags.add_data(parser, "--data", "labelled data", required=True,
                   forms="an image folder (one subfolder per class) or .npz with x and y")
    flags.add_runtime(parser)
    flags.add_output_name(parser)
    flags.add_baseline(parser)
    flags.add_budget(parser)
    flags.add_torch_source(parser)
    flags.add_preprocess(parser)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    import math

    from kit.check.accuracy import check_budget
    from kit.check.harness import evaluate

    budget = ({"max_drop": args.max_drop} if args.max_drop is not None else
              {"min_ratio": args.min_ratio} if args.min_ratio is not None else None)
    if budget and not args.baseline:
        raise InputError("an accuracy budget needs --baseline FP32_MODEL.", hint="Add --baseline model.onnx.")
    check = None
    with render.progress(args) as say:
        say(f"evaluating {args.model}")
        result, correct = evaluate(args.model, args.data, runtime=args.runtime, output=args.output_name,
                                   preprocess=args.preprocess,
                                   **flags.torch_options(args, args.model, args.runtime, strict=not args.baseline))
        report: dict[str, Any] = {"model": args.model, "data": args.data, **result.to_dict()}
        if args.baseline:
            say(f"evaluating the baseline {args.baseline}")
            base, base_correct = evaluate(args.baseline, args.data, output=args.output_name, preprocess=args.preprocess,
                                          **flags.torch_options(args, args.baseline, None, strict=False))
            check = check_budget(base_correct, correct, **(budget or {"max_drop": math.inf}))
            report["baseline"] = {"model": args.baseline, **base.to_dict()}
            report["against_baseline"] = {k: v for k, v in check.to_dict().items()
                                          if budget or k not in ("passed", "rule")}
    failed = budget is not None and not check.passed
    if args.json:
        render.print_json(report)
        return 1 if failed else 0
    console = render.console()
    console.print(f"{args.model}: top-1 {result.top1:.2%} (95% CI {result.top1_ci[0]:.2%} - {result.top1_ci[1]:.2%})"
                  + (f", top-5 {result.top5:.2%}" if result.top5 is not None else "") + f" on {result.count} samples")
    if check is not None:
        console.print(f"baseline {args.baseline}: top-1 {check.baseline:.2%}; delta {check.delta:+.2%} "
                      f"(95% CI {check.delta_ci[0]:+.2%} - {check.delta_ci[1]:+.2%}), ratio {check.ratio:.4f}")
    if budget:
        console.print(render.styled("pass" if check.passed else "FAIL", "green" if check.passed else "red"),
                      f"budget {check.rule}")
    return 1 if failed else 0
