"""Data sources streamed as feeds: arrays, image folders, random."""

import hashlib

import cv2
import numpy as np
import pytest

from kit.data import FeedReader, open_data
from kit.errors import InputError
from kit.specs import TensorSpec

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
    data = open_data(str(tmp_path), IMAGE)
    assert data.classes == ["cat", "dog"] and data.count == 4
    feeds, labels = next(data.batches(4))
    np.testing.assert_array_equal(labels, [0, 0, 1, 1])
    np.testing.assert_allclose(feeds["image"][:, 0, 0, 0], [10 / 255, 10 / 255, 200 / 255, 200 / 255], rtol=1e-6)


def test_numbered_class_folders_are_those_classes(tmp_path):
    make_class_folders(tmp_path, (("3", 10), ("7", 200)))
    np.testing.assert_array_equal(next(open_data(str(tmp_path), IMAGE).batches(4))[1], [3, 3, 7, 7])
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
