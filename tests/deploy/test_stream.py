"""kit run --source through the real kit: a video written with cv2.VideoWriter, a folder of
images, cameras and GStreamer where absent; results against the model run frame by frame
outside the loop; the drop accounting of live and file sources; outputs finished or absent."""

import json
import os
import signal
import subprocess
import threading
import time

import numpy as np
import pytest
from helpers import KIT, run_kit

from kit.deploy.sources import Source

FRAMES = 24
FPS = 10
DIGITS_PREPROCESS = "color=gray,scale=0.00392156862745098"


@pytest.fixture(scope="session")
def classifier(digits, tmp_path_factory):
    """The digits CNN exported with its task (labels 0-9) and preprocessing recorded."""
    from kit.export import export_onnx

    path = tmp_path_factory.mktemp("classifier") / "digits.onnx"
    export_onnx(digits.module, path, input_shapes="1x1x8x8", preprocess=DIGITS_PREPROCESS,
                task={"name": "classify", "labels": list("0123456789")})
    return path


def digit_frames(digits, count: int, side: int = 64) -> list[np.ndarray]:
    import cv2

    x = np.load(digits.test)["x"][:count, 0]
    return [cv2.cvtColor(cv2.resize((image * 255).astype(np.uint8), (side, side), interpolation=cv2.INTER_NEAREST),
                         cv2.COLOR_GRAY2BGR) for image in x]


def write_video(path, frames, fps=FPS, codec="MJPG"):
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="session")
def video(digits, tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "digits.avi", digit_frames(digits, FRAMES))


def decoded(path) -> list[np.ndarray]:
    import cv2

    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def reference_results(model, frames) -> list[list[dict]]:
    """Each frame through the model outside the loop: apply (not the fused path), run, classify."""
    import cv2

    from kit.core import provenance
    from kit.data.preprocess import Preprocess
    from kit.tasks import from_dict as task_from_dict

    import kit

    recorded = provenance.read(model)
    steps, task = Preprocess.from_dict(recorded["preprocess"]), task_from_dict(recorded["task"])
    with kit.load(model) as runtime:
        return [task.results(runtime.run({"input": steps.apply(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))}))[0]
                for frame in frames]


def read_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_frame_of_a_video_gives_the_models_results(classifier, video, tmp_path):
    ran = run_kit("run", classifier, "--source", video, "--jsonl", tmp_path / "r.jsonl", "--save",
                  tmp_path / "out.mp4")
    assert ran.returncode == 0, ran.stderr
    assert f"\nover video digits.avi: {FRAMES} frames in" in ran.stdout
    assert "no frame dropped (a file waits for the model); stopped: the source ended" in ran.stdout
    for stage in ("capture", "wait", "preprocess", "inference", "postprocess", "draw", "write"):
        assert f"│ {stage}" in ran.stdout
    assert max(len(line) for line in ran.stdout.splitlines() if str(tmp_path.parent) not in line) <= 80
    lines = read_lines(tmp_path / "r.jsonl")
    assert [line["frame"] for line in lines] == list(range(FRAMES))
    assert [line["timestamp"] for line in lines] == pytest.approx([i / FPS for i in range(FRAMES)])
    expected = reference_results(classifier, decoded(video))
    for line, reference in zip(lines, expected):
        assert [r["label"] for r in line["results"]] == [r["label"] for r in reference]
        assert [r["score"] for r in line["results"]] == pytest.approx([r["score"] for r in reference], abs=1e-5)
    assert set(lines[1]["ms"]) == {"capture", "wait", "preprocess", "inference", "postprocess", "draw"}
    saved = decoded(tmp_path / "out.mp4")
    assert len(saved) == FRAMES and saved[0].shape == (64, 64, 3)


