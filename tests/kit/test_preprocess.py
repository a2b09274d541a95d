import cv2
import numpy as np
import pytest

from kit.core.errors import InputError
from kit.core.specs import TensorSpec
from kit.data.preprocess import Preprocess


def test_defaults_are_read_off_the_input_shape():
    nchw = Preprocess.for_input(TensorSpec("x", ("batch", 3, 32, 48)))
    assert (nchw.size, nchw.color, nchw.layout) == ((32, 48), "rgb", "nchw")
    nhwc = Preprocess.for_input(TensorSpec("x", (1, 16, 16, 1)))
    assert (nhwc.size, nhwc.color, nhwc.layout) == ((16, 16), "gray", "nhwc")
    with pytest.raises(InputError, match="needs a 4-D input"):
        Preprocess.for_input(TensorSpec("x", ("batch", 20)))


def test_hand_computed_pixels(tmp_path):
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 0], bgr[..., 1], bgr[..., 2] = 10, 20, 30  # OpenCV order: blue, green, red
    cv2.imwrite(str(tmp_path / "p.png"), bgr)
    steps = Preprocess((2, 2), color="rgb", scale=1.0, mean=(30.0, 20.0, 10.0), std=(1.0, 2.0, 5.0))
    tensor = steps.load_image(tmp_path / "p.png")
    assert tensor.shape == (1, 3, 2, 2) and tensor.dtype == np.float32
    # red first after BGR->RGB: (30-30)/1, (20-20)/2, (10-10)/5 -> all zero
    np.testing.assert_array_equal(tensor, np.zeros((1, 3, 2, 2), np.float32))
    bgr_steps = Preprocess((2, 2), color="bgr", scale=0.5, layout="nhwc")
    np.testing.assert_allclose(bgr_steps.load_image(tmp_path / "p.png")[0, 0, 0], [5.0, 10.0, 15.0])


def test_resize_modes_keep_the_target_size():
    image = np.full((10, 20, 3), 200, np.uint8)  # wide
    letterbox = Preprocess((20, 20), resize="letterbox", scale=1.0, layout="nhwc").apply(image)[0]
    assert letterbox.shape == (20, 20, 3)
    assert letterbox[0, 0, 0] == 114 and letterbox[10, 10, 0] == 200  # padding above, image in the middle
    crop = Preprocess((10, 10), resize="crop", scale=1.0, layout="nhwc").apply(image)[0]
    assert crop.shape == (10, 10, 3) and (crop == 200).all()


def test_text_overrides_and_round_trip():
    steps = Preprocess((8, 8)).updated("size=224x160,mean=0.485/0.456/0.406,std=0.229/0.224/0.225,color=bgr,resize=crop")
    assert steps.size == (224, 160) and steps.mean == (0.485, 0.456, 0.406) and steps.resize == "crop"
    assert Preprocess.from_dict(steps.to_dict()) == steps


@pytest.mark.parametrize("text, message", [
    ("size", "expected key=value"),
    ("colour=rgb", "expected key=value with a key among"),
    ("mean=a/b", "could not read mean='a/b'"),
    ("layout=chw", "expected preprocessing layout among nchw, nhwc"),
    ("mean=1/2", "expected 1 or 3 values for mean"),
    ("std=0", "expected positive finite numbers for preprocessing std, found 0.0"),
    ("size=0", r"expected a preprocessing size of HEIGHTxWIDTH, each from 1 to 8192, found 0x0"),
    ("size=224x224x3", "could not read size='224x224x3'"),
    ("size=100000", "each from 1 to 8192, found 100000x100000"),
    ("scale=0", "expected positive finite numbers for preprocessing scale, found 0.0"),
    ("mean=nan", "expected finite numbers for preprocessing mean, found nan"),
    ("dtype=int64", "expected preprocessing dtype among float32, float16, float64, uint8, int8"),
    ("resize=fit", "expected preprocessing resize among stretch, letterbox, crop"),
    ("color=cmyk", "expected preprocessing color among rgb, bgr, gray"),
])
def test_bad_preprocess_text(text, message):
    with pytest.raises(InputError, match=message):
        Preprocess((8, 8)).updated(text)


