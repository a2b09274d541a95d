"""kit bench end to end (each variant in its own process), its JSON, regressions, plot, bad input,
and the pytest plugin."""

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import files_in

from kit.bench import driver as bench
from kit.bench import regressions as judge
from kit.bench.report import pareto_front
from kit.check.harness import evaluate
from kit.cli import main
from kit.core.errors import InputError, KitError, KitWarning


@pytest.fixture(scope="module")
def measured(digits, tmp_path_factory):
    """The digits CNN in FP32 and FP16, benchmarked briefly on one thread, with labelled data."""
    from kit.export.quantize import quantize

    folder = tmp_path_factory.mktemp("bench")
    fp16 = quantize(digits.onnx, folder / "fp16.onnx", precision="fp16").path
    report = bench.bench([str(digits.onnx), str(fp16)], data=str(digits.test), threads=1, max_time=0.2)
    return report, folder


def test_every_variant_has_the_fields(measured, digits):
    report, _ = measured
    rows = {row["name"]: row for row in report.rows()}
    assert list(rows) == ["model.onnx[onnxruntime]", "fp16.onnx[onnxruntime]"]
    base, half = rows["model.onnx[onnxruntime]"], rows["fp16.onnx[onnxruntime]"]
    for row in (base, half):
        latency = row["latency_s"]
        assert latency["rounds"] >= 100 and 0 < latency["min"] <= latency["median"] <= latency["p90"] <= latency["p99"]
        assert latency["median_ci"][0] <= latency["median"] <= latency["median_ci"][1]
        assert latency["median_ci_level"] >= 0.95
        assert row["throughput_per_s"] == pytest.approx(1 / latency["mean"])  # batch 1, sustained rate
        assert row["batch"] == 1 and row["fidelity_data"] == str(digits.test)
        assert row["load_s"] > 0 and row["first_inference_s"] > 0 and row["peak_rss_mb"] > 10
        assert row["runtime_info"]["threads"] == 1
    assert base["baseline"] and not half["baseline"]
    expected, _ = evaluate(digits.onnx, str(digits.test))  # the same model scored outside the benchmark
    assert base["fidelity"][0]["sqnr_db"] == "inf" and base["accuracy"]["top1"] == expected.top1
    assert half["fidelity"][0]["top1"] == 1.0 and half["fidelity"][0]["sqnr_db"] > 40
    assert abs(half["accuracy"]["delta"]) <= 0.005 and half["size_bytes"] < base["size_bytes"]
    environment = report.document["machine_info"]["kit_environment"]
    assert environment["threads_used"] == 1 and environment["packages"]["onnxruntime"]