def test_the_json_summary_has_every_stage(classifier, video):
    ran = run_kit("run", classifier, "--source", video, "--json", "--max-frames", "5")
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout)
    assert (summary["frames"], summary["dropped"], summary["stopped"], summary["task"]) == (
        5, 0, "--max-frames 5", "classify")
    stages = summary["stages"]
    assert set(stages) == {"capture", "wait", "preprocess", "inference", "postprocess"}  # nothing drawn, written
    for stats in stages.values():
        assert 0 <= stats["p50_ms"] <= stats["p99_ms"] and 0 <= stats["share"]
    # Shares are of the frame's wall time: the loop's own stages fit in it (capture and preprocess run
    # beside them, in the source's thread).
    assert sum(stats["share"] for stage, stats in stages.items() if stage not in ("capture", "preprocess")) <= 1


def test_a_folder_of_images_gives_what_run_image_gives(tmp_path):
    """The tiny detector over a folder: each file's boxes in its pixels, as kit run --image
    gives them for that file alone (one code path)."""
    from helpers import write_sets
    from models import __file__ as models_file

    write_sets(tmp_path, dark=True)
    model = tmp_path / "det.onnx"
    exported = run_kit("export", f"{models_file}:make_tiny_detector", "--input-shape", "1x3x32x32", "--task",
                       "detect", "--labels", tmp_path / "classes.txt", "--preprocess", "size=32,resize=letterbox",
                       "-o", model)
    assert exported.returncode == 0, exported.stderr
    ran = run_kit("run", model, "--source", tmp_path / "images", "--jsonl", tmp_path / "r.jsonl",
                  "--save", tmp_path / "boxes.avi")
    assert ran.returncode == 0, ran.stderr
    lines = read_lines(tmp_path / "r.jsonl")
    assert [line["file"] for line in lines] == ["dark.png", "white.png"]
    for line in lines:
        single = run_kit("run", model, "--image", tmp_path / "images" / line["file"], "--json")
        boxes = json.loads(single.stdout)["results"]
        assert [b["label"] for b in line["results"]] == [b["label"] for b in boxes]
        assert np.allclose([b["box"] for b in line["results"]], [b["box"] for b in boxes], atol=1e-4)
    assert len(decoded(tmp_path / "boxes.avi")) == 2


class Counted:
    """A synthetic live source: frame k is an image full of k. ``pace`` decides when the next
    frame comes: after the application took the last (slower than it), or all at once."""

    def __init__(self, count: int, *, wait_for_consumer: bool):
        self.count, self.made, self.wait = count, 0, wait_for_consumer
        self.taken = threading.Semaphore(0)

    def read(self):
        if self.made == self.count:
            return None
        if self.wait and self.made:
            self.taken.acquire()  # the next frame only once the application took the last one
        self.made += 1
        return np.full((4, 4, 3), self.made - 1, np.uint8), None, None


def test_a_live_source_slower_than_the_model_drops_nothing():
    made = Counted(50, wait_for_consumer=True)
    source, seen = Source("slow", True, made.read), []
    for frame in source:
        seen.append(int(frame.image[0, 0, 0]))
        made.taken.release()
    source.close()
    assert seen == list(range(50)) and source.dropped == 0


def test_a_live_source_faster_than_the_model_keeps_the_newest_and_counts_the_rest():
    """Frame 0 is taken; frames 1-49 all arrive while the application is busy with it: it then
    sees the newest, 49, and the 48 replaced before it are counted. Frames that arrive before
    the application takes its first are not counted: it was not ready for any."""
    taken = threading.Event()
    made = iter(range(50))

    def read():
        index = next(made, None)
        if index == 1:
            taken.wait(10)
        return None if index is None else (np.full((4, 4, 3), index, np.uint8), None, None)

    source, seen = Source("fast", True, read), []
    for frame in source:
        seen.append(int(frame.image[0, 0, 0]))
        if len(seen) == 1:
            taken.set()
            source._thread.join(10)  # busy with frame 0 while the camera delivers the rest
    source.close()
    assert seen == [0, 49] and source.dropped == 48  # every frame is either seen or counted dropped


