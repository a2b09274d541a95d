"""kit serve: a model over HTTP. ``POST /predict`` (image bytes in, kit run --image's JSON out,
through the same FrameProcessor), ``GET /info``, ``GET /health`` and, with a source,
``GET /stream`` (MJPEG of the annotated frames).

The standard library's ThreadingHTTPServer rather than a web framework: a device install
(a Coral board, a Raspberry Pi) then needs no framework or compiled wheels beyond the
runtime, four routes need no router, and each connection gets its own thread. The runtime
serializes calls where its backend is not thread-safe (Runtime's lock), so concurrent
requests are safe. Bodies are bounded (``max_bytes``) before they are read, and decoded
images by OpenCV's own pixel limit (OPENCV_IO_MAX_IMAGE_PIXELS, set before OpenCV loads).
"""

from __future__ import annotations

import json
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kit._version import __version__
from kit.core.errors import InputError, KitError

MAX_BYTES = 16 << 20  # a request body larger than this is refused before it is read
SOCKET_SECONDS = 30  # a connection silent for this long is closed
BUSY_PER_CPU = 2  # /predict requests decoding and running at once, per CPU (each holds a decoded image)
MJPEG_BOUNDARY = "kitframe"
STREAM_WAIT_SECONDS = 1.0  # a /stream client re-checks for shutdown at least this often


class Service:
    """What the endpoints answer, apart from HTTP: the processor, the model's description and,
    with a source, the newest annotated frame."""

    def __init__(self, processor, info: dict[str, Any], source=None):
        import os

        self.processor, self.info = processor, info
        self.working = threading.BoundedSemaphore(BUSY_PER_CPU * (os.cpu_count() or 1))
        self.stopping = threading.Event()
        self.feed = _Feed(processor, source, self.stopping) if source is not None else None

    def predict(self, body: bytes) -> dict[str, Any]:
        from kit.deploy.stream import image_report

        image = self.processor.steps.decode(body)
        processed = self.processor(image)
        return {**self.info["model"], **image_report(processed, self.processor.task),
                "image": {"height": int(image.shape[0]), "width": int(image.shape[1])},
                "ms": {stage: round(value, 4) for stage, value in processed.ms.items()}}

    def stop(self) -> None:
        self.stopping.set()
        if self.feed is not None:
            self.feed.join()


class _Feed:
    """The source's frames through the model in a thread of their own; the newest annotated frame
    as JPEG for every /stream client (a slow client skips frames, never slows the model)."""

    def __init__(self, processor, source, stopping: threading.Event):
        from kit.deploy.stream import Annotator

        self.processor, self.source, self.stopping = processor, source, stopping
        self.annotate = Annotator(processor.task)
        self.jpeg: bytes | None = None
        self.frames = 0
        self.error: str | None = None
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="kit-serve-feed", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import cv2

        from kit.deploy.stream import DEFAULT_FPS

        # A file plays at its own rate (looping), as a camera would deliver it, not at the model's.
        period = 0.0 if self.source.live else 1.0 / (self.source.fps or DEFAULT_FPS)
        started = time.perf_counter()
        try:
            for count, frame in enumerate(self.source):
                if self.stopping.is_set():
                    break
                if period:
                    self.stopping.wait(max(0.0, started + count * period - time.perf_counter()))
                processed = self.processor(frame.image, frame.prepared, frame.prepare_ms)
                encoded, data = cv2.imencode(".jpg", self.annotate(frame.image, processed))
                with self.changed:
                    self.jpeg, self.frames = data.tobytes() if encoded else self.jpeg, self.frames + 1
                    self.changed.notify_all()
        except Exception as error:  # noqa: BLE001 - the stream ends; /health and /stream say why
            self.error = str(error)
        finally:
            self.source.close()
            with self.changed:
                self.changed.notify_all()

    def next_frame(self, seen: int) -> tuple[int, bytes | None]:
        """The newest frame after frame number ``seen`` (waiting a while for it), and its number."""
        with self.changed:
            self.changed.wait_for(lambda: self.frames > seen or self.stopping.is_set() or not self.thread.is_alive(),
                                  timeout=STREAM_WAIT_SECONDS)
            return self.frames, self.jpeg

    def join(self) -> None:
        self.source.stop()
        self.thread.join(5)


def make_server(service: Service, host: str, port: int, max_bytes: int = MAX_BYTES) -> ThreadingHTTPServer:
    """The server bound to ``host:port`` (port 0: any free one), not yet serving."""
    import socket

    handler = type("KitHandler", (_Handler,), {"service": service, "max_bytes": max_bytes})
    server_class = type("KitServer", (ThreadingHTTPServer,), {
        "address_family": socket.AF_INET6 if ":" in host else socket.AF_INET})
    try:
        server = server_class((host, port), handler)
    except (OSError, OverflowError) as exc:
        raise InputError(f"could not listen on {host}:{port} ({getattr(exc, 'strerror', None) or exc}).",
                         hint="Check --host (an address of this machine) and --port (0 picks a free one; another "
                              "program may use this one).") from None
    server.daemon_threads = True  # a /stream client never holds the shutdown up
    return server