def test_unreadable_image(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n and then nothing")
    with pytest.raises(InputError, match="could not decode .*broken.png as an image"):
        Preprocess((8, 8)).load_image(tmp_path / "broken.png")
    with pytest.raises(InputError, match="image .*absent.png does not exist"):
        Preprocess((8, 8)).load_image(tmp_path / "absent.png")


@pytest.mark.parametrize("stored, message", [
    ({"size": [100000, 100000]}, "is invalid: expected a preprocessing size .* found 100000x100000"),
    ({"size": "224"}, "is invalid: expected a preprocessing size .* found '224'"),
    ({"size": [8, 8], "std": [0.0]}, "is invalid: expected positive finite numbers for preprocessing std"),
    ({"size": [8, 8], "scale": True}, "is invalid: expected positive finite numbers for preprocessing scale"),
    ({"mean": [0.5]}, "is not a preprocessing spec: no size"),
    ({"size": [8, 8], "zoom": 2}, "is not a preprocessing spec: unknown keys zoom"),
    ([224, 224], "is not a preprocessing spec: expected a JSON object, found list"),
])
def test_a_stored_spec_is_checked_before_any_image_is_read(stored, message):
    """A sidecar or ONNX metadata is a file like any other: a spec asking for a 100000x100000
    image was accepted and the process was killed for memory while resizing."""
    with pytest.raises(InputError, match="the preprocessing stored with m.tflite " + message):
        Preprocess.from_dict(stored, source="the preprocessing stored with m.tflite")


def test_falling_back_to_default_preprocessing_is_warned_once_and_names_the_defaults():
    from kit.core.errors import KitWarning
    from kit.data.preprocess import for_images

    spec = TensorSpec("x", ("batch", 3, 32, 48))
    with pytest.warns(KitWarning) as caught:
        steps = for_images(spec, model="third_party.onnx")
    assert len(caught) == 1 and steps == Preprocess.for_input(spec)
    assert str(caught[0].message) == (
        "third_party.onnx records no preprocessing; images are read with defaults for its input shape "
        "(size=32x48,resize=stretch,color=rgb,scale=0.00392157,mean=0,std=1,layout=nchw,dtype=float32). "
        "State the model's own with --preprocess KEY=VALUE,...")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the user's own spec, or a stored one: nothing to warn about
        assert for_images(spec, given="mean=0.5,std=0.25").mean == (0.5,)
        assert for_images(spec, {"size": [8, 8], "color": "bgr"}).color == "bgr"
    with pytest.raises(InputError, match="m.onnx records its own preprocessing; --preprocess is for models that "
                                         "record none"):
        for_images(spec, {"size": [8, 8]}, "std=2", model="m.onnx")


@pytest.mark.parametrize("resize", ["stretch", "letterbox", "crop"])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("shape", [(480, 640, 3), (37, 53, 3), (500, 333, 3)])
def test_the_fused_path_gives_applys_tensor(resize, layout, shape):
    """OpenCV's blobFromImageWithParams where it agrees with apply, apply where it does not
    (OpenCV rounds a centre crop and some letterboxes otherwise): the tensor is apply's either way."""
    from kit.data.preprocess import FusedPreprocess

    steps = Preprocess(size=(224, 160), resize=resize, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                       layout=layout)
    fused = FusedPreprocess(steps)
    rng = np.random.default_rng(0)
    for _ in range(3):  # the first image of a size decides the path; the next ones take it
        image = rng.integers(0, 256, shape, np.uint8)
        np.testing.assert_allclose(fused(image), steps.apply(image), rtol=0, atol=1e-4)
    if resize == "stretch":
        assert fused._fused[shape]  # stretching rounds alike: OpenCV's single pass is used


def test_fused_buffers_are_reused_only_when_no_one_holds_them():
    """Frames queued or in a model call keep their own tensor; a released one is written again."""
    from kit.data.preprocess import FusedPreprocess

    steps = Preprocess(size=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    fused = FusedPreprocess(steps)
    images = [np.random.default_rng(seed).integers(0, 256, (48, 64, 3), np.uint8) for seed in range(20)]
    fused(images[0])  # decides the path for this size
    held = [fused(image) for image in images]  # more than the pool keeps: the rest are new
    assert len({id(tensor) for tensor in held}) == len(images)
    for image, tensor in zip(images, held):  # none was overwritten by a later call
        np.testing.assert_allclose(tensor, steps.apply(image), rtol=0, atol=1e-4)
    released = id(held[0])
    del held, tensor
    assert id(fused(images[0])) == released