def test_a_file_source_waits_for_a_slow_application():
    made = Counted(50, wait_for_consumer=False)
    source, seen = Source("file", False, made.read), []
    for frame in source:
        time.sleep(0.001)
        seen.append(int(frame.image[0, 0, 0]))
    source.close()
    assert seen == list(range(50)) and source.dropped == 0


@pytest.mark.parametrize("signum, said", [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_ctrl_c_and_sigterm_finish_the_files(classifier, digits, tmp_path, signum, said):
    """SIGINT or SIGTERM while frames flow: the loop ends like any other stop, the video and the
    JSON lines are complete and in place, exit 0."""
    long_video = write_video(tmp_path / "long.avi", digit_frames(digits, 40) * 150)  # 6000 frames
    process = subprocess.Popen([str(KIT), "run", str(classifier), "--source", str(long_video), "--jsonl",
                                str(tmp_path / "r.jsonl"), "--save", str(tmp_path / "out.avi")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "COLUMNS": "80"})
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".r.jsonl.") for p in tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)  # the outputs' temporary folder: the loop has begun
    time.sleep(0.2)
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert f"stopped: {said}" in out
    lines = read_lines(tmp_path / "r.jsonl")
    assert 0 < len(lines) < 6000 and [line["frame"] for line in lines] == list(range(len(lines)))
    assert len(decoded(tmp_path / "out.avi")) == len(lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.avi", "out.avi", "r.jsonl"]


@pytest.mark.parametrize("extra, message", [
    (["--source", "{d}/nosuch.avi"], "found {d}/nosuch.avi, which does not exist"),
    (["--source", "{d}/notes.txt"], "OpenCV could not open video notes.txt"),
    (["--source", "{d}/empty"], "the folder {d}/empty holds no images"),
    (["--source", "7"], "OpenCV could not open camera 7."),
    (["--source", "gst:videotestsrc ! appsink"], "gst: sources need OpenCV built with GStreamer"),
    (["--source", "{v}", "--show"], "--show needs an OpenCV with a GUI (highgui)"),
    (["--source", "{v}", "--save", "{d}/out.txt"], "expected --save to end in .mp4, .avi, .mkv, found"),
    (["--source", "{v}", "--jsonl", "{d}/out.json"], "expected --jsonl to end in .jsonl"),
    (["--source", "{v}", "--save", "{v}"], "digits.avi"),
    (["--source", "{v}", "-o", "{d}/o.npz"], "with --source the frames' results go to --jsonl"),
    (["--image", "{v}", "--jsonl", "{d}/r.jsonl"], "--jsonl go with --source"),
    (["--source", "{v}", "--max-frames", "0"], "--max-frames: expected a whole number >= 1"),
])
def test_bad_sources_and_flags_exit_2_and_write_nothing(classifier, video, tmp_path, extra, message):
    (tmp_path / "notes.txt").write_text("not a video\n")
    (tmp_path / "empty").mkdir()
    fill = lambda text: text.format(d=tmp_path, v=video)  # noqa: E731
    before = sorted(p.name for p in tmp_path.iterdir())
    ran = run_kit("run", classifier, *map(fill, extra))
    assert ran.returncode == 2 and fill(message) in ran.stderr, ran.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_looping_file_starts_over(video):
    from kit.deploy.sources import open_source

    with open_source(str(video), loop=True) as source:
        frames = [frame for _, frame in zip(range(FRAMES + 3), source)]
    assert [f.index for f in frames] == list(range(FRAMES + 3))
    assert np.array_equal(frames[FRAMES].image, frames[0].image) and frames[FRAMES].timestamp == frames[0].timestamp


def test_bench_times_the_pipeline_beside_the_model_call(classifier, video, tmp_path):
    ran = run_kit("bench", classifier, "--pipeline", video, "--max-time", "0.2", "--threads", "1",
                  "--save-json", tmp_path / "b.json", "--markdown", tmp_path / "b.md")
    assert ran.returncode == 0, ran.stderr
    document = json.loads((tmp_path / "b.json").read_text())
    assert [b["name"] for b in document["benchmarks"]] == ["digits.onnx[onnxruntime]",
                                                           "digits.onnx[onnxruntime] pipeline"]
    model, frame = (b["extra_info"]["kit"] for b in document["benchmarks"])
    pipeline = frame["pipeline"]
    assert set(pipeline["stages"]) == {"capture", "wait", "preprocess", "inference", "postprocess", "draw", "write"}
    assert pipeline["source"] == "video digits.avi" and pipeline["frames_dropped"] == 0
    assert pipeline["outside_model"] == pytest.approx(1 - pipeline["stages"]["inference"]["share"])
    # A round is a whole frame: the model call inside it takes less than the round.
    assert pipeline["stages"]["inference"]["mean_ms"] < frame["latency_s"]["mean"] * 1e3
    assert frame["throughput_per_s"] == pytest.approx(1 / frame["latency_s"]["mean"])
    assert "accuracy" not in frame and model["fidelity"][0]["top1"] == 1.0
    assert "frame median [95% CI]" in ran.stdout and "pipeline: each round one frame of video digits.avi" in ran.stdout
    table = [line for line in ran.stdout.splitlines() if line[:1].isdigit() or "─" in line]
    assert table and max(map(len, table)) <= 80
    assert "| pipeline | frame median [95% CI] |" in (tmp_path / "b.md").read_text()


@pytest.mark.parametrize("extra, message", [
    (["--pipeline", "{d}/nosuch.avi"], "--pipeline {d}/nosuch.avi does not exist."),
    (["--pipeline", "{v}", "--batch", "2"], "--pipeline runs frames one at a time; found --batch 2."),
    (["--pipeline", "{d}"], "the folder {d} holds no images"),
])
def test_bench_pipeline_refusals(classifier, video, tmp_path, extra, message):
    fill = lambda text: text.format(d=tmp_path, v=video)  # noqa: E731
    ran = run_kit("bench", classifier, *map(fill, extra))
    assert ran.returncode == 2 and fill(message) in ran.stderr, ran.stderr


def test_a_bundle_streams_its_best_model_and_stays_untouched(bundle, video, tmp_path):
    ran = run_kit("run", bundle, "--source", video, "--jsonl", tmp_path / "r.jsonl", "--json")
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout)
    assert summary["bundle"]["model"] == "digits.int8.onnx" and summary["frames"] == FRAMES
    inside = run_kit("run", bundle, "--source", video, "--jsonl", bundle / "r.jsonl")
    assert inside.returncode == 2 and "is inside the bundle" in inside.stderr
    assert run_kit("doctor", bundle).returncode == 0  # nothing was written into it


def test_a_stream_with_no_frame_saves_nothing(classifier, tmp_path):
    from kit.core.errors import InputError
    from kit.deploy.stream import FrameProcessor, run_stream

    with FrameProcessor.open(classifier) as net:
        with pytest.raises(InputError, match=r"no frame was processed \(the source ended before the first\)"):
            run_stream(net, Source("empty", True, lambda: None), save=str(tmp_path / "o.avi"),
                       jsonl=str(tmp_path / "r.jsonl"))
    assert list(tmp_path.iterdir()) == []


def test_a_folder_of_mixed_sizes_saves_every_frame(classifier, tmp_path):
    import cv2

    (tmp_path / "mixed").mkdir()
    for index, (height, width) in enumerate([(64, 64), (96, 128), (64, 64), (200, 32)]):
        cv2.imwrite(str(tmp_path / "mixed" / f"{index}.png"), np.full((height, width, 3), 40 * index, np.uint8))
    ran = run_kit("run", classifier, "--source", tmp_path / "mixed", "--save", tmp_path / "mixed.avi")
    assert ran.returncode == 0, ran.stderr
    assert [frame.shape for frame in decoded(tmp_path / "mixed.avi")] == [(64, 64, 3)] * 4
