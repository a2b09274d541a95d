"""The application loop: frames from a source, through the model, to results, a drawn video, a
JSON-lines file or a window, with every stage timed.

``FrameProcessor`` is one image's way through the model (preprocess as the model records,
infer, post-process by its task): ``kit run --source``, ``kit serve``'s /predict and the
pipeline benchmark all call it, so they compute the same results the same way.

Stages, each timed per frame: capture (reading and decoding, in the source's own thread, so
it overlaps the others), wait (the loop waiting for the next frame: a source slower than the
rest shows here), preprocess (in the source's thread too when the source was opened with
``prepare=processor.prepare``, as kit run does: measured, that took a 64x64 video's loop around
a 0.6 ms CNN from 15% to 6% outside the model), inference (the runtime's call alone), postprocess, draw
(results and the FPS line on the frame, when a video or window wants it) and write (encoding
the video, the JSON line, the window). Shares are of the frame's wall time; capture's (and
preprocess's, when prepared in the source's thread) run beside the others, not in their sum.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kit.core.errors import InputError

STAGES = ("capture", "wait", "preprocess", "inference", "postprocess", "draw", "write")
FPS_WINDOW = 30  # frames the FPS drawn on the video is averaged over
VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}  # what pip's OpenCV (FFmpeg) writes
DEFAULT_FPS = 30.0  # a file's rate (saved video, kit serve's playback) when the source states none


@dataclass
class Processed:
    outputs: dict[str, np.ndarray]
    results: Any  # the task's results for the image (for a detector, boxes in its pixels); None without a task
    ms: dict[str, float]  # preprocess, inference, postprocess

    def reported(self) -> Any:
        """What a frame reports: the task's results, or each output's summary without a task."""
        if self.results is not None:
            return self.results
        from kit.core.formatting import summaries

        return summaries(self.outputs)


def image_report(processed: Processed, task) -> dict[str, Any]:
    """One image's part of kit run --json and kit serve's /predict: each output summarized, and
    the task's results (for a detector, boxes in the image's pixels)."""
    from kit.core.formatting import summaries

    report: dict[str, Any] = {"outputs": summaries(processed.outputs)}
    if task is not None:
        report.update(task=task.name, results=processed.results)
    return report


class FrameProcessor:
    """One decoded image (BGR, or gray for a gray model) through the model: kit run --image and
    --source, kit serve and the pipeline benchmark all call it."""

    def __init__(self, runtime, task, steps):
        from kit.data.preprocess import FusedPreprocess

        self.runtime, self.task, self.steps = runtime, task, steps
        self.input_name = runtime.inputs[0].name
        self._preprocess = FusedPreprocess(steps)

    @classmethod
    def for_model(cls, runtime, task, recorded: dict | None, given: str | None = None, *,
                  model: str | None = None) -> FrameProcessor:
        """With the preprocessing the model records (``recorded``), else ``given`` (--preprocess text)."""
        from kit.data.preprocess import for_images

        if len(runtime.inputs) != 1:
            raise InputError(f"images feed a single-input model; this one takes {len(runtime.inputs)}.",
                             hint="Use --input NAME=file.npy per input.")
        return cls(runtime, task, for_images(runtime.inputs[0], recorded, given, model=model))

    @classmethod
    def open(cls, path, runtime: str | None = None, *, model: str | None = None, preprocess: str | None = None,
             **options) -> FrameProcessor:
        """The model file or bundle at ``path`` loaded (kit.load), with the task and preprocessing
        it records; close it, or use ``with``."""
        import kit

        loaded = kit.load(path, runtime, model=model, **options)
        try:
            return cls.as_recorded(loaded, preprocess)
        except BaseException:
            loaded.close()
            raise

    @classmethod
    def as_recorded(cls, runtime, preprocess=None) -> FrameProcessor:
        """For a loaded runtime, with the task and preprocessing its model file records
        (``preprocess``: --preprocess text or a Preprocess, for a model that records none)."""
        from kit import tasks
        from kit.core import provenance

        recorded = provenance.read(runtime.model_path)
        task = tasks.from_dict(recorded["task"]) if recorded.get("task") else None
        return cls.for_model(runtime, task, recorded.get("preprocess"), preprocess, model=str(runtime.model_path))

    def close(self) -> None:
        self.runtime.close()

    def __enter__(self) -> FrameProcessor:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """The model's input for ``image``: safe to call in another thread (a source's)."""
        if self.steps.color == "gray" and image.ndim == 3:
            import cv2

            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        return self._preprocess(image)

    def __call__(self, image: np.ndarray, prepared: np.ndarray | None = None,
                 prepare_ms: float | None = None) -> Processed:
        """``image`` through the model; ``prepared`` is its input when prepare already ran (in the
        source's thread, taking ``prepare_ms``)."""
        from kit.data.preprocess import placement

        began = time.perf_counter()
        tensor = self.prepare(image) if prepared is None else prepared
        ready = time.perf_counter()
        outputs = self.runtime.run({self.input_name: tensor})
        inferred = time.perf_counter()
        results = None if self.task is None else self.task.results(
            outputs, input_hw=self.steps.size, image_hw=image.shape[:2],
            placement=placement(image.shape[:2], self.steps.size, self.steps.resize))[0]
        done = time.perf_counter()
        return Processed(outputs, results, {"preprocess": (ready - began) * 1e3 if prepared is None else prepare_ms,
                                            "inference": (inferred - ready) * 1e3,
                                            "postprocess": (done - inferred) * 1e3})


@dataclass
class StreamResult:
    source: str
    live: bool
    frames: int = 0
    dropped: int = 0
    seconds: float = 0.0
    stopped: str = "the source ended"
    times: dict[str, list[float]] = field(default_factory=lambda: {stage: [] for stage in STAGES})

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def stages(self) -> dict[str, dict[str, float]]:
        return stage_stats(self.times, self.seconds * 1e3 / self.frames if self.frames else 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "live": self.live, "frames": self.frames, "dropped": self.dropped,
                "seconds": round(self.seconds, 4), "fps": round(self.fps, 2), "stopped": self.stopped,
                "stages": self.stages()}


def stage_stats(times: dict[str, list[float]], frame_ms: float) -> dict[str, dict[str, float]]:
    """Per stage that ran: p50, p99 and mean milliseconds, and its share of ``frame_ms``, the
    frame's wall time (capture's runs in its own thread, beside the others)."""
    ran = {stage: np.asarray(values) for stage, values in times.items() if values}
    return {stage: {"p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99)),
                    "mean_ms": float(values.mean()), "share": float(values.mean() / frame_ms) if frame_ms else 0.0}
            for stage, values in ran.items()}


class Annotator:
    """Results and the status line (FPS over the last frames, this frame's inference time) drawn
    on a copy of the frame."""

    def __init__(self, task):
        self.task = task
        self.recent: deque[float] = deque(maxlen=FPS_WINDOW)

    def __call__(self, image: np.ndarray, processed: Processed) -> np.ndarray:
        import cv2

        self.recent.append(time.perf_counter())
        drawn = self.task.draw(image, processed.results) if self.task is not None else image.copy()
        recent = self.recent
        fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else 0.0
        cv2.putText(drawn, f"{fps:.1f} FPS  inference {processed.ms['inference']:.1f} ms", (8, drawn.shape[0] - 10),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        return drawn


def check_outputs(save: str | None, jsonl: str | None, reads: list[str]) -> None:
    """Refuse output paths before anything runs: the right suffixes, never an input."""
    from kit.core.fileio import check_output_path

    if save is not None:
        if Path(save).suffix.lower() not in VIDEO_CODECS:
            raise InputError(f"expected --save to end in {', '.join(VIDEO_CODECS)}, found {save}.",
                             hint="E.g. --save out.mp4")
        check_output_path(save, *reads)
    if jsonl is not None:
        if Path(jsonl).suffix.lower() not in (".jsonl", ".ndjson"):
            raise InputError(f"expected --jsonl to end in .jsonl, found {jsonl}.", hint="E.g. --jsonl results.jsonl")
        check_output_path(jsonl, *reads)


def check_window() -> None:
    """--show needs OpenCV's GUI, which the headless wheels (the kit's) leave out."""
    import cv2

    try:
        cv2.namedWindow("kit", cv2.WINDOW_NORMAL)
        cv2.destroyWindow("kit")
    except cv2.error as exc:
        raise InputError("--show needs an OpenCV with a GUI (highgui); this one has none (opencv-python-headless) "
                         "or no display is available.",
                         hint="Use --save out.mp4 instead, or install opencv-python on a machine with a display.") \
            from exc


def run_stream(processor: FrameProcessor, source, *, save: str | None = None, jsonl: str | None = None,
               show: bool = False, max_frames: int | None = None, duration: float | None = None,
               on_frame: Callable[[int, float], None] | None = None) -> StreamResult:
    """Every frame of ``source`` through ``processor`` until the source ends, ``max_frames`` or
    ``duration`` seconds, the window's q/Esc, or Ctrl-C, which ends the loop like the others
    (in the main thread; a second Ctrl-C interrupts): the files are finished and moved into
    place (nothing half-written on an error)."""
    from kit.core.fileio import atomic_output

    result = StreamResult(source.description, source.live)
    annotate = Annotator(processor.task) if save or show else None
    with contextlib.ExitStack() as stack:
        video = _VideoOut(stack.enter_context(atomic_output(save)), source.fps) if save else None
        lines = stack.enter_context(open(stack.enter_context(atomic_output(jsonl)), "w", encoding="utf-8")) \
            if jsonl else None
        if video:
            stack.callback(video.release)  # before atomic_output moves the file: closed and complete
        started = waited = time.perf_counter()
        stack.enter_context(stop_on_signals(lambda signum: _stop_stream(signum, source, result)))
        try:
            for frame in source:
                got = time.perf_counter()
                processed = processor(frame.image, frame.prepared, frame.prepare_ms)
                ms = {"capture": frame.read_ms, "wait": (got - waited) * 1e3, **processed.ms}
                began = time.perf_counter()
                if annotate:
                    drawn = annotate(frame.image, processed)
                    ms["draw"] = (time.perf_counter() - began) * 1e3
                    began = time.perf_counter()
                    if video:
                        video.write(drawn)
                    if show and _shown(drawn):
                        result.stopped = "the window was closed"
                if lines:
                    record = {"frame": frame.index, "timestamp": round(frame.timestamp, 6),
                              "results": processed.reported(),
                              "ms": {stage: round(value, 4) for stage, value in ms.items()}}
                    if frame.name:
                        record["file"] = frame.name
                    lines.write(json.dumps(record) + "\n")
                if video or lines or show:
                    ms["write"] = (time.perf_counter() - began) * 1e3
                for stage, value in ms.items():
                    result.times[stage].append(value)
                result.frames += 1
                waited = time.perf_counter()
                elapsed = waited - started
                if on_frame:
                    on_frame(result.frames, elapsed)
                if result.stopped == "the window was closed":
                    break
                if max_frames is not None and result.frames >= max_frames:
                    result.stopped = f"--max-frames {max_frames}"
                    break
                if duration is not None and elapsed >= duration:
                    result.stopped = f"--duration {duration:g}"
                    break
        finally:
            result.seconds = time.perf_counter() - started
            source.close()
            result.dropped = source.dropped
            if show:
                import cv2

                cv2.destroyAllWindows()
        if result.frames == 0 and (save or jsonl):  # raised inside: neither output is kept
            raise InputError(f"no frame was processed ({result.stopped} before the first); nothing was saved.",
                             hint="Check the source with kit run --source SRC --max-frames 1.")
    return result


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[int], None]):
    """The first SIGINT (Ctrl-C) or SIGTERM (systemctl stop) calls ``stop(signum)``, which ends a
    loop the way its own limits do (the stream, kit serve); the previous handlers are back for
    the next signal, which interrupts. Signals reach only the main thread: elsewhere nothing
    changes."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}

    def restore():
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def handler(signum, frame):
        restore()
        stop(signum)

    for signum in previous:
        signal.signal(signum, handler)
    try:
        yield
    finally:
        restore()


def _stop_stream(signum: int, source, result: StreamResult) -> None:
    import signal

    result.stopped = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    source.stop()


class _VideoOut:
    """cv2.VideoWriter, opened on the first frame (its size); the codec follows the suffix."""

    def __init__(self, path: Path, fps: float | None):
        self.path, self.fps, self.writer = path, fps or DEFAULT_FPS, None

    def write(self, image: np.ndarray) -> None:
        import cv2

        if self.writer is None:
            self.size = (image.shape[1], image.shape[0])
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_CODECS[self.path.suffix.lower()])
            self.writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, self.size)
            if not self.writer.isOpened():
                raise InputError(f"OpenCV could not write a {self.path.suffix} video here.",
                                 hint="Try --save out.avi (MJPG), which every OpenCV build writes.")
        if (image.shape[1], image.shape[0]) != self.size:  # a folder of mixed sizes: OpenCV would drop these
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))

    def release(self) -> None:
        if self.writer is not None:
            self.writer.release()


def _shown(image: np.ndarray) -> bool:
    """Show the frame; True when the user pressed q or Esc."""
    import cv2

    cv2.imshow("kit", image)
    return (cv2.waitKey(1) & 0xFF) in (ord("q"), 27)
