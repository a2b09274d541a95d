"""Data sources streamed as feeds: arrays, image folders, random."""

import hashlib

import cv2
import numpy as np
import pytest

from kit.core.errors import InputError, KitWarning
from kit.core.specs import TensorSpec
from kit.data.arrays import npz_arrays
from kit.data.calibration import FeedReader
from kit.data.datasets import open_data

IMAGE = [TensorSpec("image", ("batch", 1, 4, 4))]


def test_npy_is_memory_mapped_and_batched(tmp_path):
    x = np.arange(5 * 16, dtype=np.float32).reshape(5, 1, 4, 4)
    np.save(tmp_path / "x.npy", x)
    data = open_data(str(tmp_path / "x.npy"), IMAGE)
    assert data.count == 5 and not data.has_labels
    batches = [feeds["image"] for feeds, _ in data.batches(2)]
    assert [len(b) for b in batches] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate(batches), x)


def test_fixed_batch_models_get_one_sample_at_a_time(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((3, 1, 4, 4), np.float32))
    data = open_data(str(tmp_path / "x.npy"), [TensorSpec("image", (1, 1, 4, 4))])
    assert [len(f["image"]) for f, _ in data.batches(64)] == [1, 1, 1]


def test_a_fixed_batch_above_one_is_fed_whole_batches(tmp_path):
    """A model exported with a static batch of 4 was fed one sample at a time (and refused it)."""
    x = np.arange(10 * 16, dtype=np.float32).reshape(10, 1, 4, 4)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(10))
    data = open_data(str(tmp_path / "d.npz"), [TensorSpec("image", (4, 1, 4, 4))])
    assert data.count == 10
    batches = list(data.batches(64))
    assert [len(f["image"]) for f, _ in batches] == [4, 4, 4]
    assert [len(labels) for _, labels in batches] == [4, 4, 2]  # labels count the real samples
    last = batches[-1][0]["image"]
    np.testing.assert_array_equal(last[:2], x[8:])
    np.testing.assert_array_equal(last[2:], x[[9, 9]])  # padded by repeating the last sample
    assert [len(f["image"]) for f, _ in data.batches(64, pad=False)] == [4, 4, 2]
    random = open_data("random:5", [TensorSpec("image", (4, 1, 4, 4))])  # one sample per seed, not 4
    dynamic = open_data("random:5", IMAGE)
    np.testing.assert_array_equal(np.concatenate([f["image"] for f, _ in random.batches(pad=False)]),
                                  next(dynamic.batches(5))[0]["image"])


def test_npz_with_labels_and_the_x_alias(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 1, 4, 4), np.float32), y=np.array([2, 0, 1]))
    data = open_data(str(tmp_path / "d.npz"), IMAGE)
    assert data.has_labels
    np.testing.assert_array_equal(next(data.batches(3))[1], [2, 0, 1])
    np.savez(tmp_path / "float_labels.npz", x=np.zeros((2, 1, 4, 4), np.float32), y=np.array([0.5, 1.0]))
    with pytest.raises(InputError, match="expected labels in .* as a 1-D array of class indices, found float64"):
        open_data(str(tmp_path / "float_labels.npz"), IMAGE)
    np.savez(tmp_path / "bad.npz", x=np.zeros((3, 1, 4, 4), np.float32), y=np.array([2, 0]))
    with pytest.raises(InputError, match=r"hold different sample counts \(\[2, 3\]\)"):
        open_data(str(tmp_path / "bad.npz"), IMAGE)


def make_class_folders(root, names_and_values):
    for label, value in names_and_values:
        (root / label).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(root / label / f"{i}.png"), np.full((6, 6), value, np.uint8))


def test_image_folder_with_one_subfolder_per_class(tmp_path):
    make_class_folders(tmp_path, (("cat", 10), ("dog", 200)))
    with pytest.warns(KitWarning, match="the model records no preprocessing; images are read with defaults"):
        data = open_data(str(tmp_path), IMAGE)
    assert data.classes == ["cat", "dog"] and data.count == 4
    feeds, labels = next(data.batches(4))
    np.testing.assert_array_equal(labels, [0, 0, 1, 1])
    np.testing.assert_allclose(feeds["image"][:, 0, 0, 0], [10 / 255, 10 / 255, 200 / 255, 200 / 255], rtol=1e-6)


def test_numbered_class_folders_are_those_classes(tmp_path):
    make_class_folders(tmp_path, (("3", 10), ("7", 200)))
    stored = {"size": [4, 4], "color": "gray"}  # a model that records its preprocessing: nothing to warn about
    np.testing.assert_array_equal(next(open_data(str(tmp_path), IMAGE, stored).batches(4))[1], [3, 3, 7, 7])
    cv2.imwrite(str(tmp_path / "stray.png"), np.zeros((6, 6), np.uint8))
    with pytest.raises(InputError, match="holds class subfolders and also images outside them"):
        open_data(str(tmp_path), IMAGE)


