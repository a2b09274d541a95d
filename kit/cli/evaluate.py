"""kit eval: accuracy on labelled data (top-1/top-5, or a detector's mAP), against a full-precision baseline
and a budget."""

from __future__ import annotations

from typing import Any

from kit.cli import args as flags
from kit.cli import render
from kit.core.errors import InputError


def add_parser(commands, common) -> None:
    parser = commands.add_parser("eval", parents=[common], help="top-1/top-5, or a detector's mAP, on labelled data, against a budget")
    parser.add_argument("model")
    flags.add_data(parser, "--data", "labelled data", required=True,
                   forms="an image folder (one subfolder per class) or .npz with x and y; for a detector, "
                         "a COCO JSON (images beside it) or a YOLO folder (images/, labels/, classes.txt)")
    flags.add_runtime(parser)
    flags.add_output_name(parser)
    flags.add_baseline(parser)
    flags.add_budget(parser)
    parser.add_argument("--save-predictions", metavar="OUT.json",
                        help="detect: the model's boxes in COCO results format (any COCO tool re-scores them)")
    flags.add_task(parser)
    flags.add_torch_source(parser)
    flags.add_preprocess(parser)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    import math

    from kit.check.accuracy import check_budget
    from kit.check.harness import evaluate

    from kit.core import provenance

    budget = ({"max_drop": args.max_drop} if args.max_drop is not None else
              {"min_ratio": args.min_ratio} if args.min_ratio is not None else None)
    if budget and not args.baseline:
        raise InputError("an accuracy budget needs --baseline FP32_MODEL.", hint="Add --baseline model.onnx.")
    task = flags.task_from(args, provenance.read(args.model).get("task"))
    if task is not None and task.name == "detect":
        return _detection(args, task, budget)
    if args.save_predictions:
        raise InputError("--save-predictions writes a detector's boxes; this model's task is not detect.",
                         hint="Add --task detect for a detector, or drop --save-predictions.")
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


def _detection(args, task, budget) -> int:
    """mAP@0.5:0.95 and mAP@0.5 (COCO protocol) with a bootstrap interval; against a baseline
    the paired difference and the budget, judged on mAP@0.5:0.95."""
    from kit.check.detection import detect_on, paired_delta
    from kit.core.fileio import check_output_path

    if args.save_predictions:
        check_output_path(args.save_predictions, args.model, args.data, args.baseline, args.labels)
    report: dict[str, Any] = {"model": args.model, "data": args.data, "task": "detect"}
    with render.progress(args) as say:
        say(f"detecting with {args.model}")
        found = detect_on(args.model, args.data, task, runtime=args.runtime, preprocess=args.preprocess,
                          progress=lambda done, total: say(f"{args.model}: {done} of {total} images"),
                          **flags.torch_options(args, args.model, args.runtime, strict=not args.baseline))
        say("scoring (COCO protocol, bootstrap over images)")
        score = found.score()
        report.update(score.to_dict())
        if args.baseline:
            say(f"detecting with the baseline {args.baseline}")
            base = detect_on(args.baseline, args.data, task, preprocess=args.preprocess,
                             **flags.torch_options(args, args.baseline, None, strict=False))
            base_score = base.score()
            delta, delta_ci = paired_delta(base, found)
            ratio = score.map / base_score.map if base_score.map else 0.0
            passed = (None if not budget else base_score.map - score.map <= budget["max_drop"] + 1e-12
                      if "max_drop" in budget else ratio >= budget["min_ratio"] - 1e-12)
            report["baseline"] = {"model": args.baseline, **base_score.to_dict()}
            report["against_baseline"] = {"delta": delta, "delta_ci": list(delta_ci), "ratio": ratio,
                                          **({"passed": passed, "rule": _rule(budget)} if budget else {})}
    if args.save_predictions:
        found.save_predictions(args.save_predictions)
    failed = bool(budget) and not report["against_baseline"]["passed"]
    if args.json:
        render.print_json(report)
        return 1 if failed else 0
    console = render.console()
    console.print(f"{args.model}: mAP@0.5:0.95 {score.map:.4f} (95% CI {score.ci[0]:.4f} - {score.ci[1]:.4f}), "
                  f"mAP@0.5 {score.map50:.4f} on {score.images} images")
    if args.baseline:
        against = report["against_baseline"]
        console.print(f"baseline {args.baseline}: mAP@0.5:0.95 {base_score.map:.4f}; delta {against['delta']:+.4f} "
                      f"(95% CI {against['delta_ci'][0]:+.4f} - {against['delta_ci'][1]:+.4f}), ratio "
                      f"{against['ratio']:.4f}")
    if budget:
        passed = report["against_baseline"]["passed"]
        console.print(render.styled("pass" if passed else "FAIL", "green" if passed else "red"),
                      f"budget {_rule(budget)} (mAP@0.5:0.95)")
    if args.save_predictions:
        console.print(f"wrote the predictions (COCO results) to {args.save_predictions}")
    return 1 if failed else 0


def _rule(budget: dict) -> str:
    return f"drop <= {budget['max_drop']:g}" if "max_drop" in budget else f"ratio >= {budget['min_ratio']:g}"