class _Handler(BaseHTTPRequestHandler):
    service: Service
    max_bytes: int
    server_version = f"kit/{__version__}"
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_SECONDS  # a client that stops sending (or reading) frees its thread

    def do_HEAD(self) -> None:  # noqa: N802 - every other method: JSON, as every error here
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} is not served.", "Use GET or POST /predict.",
                    allow="GET, POST")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD  # noqa: N815

    def parse_request(self) -> bool:
        self.body_read = False  # per request: one connection may carry several
        return super().parse_request()

    def handle_expect_100(self) -> bool:
        """Refuse an oversized body before the client sends it (Expect: 100-continue)."""
        length = self.headers.get("Content-Length", "")
        if length.isascii() and length.isdigit() and int(length) > self.max_bytes:
            self._too_large(int(length))
            return False
        return super().handle_expect_100()

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        routes = {"/health": self._health, "/info": lambda: self._json(HTTPStatus.OK, self.service.info),
                  "/stream": self._stream}
        if self.path.split("?")[0] == "/predict":
            return self._error(HTTPStatus.METHOD_NOT_ALLOWED, "/predict takes POST with the image as the body.",
                               "curl --data-binary @image.jpg http://HOST:PORT/predict", allow="POST")
        route = routes.get(self.path.split("?")[0])
        if route is None:
            return self._not_found()
        route()

    def do_POST(self) -> None:  # noqa: N802
        if self.path.split("?")[0] != "/predict":
            if self.path.split("?")[0] in ("/health", "/info", "/stream"):
                return self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.path} takes GET.", "", allow="GET")
            return self._not_found()
        length = self.headers.get("Content-Length")
        if length is None or not (length.isascii() and length.isdigit()):
            return self._error(HTTPStatus.LENGTH_REQUIRED, "expected a Content-Length header with the image's size.",
                               "Send the image as the body: curl --data-binary @image.jpg URL/predict")
        if int(length) > self.max_bytes:
            return self._too_large(int(length))
        body = self.rfile.read(int(length))
        self.body_read = True
        try:
            with self.service.working:  # decoded images are large: a few at a time
                self._json(HTTPStatus.OK, self.service.predict(body))
        except InputError as error:
            self._error(HTTPStatus.BAD_REQUEST, error.message, error.hint or "")
        except KitError as error:
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, error.message, error.hint or "")
        except Exception as error:  # noqa: BLE001 - a bug or a library failure: said, not a dropped connection
            self.log_message("internal error on %s: %s: %s", self.path, type(error).__name__, error)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"unexpected {type(error).__name__}: {error}",
                        "This is a bug or a library failure; the server's log has the line above.")

    def _too_large(self, length: int) -> None:
        self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    f"the body is {length:,} bytes; this server takes at most {self.max_bytes:,}.",
                    "Send a smaller image, or start kit serve with a larger --max-bytes.")

    def _health(self) -> None:
        feed = self.service.feed
        if feed is not None and feed.error:
            return self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "error", "stream": feed.error})
        body: dict[str, Any] = {"status": "ok"}
        if feed is not None:
            body.update(frames=feed.frames, stream="running" if feed.thread.is_alive() else "ended")
        self._json(HTTPStatus.OK, body)

    def _stream(self) -> None:
        feed = self.service.feed
        if feed is None:
            return self._error(HTTPStatus.NOT_FOUND, "/stream shows the frames of --source; this server has none.",
                               "Start kit serve with --source SRC (a camera, video or folder).")
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        seen = 0
        try:
            while not self.service.stopping.is_set():
                frames, jpeg = feed.next_frame(seen)
                if frames == seen or jpeg is None:
                    if not feed.thread.is_alive():
                        return  # the source ended
                    continue
                seen = frames
                self.wfile.write(f"--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}"
                                 "\r\n\r\n".encode() + jpeg + b"\r\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return  # the viewer left

    def _not_found(self) -> None:
        self._error(HTTPStatus.NOT_FOUND, f"no endpoint {self.path}.",
                    "POST /predict (an image), GET /info, GET /health, GET /stream (with --source).")

    def _error(self, status: HTTPStatus, message: str, hint: str, **headers: str) -> None:
        if not self.body_read and (self.command in ("POST", "PUT", "PATCH") or self.headers.get("Content-Length")
                                   or self.headers.get("Transfer-Encoding")):
            self.close_connection = True  # an unread (or undelimited) body would be read as the next request
        self._json(status, {"error": message, "hint": hint, "status": int(status)}, **headers)

    def _json(self, status: HTTPStatus, body: dict, **headers: str) -> None:
        data = (json.dumps(body, default=str) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key.capitalize(), value)
        self.end_headers()
        if self.command != "HEAD":  # a HEAD response carries the headers only
            self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's name)
        """One line per request on stderr, as http.server writes them, without the date."""
        from kit.core.quiet import terminal

        print(f"{self.address_string()} {format % args}", file=terminal(), flush=True)


def serve_until_stopped(server: ThreadingHTTPServer, service: Service) -> str:
    """Serve until SIGINT or SIGTERM (in the main thread), then stop cleanly: no new connections,
    the stream's thread ended, the socket closed. Returns what stopped it."""
    import signal

    from kit.deploy.stream import stop_on_signals

    stopped = {"by": "shutdown"}

    def stop(signum: int) -> None:
        stopped["by"] = signal.Signals(signum).name
        threading.Thread(target=server.shutdown, daemon=True).start()  # not from serve_forever's thread

    try:
        with stop_on_signals(stop):
            server.serve_forever(poll_interval=0.2)
    finally:
        service.stop()
        server.server_close()
    return stopped["by"]