def test_empty_folder_and_unknown_kinds(tmp_path):
    with pytest.raises(InputError, match="found no images"):
        open_data(str(tmp_path), IMAGE)
    (tmp_path / "d.csv").write_text("1,2")
    with pytest.raises(InputError, match="expected data as an image folder, .npy, .npz or random:N"):
        open_data(str(tmp_path / "d.csv"), IMAGE)
    with pytest.raises(InputError, match="does not exist"):
        open_data(str(tmp_path / "absent.npz"), IMAGE)


def test_random_is_marked_synthetic_and_reproducible():
    a, b = open_data("random:3", IMAGE), open_data("random:3", IMAGE)
    assert a.synthetic and a.count == 3
    np.testing.assert_array_equal(next(a.batches(3))[0]["image"], next(b.batches(3))[0]["image"])


def test_feed_reader_counts_and_hashes_what_it_hands_out(tmp_path):
    x = np.random.default_rng(0).standard_normal((7, 1, 4, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    reader = FeedReader(open_data(str(tmp_path / "x.npy"), IMAGE), batch_size=3)
    handed = list(reader)
    assert [len(f["image"]) for f in handed] == [3, 3, 1] and reader.get_next() is None
    assert reader.count == 7 and reader.sha256() == hashlib.sha256(x.tobytes()).hexdigest()


def open_descriptors_to(path) -> int:
    import os

    fds = "/proc/self/fd"
    return sum(1 for fd in os.listdir(fds) if os.path.realpath(os.path.join(fds, fd)) == os.path.realpath(path))


def test_npz_arrays_are_read_in_place_and_closed(tmp_path):
    """An .npz was read whole into memory on first use and its file never closed."""
    import tracemalloc

    x = np.random.default_rng(0).standard_normal((4000, 1, 4, 4)).astype(np.float32)  # 256 KB
    np.savez(tmp_path / "stored.npz", x=x, y=np.arange(4000) % 3)
    np.savez_compressed(tmp_path / "compressed.npz", x=x, y=np.arange(4000) % 3)
    for name in ("stored.npz", "compressed.npz"):
        path = tmp_path / name
        tracemalloc.start()
        with open_data(str(path), IMAGE) as data:
            for start, (feeds, labels) in zip(range(0, 4000, 100), data.batches(100)):
                np.testing.assert_array_equal(feeds["image"], x[start:start + 100])
                np.testing.assert_array_equal(labels, np.arange(start, start + 100) % 3)
            del feeds  # a batch is a view of the mapped file: it keeps the map open while it lives
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < x.nbytes / 2, (name, peak)  # batches of 100 samples, never the whole array
        assert open_descriptors_to(path) == 0, name
    arrays, close = npz_arrays(tmp_path / "stored.npz")
    assert isinstance(arrays["x"], np.memmap)  # numpy.savez's stored members: mapped where they lie
    close()


@pytest.mark.parametrize("make, message", [
    (lambda p: np.savez(p / "d.npz", x=np.array([1, "a"], dtype=object)),
     r"d.npz \(array x\) holds Python objects \(dtype object\); the kit reads numeric arrays and never unpickles"),
    (lambda p: np.save(p / "d.npy", np.array([1, "a"], dtype=object)), r"d.npy holds Python objects"),
    (lambda p: np.savez(p / "d.npz"), r"d.npz holds no arrays; expected arrays named image \(or x\)"),
    (lambda p: np.save(p / "d.npy", np.zeros((0, 1, 4, 4), np.float32)), r"d.npy holds no samples for input 'image'"),
    (lambda p: np.savez(p / "d.npz", x=np.zeros((0, 1, 4, 4), np.float32)), "d.npz holds no samples"),
    (lambda p: (p / "d.npz").write_bytes(b"PK\x03\x04 not a zip"), "could not read .*d.npz as a numpy .npz file"),
])
def test_unusable_array_files_are_clean_errors(tmp_path, make, message):
    make(tmp_path)
    source = next(tmp_path.iterdir())
    with pytest.raises(InputError, match=message):
        open_data(str(source), IMAGE)
    assert open_descriptors_to(source) == 0


def test_random_sample_counts_are_bounded():
    """random:99999999999999 ran for ever."""
    with pytest.raises(InputError, match=r"expected random:N with N from 1 to 1,000,000, "
                                         r"found random:99,999,999,999,999"):
        open_data("random:99999999999999", IMAGE)
    with pytest.raises(InputError, match="found random:0"):
        open_data("random:0", IMAGE)
    assert open_data("random:1000000", IMAGE).count == 1_000_000  # nothing is generated before it is read


def test_preprocess_text_is_for_images(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 4, 4), np.float32))
    with pytest.raises(InputError, match="--preprocess describes how an image becomes the model's input; .*x.npy is "
                                         "not a folder of images"):
        open_data(str(tmp_path / "x.npy"), IMAGE, user_preprocess="size=4")
    cv2.imwrite(str(tmp_path / "a.png"), np.full((6, 6), 100, np.uint8))
    import warnings

    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.full((6, 6), 100, np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the user stated the preprocessing: no warning about defaults
        data = open_data(str(tmp_path / "images"), IMAGE, user_preprocess="scale=1,mean=50,std=2")
    np.testing.assert_allclose(next(data.batches())[0]["image"], np.full((1, 1, 4, 4), 25.0))
