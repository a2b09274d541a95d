"""kit serve through the real kit process on 127.0.0.1, with a real HTTP client (http.client):
/predict gives kit run --image's JSON, errors are JSON with their status, the body limit holds,
concurrent requests agree, /stream sends the annotated frames, SIGINT and SIGTERM stop it."""

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import numpy as np
import pytest
from helpers import KIT, run_kit
from test_stream import DIGITS_PREPROCESS, classifier, video  # noqa: F401 (fixtures)

START_SECONDS = 60


@contextlib.contextmanager
def serving(*argv, signum=signal.SIGINT):
    """``kit serve ... --port 0`` running; yields (host, port, process). Stopped with ``signum``,
    and its exit checked."""
    process = subprocess.Popen([str(KIT), "serve", *map(str, argv), "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "80"})
    try:
        address = None
        deadline = time.monotonic() + START_SECONDS
        while address is None and time.monotonic() < deadline and process.poll() is None:
            line = process.stdout.readline()
            found = re.search(r"at http://([\d.]+):(\d+)", line)
            address = (found[1], int(found[2])) if found else None
        assert address, process.stderr.read() if process.poll() is not None else "no address printed"
        yield address[0], address[1], process
    finally:
        if process.poll() is None:
            process.send_signal(signum)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert f"stopped ({signal.Signals(signum).name})" in out


def request(address, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection(*address[:2], timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def digit_png(digits, tmp_path_factory):
    import cv2

    path = tmp_path_factory.mktemp("png") / "digit.png"
    cv2.imwrite(str(path), np.round(np.load(digits.test)["x"][3, 0] * 255).astype(np.uint8))
    return path


def test_predict_gives_what_kit_run_gives(classifier, digit_png):  # noqa: F811
    expected = json.loads(run_kit("run", classifier, "--image", digit_png, "--json").stdout)
    with serving(classifier) as address:
        status, headers, body = request(address, "POST", "/predict", digit_png.read_bytes())
        assert status == 200 and headers["Content-Type"] == "application/json"
        got = json.loads(body)
        for key in ("model", "runtime", "task", "results", "outputs"):
            assert got[key] == expected[key], key
        assert got["image"] == {"height": 8, "width": 8} and set(got["ms"]) == {"preprocess", "inference",
                                                                               "postprocess"}
        status, _, body = request(address, "GET", "/health")
        assert (status, json.loads(body)) == (200, {"status": "ok"})
        status, _, body = request(address, "GET", "/info")
        info = json.loads(body)
        assert status == 200 and info["task"]["labels"] == list("0123456789")
        assert info["inputs"][0]["shape"] == ["batch", 1, 8, 8] and info["preprocess"]["color"] == "gray"
        assert info["provenance"]["task"]["name"] == "classify" and info["source"] is None


def test_errors_are_json_with_their_status(classifier, digit_png, tmp_path):  # noqa: F811
    import cv2

    bomb = tmp_path / "bomb.png"  # 81 million pixels in a small file: refused, not decoded
    cv2.imwrite(str(bomb), np.zeros((9000, 9000), np.uint8))
    with serving(classifier, "--max-bytes", 150_000) as address:
        cases = [
            (("GET", "/predict", None, {}), 405, "/predict takes POST"),
            (("POST", "/info", b"", {}), 405, "/info takes GET"),
            (("GET", "/nowhere", None, {}), 404, "no endpoint /nowhere."),
            (("GET", "/stream", None, {}), 404, "/stream shows the frames of --source; this server has none."),
            (("POST", "/predict", b"not an image", {}), 400, "could not decode the 12 bytes received as an image."),
            (("POST", "/predict", bomb.read_bytes(), {}), 400, "could not decode the"),
            (("POST", "/predict", b"x" * 150_001, {}), 413, "the body is 150,001 bytes; this server takes at most "
                                                            "150,000."),
        ]
        for (method, path, body, headers), status, message in cases:
            got, response_headers, data = request(address, method, path, body, headers)
            error = json.loads(data)
            assert (got, error["status"]) == (status, status) and error["error"].startswith(message), (path, error)
        assert request(address, "GET", "/predict")[1]["Allow"] == "POST"
        with socket.create_connection(address[:2], timeout=30) as raw:  # no Content-Length
            raw.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b"".join(iter(lambda: raw.recv(4096), b""))  # the server closes the connection after it
        assert answer.startswith(b"HTTP/1.1 411 Length Required") and b"expected a Content-Length header" in answer
        assert request(address, "POST", "/predict", digit_png.read_bytes())[0] == 200  # still serving
        status, headers, data = request(address, "HEAD", "/info")
        assert (status, headers["Allow"]) == (405, "GET, POST")
        # A refused request's body is never read as the next request: the connection closes.
        smuggled = b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n"
        with socket.create_connection(address[:2], timeout=30) as raw:
            raw.sendall(b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(smuggled)
                        + smuggled)
            answer = b"".join(iter(lambda: raw.recv(4096), b""))
        assert answer.startswith(b"HTTP/1.1 405") and answer.count(b"HTTP/1.1 ") == 1


def test_concurrent_requests_agree(classifier, digits, tmp_path):  # noqa: F811
    import cv2

    images = []
    for index in range(8):
        path = tmp_path / f"{index}.png"
        cv2.imwrite(str(path), np.round(np.load(digits.test)["x"][index, 0] * 255).astype(np.uint8))
        images.append(path.read_bytes())
    with serving(classifier) as address:
        alone = [json.loads(request(address, "POST", "/predict", image)[2])["results"] for image in images]
        together: dict[int, list] = {}

        def send(index):
            for _ in range(3):
                status, _, body = request(address, "POST", "/predict", images[index])
                together.setdefault(index, []).append((status, json.loads(body)["results"]))

        threads = [threading.Thread(target=send, args=(index,)) for index in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    for index, answers in together.items():
        assert answers == [(200, alone[index])] * 3
    assert len(together) == 8


def test_stream_sends_the_annotated_frames(classifier, video):  # noqa: F811
    import cv2

    with serving(classifier, "--source", video, signum=signal.SIGTERM) as address:
        connection = http.client.HTTPConnection(*address[:2], timeout=30)
        connection.request("GET", "/stream")
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type") == "multipart/x-mixed-replace; boundary=kitframe"
        frames = []
        while len(frames) < 2:
            line = response.fp.readline()
            if line.startswith(b"Content-Length:"):
                response.fp.readline()
                frames.append(cv2.imdecode(np.frombuffer(response.fp.read(int(line.split()[1])), np.uint8),
                                           cv2.IMREAD_COLOR))
        connection.close()
        assert all(frame.shape == (64, 64, 3) for frame in frames)
        status, _, body = request(address, "GET", "/health")
        assert status == 200 and json.loads(body)["frames"] >= 2


def test_a_port_out_of_range_is_refused(classifier):  # noqa: F811
    ran = run_kit("serve", classifier, "--port", "70000")
    assert ran.returncode == 2 and "expected a port from 0 to 65535, found 70000" in ran.stderr


def test_a_taken_port_is_a_clear_error(classifier):  # noqa: F811
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ran = run_kit("serve", classifier, "--port", port)
    assert ran.returncode == 2 and f"could not listen on 127.0.0.1:{port}" in ran.stderr


def test_a_bundle_serves_its_best_model(bundle):
    with serving(bundle) as address:
        info = json.loads(request(address, "GET", "/info")[2])
    assert info["model"]["bundle"]["model"] == "digits.int8.onnx"
