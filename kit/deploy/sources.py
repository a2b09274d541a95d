"""Where frames come from: a camera, a video file, a network stream, a GStreamer pipeline or a
folder of images, read by OpenCV in a thread of its own so decoding overlaps inference.

A live source (camera, stream, GStreamer) does not wait for the application: its thread keeps
only the newest frame, and a frame replaced before the application took it is counted as
dropped (what a camera does when the model is slower than it). A file or folder waits: its
thread reads ahead a few frames into a bounded queue and blocks, so every frame is processed.

``open_source(text)`` takes what ``kit run --source`` takes: ``0`` or ``/dev/video0`` (a
camera), ``rtsp://``, ``http(s)://`` (a stream), ``gst:PIPELINE ! appsink`` (GStreamer, when
OpenCV was built with it), a folder of images, or a video file.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kit.core.errors import InputError, RuntimeUnavailableError

READ_AHEAD = 4  # frames a file's thread decodes ahead of the application
IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")
GST_PREFIX = "gst:"
READ_TIMEOUT_SECONDS = 4.0  # a live source's read gives up after this (where the backend honours it)
JOIN_SECONDS = 5.0  # how long close() waits for the capture thread: longer than a read


@dataclass(frozen=True)
class Frame:
    index: int  # the frame's number in the source, dropped frames counted
    timestamp: float  # seconds: the position in a video, or since the source opened (live, folders)
    image: np.ndarray  # BGR uint8, as OpenCV decodes
    read_ms: float  # the capture and decoding of this frame
    name: str | None = None  # a folder's file name
    prepared: Any = None  # what ``prepare`` made of the image in the capture thread (the model's input)
    prepare_ms: float | None = None


class Source:
    """Frames from a reader function, in a capture thread; iterate, then close (or use ``with``).

    ``read()`` runs only in the thread and returns the next (BGR image, timestamp or None,
    name or None), or None at the end; ``first`` is an item read before the thread started.
    ``prepare(image)``, when given, also runs in the thread (preprocessing, beside the model:
    measured, it keeps the application's thread from waiting on the interpreter lock)."""

    def __init__(self, description: str, live: bool, read, release=lambda: None, *, fps: float | None = None,
                 first=None, first_ms: float = 0.0, prepare: Callable[[np.ndarray], Any] | None = None):
        self.description = description
        self.live = live
        self.fps = fps  # the source's own rate, when it states one
        self.dropped = 0
        self._read, self._release, self._first, self._first_ms = read, release, first, first_ms
        self._prepare = prepare
        self._taking = False  # the application has taken a frame
        self._stop = threading.Event()
        self._error: BaseException | None = None
        # Live: the newest frame and room for the end behind it; a file: a few frames read ahead.
        self._slot: queue.Queue = queue.Queue(maxsize=2 if live else READ_AHEAD)
        self._lock = threading.Lock()
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._capture, name=f"kit-capture {description}", daemon=True)
        self._thread.start()

    def _capture(self) -> None:
        index = 0
        try:
            while not self._stop.is_set():
                began = time.perf_counter()
                first, self._first = self._first, None
                item = first or self._read()
                if item is None:
                    break
                image, stamp, name = item
                read_ms = self._first_ms if first else (time.perf_counter() - began) * 1e3
                stamp = time.perf_counter() - self._started if stamp is None else stamp
                prepared = prepare_ms = None
                if self._prepare is not None:
                    began = time.perf_counter()
                    prepared = self._prepare(image)
                    prepare_ms = (time.perf_counter() - began) * 1e3
                self._put(Frame(index, stamp, image, read_ms, name, prepared, prepare_ms))
                index += 1
        except BaseException as error:  # handed to the application's thread, which raises it
            self._error = error
        finally:
            self._put(None)  # the end, whatever ended it

    def _put(self, frame: Frame | None) -> None:
        if self.live and frame is not None:
            with self._lock:  # the newest frame replaces those not yet taken: they are dropped
                while True:
                    try:
                        self._slot.get_nowait()
                    except queue.Empty:
                        break
                    # Counted once the application takes frames: before that, it was not ready for any.
                    self.dropped += self._taking
                self._slot.put_nowait(frame)
            return
        while True:  # a file's frame, or the end: wait for room unless nobody reads any more
            try:
                self._slot.put(frame, timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set():
                    return

    def __iter__(self) -> Iterator[Frame]:
        while True:
            try:
                frame = self._slot.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if frame is None:
                if self._error is not None:
                    raise self._error
                return
            if self._stop.is_set():  # asked to stop: frames read ahead are not processed
                return
            self._taking = True
            yield frame

    def stop(self) -> None:
        """End the frames soon (safe from a signal handler): the iteration returns."""
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        with self._lock:  # unblock a file's thread waiting for room
            while not self._slot.empty():
                self._slot.get_nowait()
        self._thread.join(JOIN_SECONDS)
        if not self._thread.is_alive():  # a read still blocked in the thread keeps its capture
            self._release()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def open_source(text: str, *, loop: bool = False, prepare: Callable[[np.ndarray], Any] | None = None) -> Source:
    """The source ``text`` names (see the module's docstring), opened; a clear InputError when it
    cannot be: what was tried and what to check. ``loop``: a file or folder starts over at its
    end (the pipeline benchmark's endless frames); live sources never end anyway. ``prepare``:
    see Source (FrameProcessor.prepare)."""
    cv2 = _cv2()
    text = str(text)
    if not text.strip():
        raise InputError("expected a source (a camera, a video, a stream URL, gst:PIPELINE or a folder); found an "
                         "empty one.", hint="E.g. --source 0 or --source video.mp4")
    if text.startswith(GST_PREFIX):
        return _gstreamer(cv2, text[len(GST_PREFIX):].strip(), prepare)
    if text.isdigit() or text.startswith("/dev/video"):
        return _capture(cv2, int(text) if text.isdigit() else text, f"camera {text}", live=True, prepare=prepare,
                        hint="Check that the camera is connected (ls /dev/video*) and not used by another program.")
    if text.lower().startswith(STREAM_SCHEMES):
        return _capture(cv2, text, f"stream {text}", live=True, backend=cv2.CAP_FFMPEG, prepare=prepare,
                        hint="Check the address with ffprobe or VLC; OpenCV reads streams through FFmpeg.")
    path = Path(text)
    if path.is_dir():
        return _folder(cv2, path, loop, prepare)
    if not path.is_file():
        raise InputError(f"expected a camera (0, /dev/video0), a stream URL, gst:PIPELINE, a folder of images or a "
                         f"video file; found {text}, which does not exist.", hint="Check the path.")
    return _capture(cv2, str(path), f"video {path.name}", live=False, loop=loop, prepare=prepare,
                    hint="Expected a video OpenCV's FFmpeg decodes (mp4, avi, mkv, ...).")


def _cv2():
    try:
        import cv2
    except ImportError as exc:
        raise RuntimeUnavailableError("reading video needs OpenCV, which is not installed.",
                                      hint='Install it with: pip install "edge-inference-kit[image]"') from exc
    return cv2


def _capture(cv2, target, description: str, *, live: bool, hint: str, backend=None, loop: bool = False,
             prepare=None) -> Source:
    capture = cv2.VideoCapture(target, backend) if backend is not None else cv2.VideoCapture(target)
    if not capture.isOpened():
        capture.release()
        raise InputError(f"OpenCV could not open {description}.", hint=hint)
    if live:
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # where the backend allows: the newest frame, not a queue
        # A stalled stream's read returns within this (FFmpeg's default: 30 s), so close() can end it.
        if hasattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC"):  # OpenCV 4.6 and later
            capture.set(cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_SECONDS * 1e3)
    fps = capture.get(cv2.CAP_PROP_FPS) or None

    def read():
        ok, image = capture.read()
        if not ok and loop and capture.set(cv2.CAP_PROP_POS_FRAMES, 0):
            ok, image = capture.read()
        if not ok:
            return None
        return image, None if live else capture.get(cv2.CAP_PROP_POS_MSEC) / 1e3, None

    began = time.perf_counter()
    first = read()  # a file OpenCV opens but cannot decode ends here, with a clear error
    if first is None:
        capture.release()
        raise InputError(f"OpenCV opened {description} but could not read a frame from it.", hint=hint)
    return Source(description, live, read, capture.release, fps=fps, first=first,
                  first_ms=(time.perf_counter() - began) * 1e3, prepare=prepare)


def _gstreamer(cv2, pipeline: str, prepare) -> Source:
    from kit.deploy.doctor import video_backends

    if not video_backends(cv2.getBuildInformation()).get("GStreamer"):
        raise InputError("gst: sources need OpenCV built with GStreamer; this OpenCV was built without it (pip's "
                         "opencv-python and -headless wheels never have it).",
                         hint="On a Jetson: JetPack's OpenCV (apt install python3-opencv) has GStreamer; "
                              "kit doctor shows OpenCV's video I/O.")
    if "appsink" not in pipeline:
        raise InputError(f"expected a GStreamer pipeline ending in appsink, found {pipeline!r}.",
                         hint="E.g. gst:nvarguscamerasrc ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! "
                              "video/x-raw,format=BGR ! appsink drop=1")
    return _capture(cv2, pipeline, "GStreamer pipeline", live=True, backend=cv2.CAP_GSTREAMER, prepare=prepare,
                    hint="Try the pipeline with gst-launch-1.0 (ending in fakesink) first.")


def _folder(cv2, folder: Path, loop: bool = False, prepare=None) -> Source:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise InputError(f"the folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}).",
                         hint="Give a folder of images, a video file or a camera.")
    remaining = itertools.cycle(files) if loop else iter(files)

    def read():
        path = next(remaining, None)
        if path is None:
            return None
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise InputError(f"could not decode {path} as an image.",
                             hint="Expected a PNG, JPEG, BMP or another format OpenCV reads.")
        return image, None, path.name

    return Source(f"folder {folder.name} ({len(files)} images)", False, read, prepare=prepare)
