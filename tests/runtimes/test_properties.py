"""Property-based tests (hypothesis) of the feed check and of runtime options on the onnxruntime
and tflite backends: whatever a caller passes, the only exceptions are the kit's own, and every
valid input is accepted and runs."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from kit.runtimes.registry import get

import kit
from kit.core.errors import KitError

SETTINGS = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def runtimes(tiny_onnx, digits_tflite):
    """One loaded runtime per kind of input: dynamic batch (ORT), fixed NCHW float, int8 inside (TFLite)."""
    loaded = [kit.load(tiny_onnx), kit.load(digits_tflite["fp32"].path), kit.load(digits_tflite["int8"].path)]
    yield loaded
    for runtime in loaded:
        runtime.close()


# ----- arbitrary feeds ----------------------------------------------------------------------------

shapes = hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4)
numeric_arrays = hnp.scalar_dtypes().flatmap(lambda dtype: hnp.arrays(dtype, shapes))
text_arrays = st.one_of(hnp.unicode_string_dtypes(), hnp.byte_string_dtypes()).flatmap(
    lambda dtype: hnp.arrays(dtype, shapes))
object_arrays = hnp.arrays(object, shapes, elements=st.one_of(st.none(), st.integers(), st.text(max_size=3)))
nested = st.recursive(st.one_of(st.floats(), st.integers(), st.booleans(), st.none()),
                      lambda children: st.lists(children, max_size=4), max_leaves=20)
values = st.one_of(numeric_arrays, text_arrays, object_arrays, nested, st.text(max_size=5), st.binary(max_size=5),
                   st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))


def feeds_for(runtime):
    names = [spec.name for spec in runtime.inputs]
    keys = st.one_of(st.sampled_from(names), st.text(max_size=6), st.integers(), st.none())
    return st.one_of(st.dictionaries(keys, values, max_size=3), st.fixed_dictionaries({name: values for name in names}),
                     values, st.lists(values, max_size=2), st.tuples(st.sampled_from(names), values))


@pytest.mark.parametrize("which", [0, 1, 2], ids=["onnxruntime", "tflite-fp32", "tflite-int8"])
def test_any_feeds_give_outputs_or_a_kit_error(runtimes, which):
    runtime = runtimes[which]

    @SETTINGS
    @given(feeds_for(runtime))
    def check(feeds):
        try:
            checked = runtime.check_feeds(feeds)
        except KitError:
            return
        assert [array.dtype.name for array in checked.values()] == [spec.dtype for spec in runtime.inputs]
        try:
            runtime.run(feeds)
        except KitError:
            pass

    check()


# ----- valid feeds ----------------------------------------------------------------------------------


def valid_feeds(runtime):
    """Arrays of the right dtype and rank, fixed axes as specified, named axes 0 to 5, finite values."""
    def array(spec):
        dims = [st.just(d) if isinstance(d, int) else st.integers(0, 5) for d in spec.shape]
        return st.tuples(*dims).flatmap(lambda shape: hnp.arrays(
            spec.dtype, shape, elements=st.floats(-1e3, 1e3, width=32, allow_subnormal=False)))

    return st.fixed_dictionaries({spec.name: array(spec) for spec in runtime.inputs})


@pytest.mark.parametrize("which", [0, 1, 2], ids=["onnxruntime", "tflite-fp32", "tflite-int8"])
def test_valid_feeds_are_accepted_and_run(runtimes, which):
    runtime = runtimes[which]

    @SETTINGS
    @given(valid_feeds(runtime))
    def check(feeds):
        checked = runtime.check_feeds(feeds)
        assert all(checked[name] is feeds[name] for name in feeds)  # no copy on the way in
        outputs = runtime.run(feeds)
        batch = next(iter(feeds.values())).shape[0]
        assert [(name, array.shape[0]) for name, array in outputs.items()] == \
            [(spec.name, batch) for spec in runtime.outputs]

    check()


# ----- options --------------------------------------------------------------------------------------

option_values = st.one_of(st.none(), st.booleans(), st.integers(-10, 10 ** 6), st.floats(), st.text(max_size=8),
                          st.lists(st.one_of(st.text(max_size=8), st.integers()), max_size=2), st.binary(max_size=3))


@pytest.mark.parametrize("backend", ["onnxruntime", "tflite", "edgetpu"])
@SETTINGS
@given(options=st.dictionaries(st.sampled_from(["threads", "raw", "optimization", "providers", "device", "library",
                                                "weights", "bogus"]), option_values, max_size=3))
def test_any_options_are_taken_or_refused_cleanly(backend, options):
    try:
        runtime = get(backend)("model.onnx", **options)
    except KitError:
        return
    assert set(runtime.options) == set(options)


@SETTINGS
@given(options=st.fixed_dictionaries({"threads": st.one_of(st.none(), st.integers(0, 2)),
                                      "optimization": st.sampled_from(["disable", "basic", "extended", "all"]),
                                      "providers": st.sampled_from([None, "CPUExecutionProvider",
                                                                    ["CPUExecutionProvider"]])}))
def test_valid_options_load(tiny_onnx, options):
    with kit.load(tiny_onnx, **options) as runtime:
        assert runtime.run({"x": np.ones((2, 3), np.float32)})["z"].tolist() == [[2.0] * 3] * 2
