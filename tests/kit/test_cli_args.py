"""The command line's flags: none lost or renamed by the CLI's restructuring, and a flag that
several commands take means one thing everywhere (declared once, in kit/cli/args.py)."""

from collections import defaultdict

import pytest

from kit.cli.app import _parser

# Every command's flags and positionals (as they were before kit/cli became a package, plus the
# task flags of export, run and eval since): a flag that disappears or is renamed fails here.
FLAGS = {
    "export": ["--allow-pickle", "--atol", "--calib", "--debug", "--dynamic", "--eval", "--exporter", "--format",
               "--head", "--help -h", "--input-shape", "--iou-threshold", "--json", "--labels", "--layout",
               "--max-detections", "--nms", "--opset", "--output -o", "--precision", "--preprocess", "--rtol",
               "--score-threshold", "--simplify", "--static", "--task", "--weights", "source"],
    "run": ["--allow-pickle", "--debug", "--draw", "--duration", "--head", "--help -h", "--image", "--input",
            "--input-shape", "--iou-threshold", "--json", "--jsonl", "--labels", "--max-detections", "--max-frames",
            "--model", "--optimization", "--output -o", "--preprocess", "--random", "--rebuild-if-stale", "--runtime",
            "--save", "--score-threshold", "--seed", "--show", "--source", "--task", "--threads", "--weights",
            "model"],
    "quantize": ["--calib", "--calib-limit", "--debug", "--eval", "--exclude", "--help -h", "--json", "--max-drop",
                 "--method", "--min-ratio", "--output -o", "--per-channel", "--per-tensor", "--precision",
                 "--preprocess", "--quantize-mixed-joins", "--target", "model"],
    "compare": ["--allow-pickle", "--atol", "--data", "--debug", "--golden", "--help -h", "--input-shape", "--json",
                "--layers", "--preprocess", "--random", "--rtol", "--runtime-a", "--runtime-b", "--save-golden",
                "--stat", "--weights", "models"],
    "eval": ["--allow-pickle", "--baseline", "--data", "--debug", "--head", "--help -h", "--input-shape",
             "--iou-threshold", "--json", "--labels", "--max-detections", "--max-drop", "--min-ratio", "--output-name",
             "--preprocess", "--runtime", "--save-predictions", "--score-threshold", "--task", "--weights", "model"],
    "bench": ["--allow-pickle", "--baseline", "--batch", "--compare", "--compare-fail", "--data", "--debug",
              "--help -h", "--input-shape", "--install", "--json", "--markdown", "--max-time", "--on",
              "--output-name", "--pipeline", "--plot", "--power", "--power-command", "--preprocess",
              "--remote-kit", "--runtime", "--save-json", "--ssh-option", "--streams", "--sustained", "--threads", "--weights", "models"],
    "inspect": ["--allow-pickle", "--debug", "--help -h", "--input-shape", "--json", "--nodes", "--runtime",
                "--weights", "model"],
    "build": ["--calib", "--compute-capability", "--debug", "--dla-core", "--help -h", "--json", "--max-shape",
              "--min-shape", "--opt-shape", "--output -o", "--precision", "--runtime", "--timing-cache",
              "--workspace", "model"],
    "check": ["--debug", "--help -h", "--json", "model", "target"],
    "adopt": ["--debug", "--head", "--help -h", "--iou-threshold", "--json", "--labels", "--max-detections",
              "--output -o", "--preprocess", "--score-threshold", "--task", "model"],
    "bundle": ["--archive", "--data", "--debug", "--golden-samples", "--help -h", "--json", "--output -o", "models"],
    "doctor": ["--build", "--compute-capability", "--debug", "--help -h", "--json", "bundle"],
    "serve": ["--debug", "--head", "--help -h", "--host", "--iou-threshold", "--json", "--labels", "--max-bytes",
              "--max-detections", "--model", "--port", "--preprocess", "--runtime", "--score-threshold", "--source",
              "--task", "--threads", "model"],
    "runtimes": ["--debug", "--help -h", "--json"],
    "demo": ["--debug", "--help -h", "--json", "--out --output -o", "--task"],
}
# Flags whose syntax differs between commands on purpose (what differs is said in args.py).
DIFFERENT_BY_DESIGN = {
    "--atol", "--rtol",  # one number for export's validation; per output (repeatable) for compare
    "--random",  # run: N optional (one batch); compare: N required
    "--runtime",  # build: only tensorrt
    "--precision", "--output",  # each command its own precisions; demo writes a folder
    "--task",  # demo: which demo (classify by default); elsewhere: what the model's outputs mean
}
# Flags declared by a group without parameters: everything, help included, is the same.
IDENTICAL = {"--json", "--debug", "--input-shape", "--weights", "--allow-pickle", "--threads", "--output-name",
             "--labels", "--head", "--score-threshold", "--iou-threshold", "--max-detections"}


def actions():
    for name, command in _parser().commands.choices.items():
        for action in command._actions:
            yield name, action


def test_no_command_or_flag_was_lost_or_renamed():
    found = defaultdict(list)
    for name, action in actions():
        found[name].append(" ".join(sorted(action.option_strings)) or action.dest)
    assert {name: sorted(flags) for name, flags in found.items()} == FLAGS
    assert list(found) == list(FLAGS)  # and `kit --help` lists them in the same order


def by_flag():
    flags = defaultdict(dict)
    for name, action in actions():
        for option in action.option_strings:
            flags[option][name] = action
    return {flag: commands for flag, commands in flags.items() if len(commands) > 1 and flag not in {"-h", "--help"}}


@pytest.mark.parametrize("flag", sorted(set(by_flag()) - DIFFERENT_BY_DESIGN - {"-o"}))
def test_a_shared_flag_has_one_syntax(flag):
    syntax = {name: (type(action).__name__, action.type, action.metavar, action.nargs, action.default)
              for name, action in by_flag()[flag].items()}
    assert len(set(syntax.values())) == 1, syntax


@pytest.mark.parametrize("flag", sorted(IDENTICAL))
def test_a_flag_from_a_plain_group_reads_the_same_everywhere(flag):
    helps = {name: action.help for name, action in by_flag()[flag].items()}
    assert len(set(helps.values())) == 1, helps


@pytest.mark.parametrize("command", sorted(FLAGS))
def test_help_fits_80_columns_without_a_word_cut(command):
    """Every option's help at 80 columns: no line past the width, no example split mid-word
    (argparse's own wrapping cut size=224,mean=... in two). The usage synopsis is argparse's."""
    from helpers import run_kit

    ran = run_kit(command, "--help")
    assert ran.returncode == 0
    options = ran.stdout.split("\n\n", 1)[1]  # past the usage synopsis
    assert max(map(len, options.splitlines())) <= 80, options
    assert "size=224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225" in options or "--preprocess" not in options
