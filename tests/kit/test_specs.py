import numpy as np
import pytest

from kit.core.errors import InputError
from kit.core.specs import InputShape, TensorSpec, parse_dynamic_axes, parse_input_shapes, parse_shape, random_feeds


def test_parse_shape():
    assert parse_shape("1x3x224x224") == (1, 3, 224, 224)
    assert parse_shape(" 8 ") == (8,)
    for bad in ("1x3x", "1,3", "ax3", "1x0x2", ""):
        with pytest.raises(InputError, match="expected a shape like 1x3x224x224"):
            parse_shape(bad)


def test_parse_input_shapes():
    assert parse_input_shapes(["1x3x8x8"]) == {None: InputShape((1, 3, 8, 8))}
    assert parse_input_shapes(["a=1x3", "tokens=1x128:int64"]) == {
        "a": InputShape((1, 3)), "tokens": InputShape((1, 128), "int64")}
    with pytest.raises(InputError, match="expected a dtype among .* found 'int4'"):
        parse_input_shapes(["x=1x3:int4"])
    with pytest.raises(InputError, match="given twice"):
        parse_input_shapes(["x=1x3", "x=1x4"])
    with pytest.raises(InputError, match="unnamed --input-shape was mixed"):
        parse_input_shapes(["1x3", "x=1x4"])


def test_parse_dynamic_axes():
    assert parse_dynamic_axes(["2=height", "images:3=width", "x:1"]) == {
        None: {2: "height"}, "images": {3: "width"}, "x": {1: "dim1"}}
    with pytest.raises(InputError, match="expected --dynamic NAME:AXIS=DIMNAME"):
        parse_dynamic_axes(["images:two=height"])


def test_spec_round_trip_and_description():
    spec = TensorSpec("x", ["batch", 3], "int8", scale=0.5, zero_point=-3)
    assert spec.shape == ("batch", 3)
    assert TensorSpec.from_dict(spec.to_dict()) == spec
    assert spec.describe() == "'x' int8[batch,3] (scale=0.5, zero_point=-3)"
    assert spec.concrete_shape(batch=4) == (4, 3)
    assert spec.dynamic_axes == {0: "batch"}


def test_random_feeds_follow_the_specs():
    feeds = random_feeds([TensorSpec("x", ("batch", 2)), TensorSpec("ids", (1, 5), "int64"),
                          TensorSpec("m", (3,), "bool")], seed=3, batch=4)
    assert feeds["x"].shape == (4, 2) and feeds["x"].dtype == np.float32
    assert feeds["ids"].dtype == np.int64 and 0 <= feeds["ids"].min() and feeds["ids"].max() <= 10
    assert feeds["m"].dtype == np.bool_
    again = random_feeds([TensorSpec("x", ("batch", 2))], seed=3, batch=4)
    np.testing.assert_array_equal(again["x"], feeds["x"])
