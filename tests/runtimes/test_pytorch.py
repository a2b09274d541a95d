"""The torch reference runtime: same module, inputs and output names as the exporters use."""

import models
import numpy as np
import pytest
import torch
from helpers import factory
from kit.runtimes.pytorch import TorchRuntime

import kit
from kit.core.errors import InputError


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
    with pytest.raises(InputError, match="expected --input-shape for the input 'input'"):
        kit.load(factory("make_linear"), runtime="torch")


def test_torch_runtime_checks_feeds_too():
    with kit.load(factory("make_linear"), input_shapes="1x20") as rt, \
            pytest.raises(InputError, match=r"expected shape \[batch,20\], found \[1, 19\]"):
        rt.run({"input": np.zeros((1, 19), np.float32)})


def test_a_factory_without_weights_is_named_as_such(tmp_path):
    import warnings

    from kit.core.errors import KitNote, KitWarning

    with pytest.warns(KitNote, match=r"make_linear has no --weights: it runs with the weights its factory builds"):
        kit.load(factory("make_linear"), input_shapes="1x20").close()
    torch.save(models.make_linear().state_dict(), tmp_path / "w.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error", KitWarning)
        kit.load(factory("make_linear"), input_shapes="1x20", weights=str(tmp_path / "w.pt")).close()


def test_comparing_a_weightless_factory_with_a_trained_export_says_so(tmp_path):
    from helpers import run_kit
    from kit.export import export_onnx

    from kit.core import provenance

    trained = models.make_linear()
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.mul_(3)
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    export_onnx(factory("make_linear"), tmp_path / "m.onnx", input_shapes="1x20", weights=str(tmp_path / "w.pt"))
    assert provenance.read(tmp_path / "m.onnx")["weights"] == str(tmp_path / "w.pt")

    result = run_kit("compare", factory("make_linear"), tmp_path / "m.onnx", "--input-shape", "1x20")
    lines = result.stderr.splitlines()
    assert f"warning: {factory('make_linear')} runs without weights, but {tmp_path / 'm.onnx'} was exported from " \
           f"trained weights ({tmp_path / 'w.pt'}): pass them with --weights to compare the same model." in lines
    assert f"note: {factory('make_linear')} has no --weights: it runs with the weights its factory builds (random " \
           "unless the factory loads trained ones)." in lines
    assert result.returncode == 1  # and the outputs differ, as they should


def test_token_ids_without_a_dtype_get_the_fix_in_the_hint(tmp_path):
    from kit.export import export_onnx

    with pytest.raises(InputError, match=r"Expected tensor for argument #1 'indices'.* The model indexes with tokens "
                                         r"\(token ids or indices\), which must be integers: give the dtype, e\.g\. "
                                         r"--input-shape tokens=1x5:int64\.$"):
        export_onnx(factory("make_token_classifier"), tmp_path / "m.onnx", input_shapes="1x5")
    with pytest.raises(InputError, match="Check the input shapes against what forward"):  # a shape problem stays one
        kit.load(factory("make_linear"), input_shapes="1x21")
