"""What the kit adds on the inference path: Runtime.run against the raw ONNX Runtime call,
on the same loaded session, in alternating chunks so drift on a shared machine hits both.

Asserts: at most 2% at the median on the ~1 ms model. Reports the digits model's ratio
(there a ~1 us fixed cost is a visible fraction of ~10 us).
"""

import pytest
from conftest import image_feeds, pooled_median

import kit

CHUNKS = 6
TIMINGS: dict[tuple[str, str], list[list[float]]] = {}
MODELS = ("millisecond_cnn", "digits_onnx")


@pytest.fixture(scope="module")
def runtimes(request):
    opened = {name: kit.load(request.getfixturevalue(name), threads=1) for name in MODELS}
    yield opened
    for runtime in opened.values():
        runtime.close()


# Explicit order: per model, raw and kit alternate chunk by chunk.
@pytest.mark.parametrize("model, chunk, call", [(m, c, call) for m in MODELS for c in range(CHUNKS)
                                                for call in ("raw", "kit")])
def test_call(benchmark, runtimes, model, chunk, call):
    runtime = runtimes[model]
    feeds = image_feeds(runtime)
    session = runtime._session  # the raw call, for comparison only
    target = (lambda: session.run(None, feeds)) if call == "raw" else (lambda: runtime.run(feeds))
    benchmark.group = f"overhead on {model}: Runtime.run vs raw session.run"
    rounds = 300 if model == "millisecond_cnn" else 3000
    benchmark.pedantic(target, rounds=rounds, warmup_rounds=5)
    if benchmark.stats is not None:
        TIMINGS.setdefault((model, call), []).append(list(benchmark.stats.stats.data))


def test_kit_adds_at_most_two_percent_on_the_millisecond_model():
    if len(TIMINGS) < 4:
        pytest.skip("needs this run's timings (benchmarking enabled)")
    ratios = {model: pooled_median(TIMINGS[model, "kit"]) / pooled_median(TIMINGS[model, "raw"]) for model in MODELS}
    for model, ratio in ratios.items():
        print(f"Runtime.run / raw on {model}: {ratio:.4f} (raw median {pooled_median(TIMINGS[model, 'raw']) * 1e6:.1f} us)")
    assert ratios["millisecond_cnn"] <= 1.02
