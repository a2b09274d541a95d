import cv2
import numpy as np
import pytest

from kit.errors import InputError
from kit.preprocess import Preprocess
from kit.specs import TensorSpec


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
    ("std=0", "expected non-zero std"),
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
