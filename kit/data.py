"""Data a user points the kit at, streamed as model feeds: for calibration, comparison and evaluation.

Accepted, for a model's input specs:
- a folder of images, decoded and preprocessed with OpenCV per the model's stored
  preprocessing; one subfolder per class gives labels (class index = sorted folder order);
- a ``.npy`` file (memory-mapped, samples along axis 0) for a single-input model;
- a ``.npz`` file with one array per input name (or ``x`` for a single input) and
  optionally ``y`` labels; arrays are read one at a time, never all together;
- ``random:N``: N synthetic samples (calibration with it is loudly warned about).

Arrays are in the source model's layout; a sample is one slice along axis 0.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kit.errors import InputError
from kit.preprocess import Preprocess
from kit.specs import TensorSpec, check_array, random_feeds

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


@dataclass
class Dataset:
    """A stream of (feeds, labels) batches; ``fingerprint`` hashes every array it yielded."""

    description: str
    count: int
    inputs: list[TensorSpec]
    reader: Callable[[int, int], tuple[dict, np.ndarray | None]] = field(repr=False)  # samples [start, stop)
    has_labels: bool = False
    synthetic: bool = False
    classes: list[str] | None = None  # class names of an image folder with subfolders

    def batches(self, batch_size: int = 1, limit: int | None = None) -> Iterator[tuple[dict, np.ndarray | None]]:
        """Batches of up to ``batch_size`` samples; 1 when the model's batch axis is fixed."""
        if not all(spec.dynamic_batch for spec in self.inputs):
            batch_size = 1
        total = self.count if limit is None else min(limit, self.count)
        for start in range(0, total, batch_size):
            yield self.reader(start, min(start + batch_size, total))

    def fingerprint(self, limit: int | None = None, batch_size: int = 64) -> str:
        digest = hashlib.sha256()
        for feeds, labels in self.batches(batch_size, limit):
            for name in sorted(feeds):
                digest.update(np.ascontiguousarray(feeds[name]).tobytes())
            if labels is not None:
                digest.update(np.ascontiguousarray(labels).tobytes())
        return digest.hexdigest()

    def labels(self) -> np.ndarray:
        if not self.has_labels:
            raise InputError(f"{self.description} has no labels.",
                             hint="Give an .npz with x and y arrays, or an image folder with one subfolder per class.")
        return np.concatenate([labels for _, labels in self.batches(256)])


def open_data(source: str, inputs: list[TensorSpec], preprocess: dict | None = None) -> Dataset:
    """Open ``source`` as a stream of feeds for a model with these ``inputs``."""
    match = re.fullmatch(r"random:(\d+)", str(source))
    if match:
        return _random(int(match[1]), inputs)
    path = Path(source)
    if path.is_dir():
        return _image_folder(path, inputs, preprocess)
    if not path.is_file():
        raise InputError(f"data {source} does not exist.",
                         hint="Give an image folder, an .npy/.npz file, or random:N.")
    if path.suffix == ".npy":
        return _npy(path, inputs)
    if path.suffix == ".npz":
        return _npz(path, inputs)
    raise InputError(f"expected data as an image folder, .npy, .npz or random:N; found {source}.",
                     hint="Save arrays with numpy.save/numpy.savez, or point at a folder of images.")


def _random(count: int, inputs: list[TensorSpec]) -> Dataset:
    if count < 1:
        raise InputError("random:N needs N >= 1.", hint="E.g. random:200.")

    def read(start, stop):
        feeds = [random_feeds(inputs, seed=i) for i in range(start, stop)]
        return {spec.name: np.concatenate([f[spec.name] for f in feeds]) for spec in inputs}, None

    return Dataset(f"random:{count}", count, inputs, read, synthetic=True)


def _npy(path: Path, inputs: list[TensorSpec]) -> Dataset:
    if len(inputs) != 1:
        raise InputError(f"{path} holds one array, but the model takes {len(inputs)} inputs "
                         f"({', '.join(s.name for s in inputs)}).",
                         hint="Save an .npz with one array per input name.")
    array = _load_npy(path)
    _check_samples(inputs[0], array, path)

    def read(start, stop):
        return {inputs[0].name: np.asarray(array[start:stop])}, None

    return Dataset(str(path), len(array), inputs, read)


