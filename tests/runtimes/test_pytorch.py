"""The torch reference runtime: same module, inputs and output names as the exporters use."""

import numpy as np
import pytest
import torch
from helpers import factory

import kit
import models
from kit.errors import InputError
from kit.runtimes.pytorch import TorchRuntime


def test_factory_with_named_shapes_matches_the_module():
    feeds = {"image": np.ones((2, 3, 8, 8), np.float32), "extra": np.full((2, 7), 0.5, np.float32)}
    with kit.load(factory("make_multi_input"), runtime="torch",
                  input_shapes=["image=1x3x8x8", "extra=1x7"]) as rt:
        assert [s.describe() for s in rt.inputs] == ["'image' float32[batch,3,8,8]", "'extra' float32[batch,7]"]
        got = rt.run(feeds)["output"]
    with torch.no_grad():
        expected = models.make_multi_input()(torch.ones(2, 3, 8, 8), torch.full((2, 7), 0.5)).numpy()
    np.testing.assert_array_equal(got, expected)


def test_dict_outputs_keep_their_keys():
    with TorchRuntime(factory("make_multi_output"), input_shapes="1x3x8x8") as rt:
        assert [s.name for s in rt.outputs] == ["logits", "features"]
        assert rt.outputs[0].shape == ("batch", 3)


def test_factory_reference_is_recognised_without_naming_the_runtime():
    rt = kit.load(factory("make_linear"), input_shapes="1x20")
    assert rt.name == "torch"
    rt.close()


def test_shapes_are_required_for_a_factory():
    with pytest.raises(InputError, match="expected --input-shape for the input input"):
        kit.load(factory("make_linear"), runtime="torch")


def test_torch_runtime_checks_feeds_too():
    with kit.load(factory("make_linear"), input_shapes="1x20") as rt, \
            pytest.raises(InputError, match=r"expected shape \[batch,20\], found \[1, 19\]"):
        rt.run({"input": np.zeros((1, 19), np.float32)})
