"""Property-based tests (hypothesis) of the shape and option strings users type: any text gives a
value or the kit's InputError, and every well-formed string parses to what it says. Sizes are
checked against memory before anything is allocated."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kit.core.errors import InputError
from kit.core.specs import (
    DTYPES,
    MAX_ELEMENTS,
    InputShape,
    TensorSpec,
    batch_feeds,
    parse_dynamic_axes,
    parse_input_shapes,
    parse_shape,
    random_feeds,
)

SETTINGS = settings(max_examples=300, deadline=None, database=None)

# What people type, and what breaks parsers: digits in other scripts, huge numbers, separators.
typed = st.one_of(st.text(max_size=30), st.text(alphabet="0123456789x=:,-_ aAé٣\t", max_size=30),
                  st.from_regex(r"[0-9]{1,400}(x[0-9]{1,400}){0,3}", fullmatch=True))
anything = st.one_of(typed, st.none(), st.integers(), st.floats(), st.lists(typed, max_size=3),
                     st.lists(st.one_of(st.integers(), st.none()), max_size=2))
dims = st.lists(st.integers(1, 64), min_size=1, max_size=5)
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,8}", fullmatch=True)


@SETTINGS
@given(typed)
def test_any_shape_text_parses_or_is_refused(text):
    try:
        shape = parse_shape(text)
    except InputError:
        return
    assert all(isinstance(d, int) and d >= 1 for d in shape) and np.prod(shape, dtype=object) <= MAX_ELEMENTS


@SETTINGS
@given(dims)
def test_well_formed_shapes_round_trip(shape):
    assert parse_shape("x".join(map(str, shape))) == tuple(shape)


@SETTINGS
@given(anything)
def test_any_input_shapes_parse_or_are_refused(items):
    for parse in (parse_input_shapes, parse_dynamic_axes):
        try:
            parse(items)
        except InputError:
            pass


@SETTINGS
@given(st.dictionaries(names, st.tuples(dims, st.sampled_from(DTYPES)), min_size=1, max_size=4))
def test_well_formed_input_shapes_parse_to_what_they_say(given_shapes):
    items = [f"{name}={'x'.join(map(str, shape))}:{dtype}" for name, (shape, dtype) in given_shapes.items()]
    assert parse_input_shapes(items) == {name: InputShape(tuple(shape), dtype)
                                         for name, (shape, dtype) in given_shapes.items()}


@SETTINGS
@given(st.dictionaries(names, st.dictionaries(st.integers(0, 7), names.filter(lambda n: "." not in n), min_size=1),
                       min_size=1, max_size=3))
def test_well_formed_dynamic_axes_parse_to_what_they_say(given_axes):
    items = [f"{name}:{axis}={dim}" for name, axes in given_axes.items() for axis, dim in axes.items()]
    assert parse_dynamic_axes(items) == given_axes


def test_unicode_digits_and_empty_names_are_refused():
    with pytest.raises(InputError, match="expected a shape like 1x3x224x224"):
        parse_shape("١x٣")  # int() would read these as 1 and 3
    with pytest.raises(InputError, match="expected a shape like"):
        parse_shape("1x" + "9" * 400)  # once an OverflowError (float of a 400-digit number)
    with pytest.raises(InputError, match="expected an input name before '=' in '=1x3'"):
        parse_input_shapes(["=1x3"])
    assert parse_input_shapes("1x3") == {None: InputShape((1, 3))}  # one string is one item, not characters


def test_sizes_are_checked_before_allocating():
    spec = TensorSpec("x", ("batch", 3, 224, 224))
    with pytest.raises(InputError, match=r"random inputs 'x' \[1000000000000, 3, 224, 224\] would take .* GB, more "
                                         r"than the .* of memory available here\. Ask for fewer samples"):
        batch_feeds([spec], 10 ** 12)
    with pytest.raises(InputError, match="would take"):
        random_feeds([TensorSpec("ids", (2 ** 40,), "int64")])
    assert batch_feeds([spec], 2)["x"].shape == (2, 3, 224, 224)