def test_json_loads_in_pytest_benchmark_compare(measured):
    report, folder = measured
    bench.write_json(report, folder / "run.json")
    data = json.loads((folder / "run.json").read_text())
    assert {"machine_info", "commit_info", "benchmarks", "datetime", "version"} <= set(data)
    assert len(data["benchmarks"][0]["stats"]["data"]) == data["benchmarks"][0]["stats"]["rounds"]
    command = str(Path(sys.executable).with_name("pytest-benchmark"))  # its console script
    result = subprocess.run([command, "compare", str(folder / "run.json")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "model.onnx[onnxruntime]" in result.stdout and "fp16.onnx[onnxruntime]" in result.stdout


def test_regressions_against_an_older_run(measured, tmp_path):
    import warnings

    report, _ = measured
    old = json.loads(json.dumps(report.document))
    old["benchmarks"][0]["stats"]["median"] /= 2  # the old run was twice as fast
    old["benchmarks"][1]["extra_info"]["kit"]["accuracy"]["top1"] += 0.05  # and more accurate
    (tmp_path / "old.json").write_text(json.dumps(old))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same settings, same machine: nothing to note
        rows = {row["name"]: row for row in judge.regressions(report, tmp_path / "old.json")}
    assert rows["model.onnx[onnxruntime]"]["latency_regression"]
    assert rows["model.onnx[onnxruntime]"]["failed_rules"] == ["median:10%"]
    assert rows["model.onnx[onnxruntime]"]["median_ratio"] == pytest.approx(2.0)
    assert not rows["fp16.onnx[onnxruntime]"]["latency_regression"]
    assert rows["fp16.onnx[onnxruntime]"]["accuracy_regression"]
    # pytest-benchmark's own rules: the old median halved is far beyond 10% but not beyond 1000%
    rows = {row["name"]: row for row in judge.regressions(report, tmp_path / "old.json", ["median:1000%"])}
    assert not rows["model.onnx[onnxruntime]"]["latency_regression"]
    with pytest.raises(InputError, match=r"expected a rule like median:10% or mean:0.0005 .*found 'p99:5%'"):
        judge.regressions(report, tmp_path / "old.json", ["p99:5%"])
    other = {"benchmarks": [{"name": "x[y]", "stats": dict.fromkeys(judge.STATS_FIELDS, 1.0)}]}
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(KitError, match="no benchmark in .* matches"):
        judge.regressions(report, tmp_path / "other.json")


def test_comparing_runs_of_other_settings_says_what_differs(measured, tmp_path):
    report, _ = measured
    old = json.loads(json.dumps(report.document))
    environment = old["machine_info"]["kit_environment"]
    environment.update(threads_used=4, cores=8)
    environment["cpu"]["model"] = "Some Other CPU"
    environment["packages"]["onnxruntime"] = "1.0.0"
    old["benchmarks"][1]["extra_info"]["kit"]["batch"] = 8
    (tmp_path / "old.json").write_text(json.dumps(old))
    with pytest.warns(KitWarning) as caught:
        judge.regressions(report, tmp_path / "old.json")
    now = report.document["machine_info"]["kit_environment"]
    ort = now["packages"]["onnxruntime"]
    assert [str(w.message) for w in caught] == [
        "old.json was measured with 4 threads, this run with 1 thread: the ratios mix two settings.",
        f"old.json was measured on Some Other CPU (8 cores, {now['machine']}), this run on {now['cpu']['model']} "
        f"({now['cores']} cores, {now['machine']}): a change may be the machine's.",
        f"old.json was measured with other versions (onnxruntime 1.0.0 -> {ort}).",
        "old.json was measured with fp16.onnx[onnxruntime] at batch 8, this run at batch 1.",
    ]


def test_json_keeps_the_users_commit_info(measured, digits, tmp_path):
    # The worker runs in a scratch folder; the commit is that of the folder kit bench ran from.
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", "-b", "trunk", str(tmp_path)], check=True)
    subprocess.run([*git, "-C", str(tmp_path), "commit", "-q", "--allow-empty", "-m", "first"], check=True)
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    from helpers import run_kit

    result = run_kit("bench", digits.onnx, "--max-time", "0", "--json", cwd=tmp_path)
    commit = json.loads(result.stdout)["commit_info"]
    assert (commit["id"], commit["branch"], commit["project"], commit["dirty"]) == (head.strip(), "trunk",
                                                                                    tmp_path.name, False)


def test_markdown_and_plot(measured, tmp_path):
    from kit.bench.report import write_markdown, write_plot

    report, _ = measured
    write_markdown(report, tmp_path / "bench.md")
    write_plot(report, tmp_path / "bench.png")
    text = (tmp_path / "bench.md").read_text()
    assert text.startswith("| variant | median [95% CI] | min / mean |") and "fp16.onnx[onnxruntime]" in text
    environment = next(line for line in text.splitlines() if line.startswith("- on "))
    assert "governor" in environment and "threads" in environment and "onnxruntime 1." in environment
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pareto_front():
    # (latency, accuracy): b is beaten by a on both; d ties nobody and is the most accurate
    points = [(1.0, 0.90), (2.0, 0.85), (1.5, 0.95), (3.0, 0.99), (3.0, 0.98)]
    assert pareto_front(points) == [0, 2, 3]


def _synthetic_report(medians: list[float], top1s: list[float]):
    """A report with known numbers: five rounds around each median, every variant scored."""
    benchmarks = [{"name": f"variant-{i}[onnxruntime]", "stats": {"data": [m * f for f in (0.9, 1, 1, 1.1, 3)]},
                   "extra_info": {"kit": {"latency_s": {"median": m}, "accuracy": {"top1": top1},
                                          "fidelity": [{"top1": 1.0, "cosine": 1.0}]}}}
                  for i, (m, top1) in enumerate(zip(medians, top1s))]
    return bench.BenchReport({"benchmarks": benchmarks})


@pytest.mark.parametrize("seconds, unit", [([7e-6, 9e-6], ("us", 1e6)), ([0.0042, 0.5], ("ms", 1e3)),
                                           ([2.0, 30.0], ("s", 1.0)), ([3e-7], ("ns", 1e9))])
def test_plot_units_follow_the_fastest_value(seconds, unit):
    from kit.bench.report import time_unit

    assert time_unit(seconds) == unit  # 7 us is drawn as 7 us, not as 0.0070 ms


def test_plot_keeps_accuracy_within_0_to_100_percent_and_names_apart():
    from kit.bench.report import plot_figure, score_limits

    assert score_limits([0.99, 1.0, 1.0], 0, 1) == (pytest.approx(0.985), 1.0)  # margin >= 0.5 points; <= 100%
    assert score_limits([0.0, 0.5], 0, 1) == (0.0, pytest.approx(0.55))
    assert score_limits([1.0, 1.0], 0, 1) == (pytest.approx(0.995), 1.0)  # one value: a small window below it
    # Four variants at nearly the same point (the overprinting case), all at or near 100%.
    figure = plot_figure(_synthetic_report([7.0e-6, 7.1e-6, 7.2e-6, 7.0e-6], [1.0, 1.0, 0.999, 1.0]))
    left, right = figure.axes
    low, high = left.get_ylim()
    assert 0 <= low < 0.999 and high == 1.0
    assert left.get_xlabel() == "median latency (us)" and right.get_xlabel() == "latency per call (us)"
    assert not left.texts  # no names drawn beside the points, where they would overprint
    figure.canvas.draw()
    minor = [t.get_text() for t in right.xaxis.get_minorticklabels() if t.get_text()]
    assert "6" in minor and not any("times" in text or "^" in text for text in minor)  # 6, not 6x10^0
    renderer = figure.canvas.get_renderer()
    labels = left.get_legend().get_texts()
    assert [t.get_text() for t in labels] == ["Pareto front"] + [f"variant-{i}[onnxruntime]" for i in range(4)]
    boxes = [t.get_window_extent(renderer) for t in labels]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert not any(box.overlaps(left.get_window_extent(renderer)) for box in boxes)  # beside the axes, not on it
    import matplotlib.pyplot as plt

    plt.close(figure)


def test_plot_has_an_energy_panel_with_power():
    """With --power, a third panel: energy per inference per variant, in the distribution
    panel's row order; a variant without a reading has no bar and says so."""
    from kit.bench.report import plot_figure

    report = _synthetic_report([7.0e-6, 9.0e-6, 8.0e-6], [1.0, 0.99, 0.98])
    for entry, joules in zip(report.benchmarks, [2.5e-5, 4.0e-5, None]):
        entry["extra_info"]["kit"]["power"] = {"joules_per_inference": joules} if joules else {}
    figure = plot_figure(report)
    _, right, energy = figure.axes
    bars = [patch.get_width() for patch in energy.patches]
    assert bars == [pytest.approx(25.0), pytest.approx(40.0), 0.0] and energy.get_xlabel() == \
        "energy per inference (uJ)"
    assert energy.get_shared_y_axes().joined(energy, right)  # the distribution panel's rows and names
    assert [t.get_text() for t in energy.texts] == [" no power reading"]
    assert len(plot_figure(_synthetic_report([7.0e-6], [1.0])).axes) == 2  # no --power, no panel
    import matplotlib.pyplot as plt

    plt.close("all")


def test_bad_input(digits, tmp_path, capsys):
    with pytest.raises(InputError, match="expected a runtime among onnxruntime, torch, edgetpu, tflite"):
        bench.bench([str(digits.onnx)], runtimes=["tensorflow"])
    (tmp_path / "weights.bin").write_bytes(b"\x00" * 8)
    with pytest.raises(InputError, match="no usable runtime opens .*weights.bin"):
        bench.bench([str(tmp_path / "weights.bin")])
    with pytest.raises(InputError, match="no usable runtime among torch opens"):
        bench.bench([str(digits.onnx)], runtimes=["torch"])
    code = main(["bench", str(digits.onnx), "--save-json", str(tmp_path / "absent" / "out.json")])
    assert code == 2 and "the folder for the output" in capsys.readouterr().err
    code = main(["bench", str(digits.onnx), "--markdown", str(digits.onnx)])  # would destroy the model
    assert code == 2 and "is the same file as the input" in capsys.readouterr().err
    (tmp_path / "old.json").write_text('{"benchmarks": [{"name": "a"}]}')
    code = main(["bench", str(digits.onnx), "--compare", str(tmp_path / "old.json")])  # refused before measuring
    assert code == 2 and "could not read" in capsys.readouterr().err
    assert files_in(tmp_path) == ["old.json", "weights.bin"]


def test_max_time_is_bounded(digits, tmp_path):
    from helpers import run_kit

    for value in ("1e308", "3601"):
        result = run_kit("bench", digits.onnx, "--max-time", value, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"error: expected --max-time from 0 to 3600 seconds per variant, found "
                                        f"{float(value):g}.")
    with pytest.raises(InputError, match="expected --max-time from 0 to 3600 seconds per variant, found nan"):
        bench.bench([str(digits.onnx)], max_time=float("nan"))
    assert files_in(tmp_path) == []


def test_rounds_cap_is_reported(digits):
    from kit.bench.report import notes

    # 50 rounds of a ~10 us model take far less than the 1 s asked for, on any machine.
    report = bench.bench([str(digits.onnx)], max_time=1.0, max_rounds=50, threads=1)
    (row,) = report.rows()
    assert row["latency_s"]["rounds"] == 50 and row["rounds_capped"] and row["max_time_s"] == 1.0
    assert any(re.fullmatch(r"every variant stopped at the cap of 50 rounds before the 1 s of --max-time \(the "
                            r"shortest after \S+ (us|ms)\)\.", line) for line in notes(report))
    assert any("50 rounds, so p99 lies between the two slowest" in line for line in notes(report))
    uncapped = bench.bench([str(digits.onnx)], max_time=0.0, threads=1)  # 10 rounds, the floor
    assert not uncapped.rows()[0]["rounds_capped"] and uncapped.rows()[0]["latency_s"]["rounds"] == 10


def test_worker_failures_and_batches(digits, tmp_path):
    from kit.export import export_onnx

    from kit.core.errors import RunError
    from kit.models import make_digits_cnn

    static = tmp_path / "static.onnx"
    export_onnx(make_digits_cnn().eval(), static, input_shapes="1x1x8x8", static=True)
    with pytest.raises(RunError, match=r"benchmarking static.onnx\[onnxruntime\] failed: batch 4 needs a dynamic "
                                       r"batch axis; the inputs are 'input' float32\[1,1,8,8\]"):
        bench.bench([str(static)], batch=4, max_time=0.05)
    report = bench.bench([str(digits.onnx)], batch=4, max_time=0.05, threads=1)
    (row,) = report.rows()
    assert row["batch"] == 4 and row["throughput_per_s"] == pytest.approx(4 / row["latency_s"]["mean"])
    assert row["fidelity_data"] == "random:16"


def test_same_file_name_in_two_folders_and_a_baseline(digits, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "model.onnx").write_bytes(digits.onnx.read_bytes())
    (tmp_path / "reference.onnx").write_bytes(digits.onnx.read_bytes())
    models = [str(tmp_path / "a" / "model.onnx"), str(tmp_path / "b" / "model.onnx")]
    report = bench.bench(models, baseline=str(tmp_path / "reference.onnx"), max_time=0.05, threads=1)
    names = [row["name"] for row in report.rows()]
    assert names == ["reference.onnx[onnxruntime]", f"{models[0]}[onnxruntime]", f"{models[1]}[onnxruntime]"]
    assert [row["baseline"] for row in report.rows()] == [True, False, False]
    assert all(row["fidelity"][0]["sqnr_db"] == "inf" for row in report.rows())  # identical models


def test_cli_prints_the_table_and_fails_on_regression(measured, digits, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    report, _ = measured
    old = json.loads(json.dumps(report.document))
    for entry in old["benchmarks"]:
        entry["stats"]["median"] /= 10
    (tmp_path / "old.json").write_text(json.dumps(old))
    code = main(["bench", str(digits.onnx), "--threads", "1", "--max-time", "0.1", "--compare",
                 str(tmp_path / "old.json"), "--markdown", str(tmp_path / "b.md"),
                 "--save-json", str(tmp_path / "b.json")])
    out = capsys.readouterr().out
    assert code == 1
    assert "model.onnx[onnxruntime] (baseline)" in out and "REGRESSION model.onnx[onnxruntime]: median x" in out
    assert (tmp_path / "b.md").exists() and (tmp_path / "b.json").exists()  # written before the verdict


def test_cli_flags_json_switch_save_json_and_output_name(digits, tmp_path):
    from helpers import run_kit

    result = run_kit("bench", digits.onnx, "--threads", "1", "--max-time", "0", "--json", "--data", digits.test,
                     "--output-name", "output", "--save-json", tmp_path / "run.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)  # the whole of stdout is the JSON: no table, no progress
    assert result.stderr == ""
    assert document["benchmarks"][0]["name"] == "model.onnx[onnxruntime]"
    assert document["benchmarks"][0]["extra_info"]["kit"]["accuracy"]["top1"] > 0.9
    assert json.loads((tmp_path / "run.json").read_text())["benchmarks"][0]["stats"]["rounds"] == 10
    assert files_in(tmp_path) == ["run.json"]
    result = run_kit("bench", digits.onnx, "--max-time", "0", "--data", digits.test, "--output-name", "logits",
                     "--json", cwd=tmp_path)
    skipped = json.loads(result.stdout)["benchmarks"][0]["extra_info"]["kit"]["accuracy_skipped"]
    assert result.returncode == 0 and skipped.startswith("expected an output named 'logits'; the model has output.")
    result = run_kit("bench", digits.onnx, "--output", "x", cwd=tmp_path)  # the old selector is gone
    assert result.returncode == 2 and "unrecognized arguments: --output x" in result.stderr


def test_pytest_plugin_fixtures(digits, pytester):
    pytester.makepyfile(textwrap.dedent(f"""
        def test_latency(kit_latency):
            stats = kit_latency({str(digits.onnx)!r}, threads=1)
            assert stats.rounds >= 5 and stats.median_ci[0] <= stats.median <= stats.median_ci[1]

        def test_budget_holds(kit_accuracy):
            verdict = kit_accuracy({str(digits.onnx)!r}, data={str(digits.test)!r},
                                   baseline={str(digits.onnx)!r}, max_drop=0.0)
            assert verdict.delta == 0.0

        def test_budget_fails(kit_accuracy):  # an untrained network against the trained one
            kit_accuracy("kit.models:make_digits_cnn", data={str(digits.test)!r}, baseline={str(digits.onnx)!r},
                         min_ratio=0.99, input_shapes="1x1x8x8")
    """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--benchmark-max-time=0.1")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*accuracy budget ratio >= 0.99 failed: kit.models:make_digits_cnn top-1 0.*, "
                                 "baseline 0.9*"])


@pytest.mark.parametrize("switch, benchmarked", [("--benchmark-disable", False), ("--benchmark-enable", True)])
def test_readme_latency_test_runs_with_and_without_benchmarking(digits, pytester, switch, benchmarked):
    # The README's own example, on the digits CNN (about 10 us per call, far under 5 ms).
    pytester.makepyfile(textwrap.dedent(f"""
        def test_int8_is_fast_enough(kit_latency):
            stats = kit_latency({str(digits.onnx)!r}, threads=1)
            assert stats.p99 < 0.005
            assert stats.benchmarked is {benchmarked}
            assert stats.min <= stats.median <= stats.p99 <= stats.max
            print("ROUNDS", stats.rounds)
    """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", "--benchmark-max-time=0.05", switch)
    result.assert_outcomes(passed=1)
    rounds = int(next(line for line in result.outlines if "ROUNDS" in line).split("ROUNDS")[1])
    assert rounds == 5 if not benchmarked else rounds > 5


@pytest.fixture(scope="module")
def digit_images(digits, tmp_path_factory):
    """40 held-out digits as 8x8 PNGs in one folder per class, and the same pixels as float arrays."""
    import cv2
    import numpy as np

    with np.load(digits.test) as held_out:
        x, y = held_out["x"][:40], held_out["y"][:40]
    folder = tmp_path_factory.mktemp("images")
    pixels = np.round(x[:, 0] * 255).astype(np.uint8)
    for index, (image, label) in enumerate(zip(pixels, y)):
        (folder / str(label)).mkdir(exist_ok=True)
        cv2.imwrite(str(folder / str(label) / f"{index:03d}.png"), image)
    return folder, pixels[:, None].astype(np.float32) / 255, y


def test_preprocess_applies_to_images_for_models_without_stored_preprocessing(digits, digit_images, tmp_path):
    import numpy as np

    folder, x, y = digit_images
    normalized = tmp_path / "normalized.npz"  # the folder's pixels as --preprocess mean=0.5,std=0.25 makes them
    np.savez(normalized, x=(x - 0.5) / 0.25, y=y)
    expected, _ = evaluate(digits.onnx, str(normalized))
    np.savez(tmp_path / "raw.npz", x=x, y=y)
    untouched, _ = evaluate(digits.onnx, str(tmp_path / "raw.npz"))
    assert expected.top1 != untouched.top1  # the premise: the normalization changes this model's answers

    report = bench.bench([str(digits.onnx)], data=str(folder), preprocess="mean=0.5,std=0.25", max_time=0)
    assert report.rows()[0]["accuracy"]["top1"] == expected.top1
    report = bench.bench([str(digits.onnx)], data=str(folder), max_time=0)  # the input's defaults: /255, gray
    assert report.rows()[0]["accuracy"]["top1"] == untouched.top1


def test_models_without_preprocessing_follow_the_one_recorded(digits, digit_images, tmp_path):
    from kit.export import export_onnx

    folder, _, _ = digit_images
    recorded = tmp_path / "recorded.onnx"  # the same network, recording its preprocessing
    export_onnx(digits.module, recorded, input_shapes="1x1x8x8", preprocess="color=gray,mean=0.5,std=0.25")
    report = bench.bench([str(recorded), str(digits.onnx)], data=str(folder), max_time=0)
    same_pixels = report.rows()[1]["fidelity"][0]
    assert same_pixels["top1"] == 1.0 and same_pixels["max_abs"] < 1e-4
    with pytest.warns(KitWarning, match=r"--preprocess applies to models that record no preprocessing; .*recorded"
                                        r"\.onnx keep their own"):
        bench.bench([str(recorded), str(digits.onnx)], data=str(folder), max_time=0, preprocess="mean=0.5,std=0.25")


def test_bad_preprocess_fails_before_measuring(digits, digit_images, tmp_path):
    from helpers import run_kit

    folder, _, _ = digit_images
    result = run_kit("bench", digits.onnx, "--data", folder, "--preprocess", "colour=gray", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: expected key=value with a key among size")
    result = run_kit("bench", digits.onnx, "--data", digits.test, "--preprocess", "size=8", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: --preprocess says how images become inputs; --data ")
    assert files_in(tmp_path) == []


def _hiding(tmp_path, *modules) -> dict:
    """Environment for a kit process (and its workers) in which these modules cannot be imported."""
    folder = tmp_path / "hide"
    folder.mkdir(parents=True)
    (folder / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import sys

        class Hide:
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] in {modules!r}:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

        sys.meta_path.insert(0, Hide())
    """))
    return {"PYTHONPATH": str(folder)}


def test_without_pytest_benchmark_the_bench_extra_is_named(digits, tmp_path):
    from helpers import run_kit

    for hidden in ("pytest", "pytest_benchmark"):
        result = run_kit("bench", digits.onnx, cwd=tmp_path, env=_hiding(tmp_path / hidden, hidden))
        assert result.returncode == 2, result.stderr
        assert result.stderr == (f"error: kit bench needs pytest and pytest-benchmark (its timing engine); {hidden} "
                                 'is not installed. Install them with: pip install "edge-inference-kit[bench]"\n')


def test_matplotlib_is_needed_only_for_plot(digits, tmp_path):
    from helpers import run_kit

    env = _hiding(tmp_path, "matplotlib")
    result = run_kit("bench", digits.onnx, "--max-time", "0", "--markdown", tmp_path / "run.md", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "model.onnx[onnxruntime]" in (tmp_path / "run.md").read_text()
    result = run_kit("bench", digits.onnx, "--plot", tmp_path / "run.png", "--save-json", tmp_path / "run.json",
                     cwd=tmp_path, env=env)
    assert result.returncode == 2 and result.stderr == ('error: --plot needs matplotlib, which is not installed. '
                                                        'Install it with: pip install "edge-inference-kit[plot]", '
                                                        'or drop --plot.\n')
    assert files_in(tmp_path) == ["hide", "run.md"]  # refused before measuring: no JSON either


def _assert_readable_at_80_columns(text: str, report) -> None:
    """Every cell of the table whole on one line, no line of the table wider than 80, no ellipsis."""
    from kit.bench.report import notes, table_rows

    note_lines = notes(report)
    table = [line for line in text.splitlines() if line not in note_lines]
    assert max(len(line) for line in table) <= 80, "\n".join(table)
    assert "\u2026" not in text and "..." not in text
    for row in table_rows(report):
        for cell in row:
            assert any(cell in line for line in table), f"{cell!r} is not whole on any line:\n{text}"


def test_table_at_80_columns(measured):
    import io

    from rich.console import Console

    from kit.bench.report import print_table

    report, _ = measured
    for width in (80, 200):
        out = io.StringIO()
        print_table(report, Console(file=out, width=width, markup=False, soft_wrap=True))
        if width == 80:
            _assert_readable_at_80_columns(out.getvalue(), report)
            assert out.getvalue().startswith("1  model.onnx[onnxruntime] (baseline)\n2  fp16.onnx[onnxruntime]\n")
        else:  # wide enough: the one table with the names in it
            assert "\u2503 variant " in out.getvalue() and "\n1  " not in out.getvalue()


def test_kit_bench_table_at_80_columns_through_the_cli(measured, digits, tmp_path):
    from helpers import run_kit

    _, folder = measured
    result = run_kit("bench", digits.onnx, folder / "fp16.onnx", "--max-time", "0", "--threads", "1",
                     "--save-json", tmp_path / "run.json", columns=80, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = bench.BenchReport(json.loads((tmp_path / "run.json").read_text()))
    _assert_readable_at_80_columns(result.stdout.replace(f"wrote {tmp_path / 'run.json'}\n", ""), report)