def _npz(path: Path, inputs: list[TensorSpec]) -> Dataset:
    try:
        archive = np.load(path, allow_pickle=False)  # lazy: each key is read when asked for
        keys = set(archive.files)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise InputError(f"could not read {path} as a numpy .npz file ({exc}).",
                         hint="Save arrays with numpy.savez.") from exc
    names = {spec.name: spec.name for spec in inputs}
    if len(inputs) == 1 and inputs[0].name not in keys and "x" in keys:
        names = {inputs[0].name: "x"}
    missing = [name for name, key in names.items() if key not in keys]
    if missing:
        raise InputError(f"{path} holds {', '.join(sorted(keys)) or 'no arrays'}; expected arrays named "
                         f"{', '.join(names)}" + (" (or x)" if len(inputs) == 1 else "") + ".",
                         hint="Save with numpy.savez(path, **{input_name: array}) and labels as y.")
    arrays = {name: archive[key] for name, key in names.items()}
    counts = {len(a) for a in arrays.values()}
    labels = archive["y"] if "y" in keys else None
    if labels is not None:
        counts.add(len(labels))
    if len(counts) != 1:
        raise InputError(f"arrays in {path} hold different sample counts ({sorted(counts)}).",
                         hint="Every array (and y) needs the same length along axis 0.")
    for spec in inputs:
        _check_samples(spec, arrays[spec.name], path)

    def read(start, stop):
        return ({name: a[start:stop] for name, a in arrays.items()},
                None if labels is None else np.asarray(labels[start:stop]).astype(np.int64))

    return Dataset(str(path), counts.pop(), inputs, read, has_labels=labels is not None)


def _image_folder(folder: Path, inputs: list[TensorSpec], preprocess: dict | None) -> Dataset:
    if len(inputs) != 1:
        raise InputError(f"an image folder feeds a single-input model; this one takes {len(inputs)}.",
                         hint="Give an .npz with one array per input name.")
    steps = Preprocess.from_dict(preprocess) if preprocess else Preprocess.for_input(inputs[0])
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir())
    if subfolders:
        classes = [p.name for p in subfolders]
        files = [(f, index) for index, sub in enumerate(subfolders) for f in _images_in(sub)]
    else:
        classes, files = None, [(f, None) for f in _images_in(folder)]
    if not files:
        raise InputError(f"found no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}.",
                         hint="Point at a folder of images, or one subfolder of images per class.")

    def read(start, stop):
        chunk = files[start:stop]
        feeds = {inputs[0].name: np.concatenate([steps.load_image(f) for f, _ in chunk])}
        return feeds, None if classes is None else np.array([label for _, label in chunk], np.int64)

    first = steps.load_image(files[0][0])
    check_array(inputs[0], first, what="images preprocessed for input")
    return Dataset(str(folder), len(files), inputs, read, has_labels=classes is not None, classes=classes)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"could not read {path} as a numpy .npy file ({exc}).",
                         hint="Save arrays with numpy.save.") from exc


def _check_samples(spec: TensorSpec, array: np.ndarray, path: Path) -> None:
    """The arrays stack samples along axis 0: check one sample as a batch of one."""
    if array.ndim == 0 or len(array) == 0:
        raise InputError(f"{path} holds no samples for input {spec.describe()} (shape {list(array.shape)}).",
                         hint="Stack samples along axis 0.")
    check_array(spec, np.asarray(array[:1]), what=f"data in {path} for input")


class FeedReader:
    """ONNX Runtime's data-reader protocol (``get_next()``) over a Dataset: streams batches,
    counts the samples and hashes every array it hands out."""

    def __init__(self, dataset: Dataset, *, batch_size: int = 16, limit: int | None = None):
        self._batches = dataset.batches(batch_size, limit)
        self._digest = hashlib.sha256()
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        feeds, _ = next(self._batches, (None, None))
        if feeds is None:
            return None
        for name in sorted(feeds):
            self._digest.update(np.ascontiguousarray(feeds[name]).tobytes())
        self.count += len(next(iter(feeds.values())))
        return {name: np.ascontiguousarray(array) for name, array in feeds.items()}

    def __iter__(self):  # ORT's collect_activations iterates instead of calling get_next()
        return iter(self.get_next, None)

    def sha256(self) -> str:
        return self._digest.hexdigest()
