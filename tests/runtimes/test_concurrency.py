"""The thread-safety contract of runtimes/base.py: 8 threads calling one loaded runtime get exactly
the serial results, and closing it under them says so instead of blaming the inputs."""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import kit
from kit.core.errors import RunError

THREADS = 8


@pytest.fixture(params=["onnxruntime fp32", "tflite fp32", "tflite int8"])
def shared(request, digits, digits_tflite):
    """(model, samples in its own layout): the digits CNN on each backend."""
    x = np.load(digits.test)["x"][:48]
    return {"onnxruntime fp32": (digits.onnx, x), "tflite fp32": (digits_tflite["fp32"].path, x),
            "tflite int8": (digits_tflite["int8"].path, np.ascontiguousarray(x.transpose(0, 2, 3, 1)))}[request.param]


def test_eight_threads_get_the_serial_results(shared):
    model, x = shared
    with kit.load(model) as runtime:
        name = runtime.inputs[0].name
        serial = [runtime.run({name: x[i:i + 1]})["output"] for i in range(len(x))]
        # every thread runs every sample, each in its own order, so calls overlap in every combination
        orders = [np.random.default_rng(seed).permutation(len(x)) for seed in range(THREADS)]
        with ThreadPoolExecutor(THREADS) as pool:
            together = list(pool.map(lambda order: {int(i): runtime.run({name: x[i:i + 1]})["output"] for i in order},
                                     orders))
    for results in together:
        for index, output in results.items():
            np.testing.assert_array_equal(output, serial[index])


def test_closing_under_running_threads_says_it_was_closed(shared):
    model, x = shared
    runtime = kit.load(model)
    name = runtime.inputs[0].name
    calls, started = [0] * THREADS, threading.Barrier(THREADS + 1)
    ended: list[BaseException | None] = [None] * THREADS

    def keep_running(worker: int):
        started.wait()
        try:
            while True:
                runtime.run({name: x[worker:worker + 1]})
                calls[worker] += 1
        except BaseException as exc:  # noqa: BLE001 (what ended the loop is the point of the test)
            ended[worker] = exc

    workers = [threading.Thread(target=keep_running, args=(i,)) for i in range(THREADS)]
    for worker in workers:
        worker.start()
    started.wait()
    while sum(calls) < 4 * THREADS and not any(ended):  # the threads are inside their loops
        threading.Event().wait(0.001)
    runtime.close()
    for worker in workers:
        worker.join(timeout=60)
    assert all(isinstance(exc, RunError) for exc in ended), [repr(exc) for exc in ended]
    assert {str(exc) for exc in ended} == {f"runtime '{runtime.name}' for {model} was closed; this call did not run. "
                                           "Close a shared runtime only after every thread's run() has returned, or "
                                           "load() it again."}
