"""Data a user points the kit at, streamed as model feeds: for calibration, comparison and evaluation.

Accepted, for a model's input specs:
- a folder of images, decoded and preprocessed with OpenCV per the model's stored
  preprocessing (or defaults for its input shape, with a warning; ``--preprocess`` text
  overrides either); one subfolder per class gives labels (folders named 0..N are those
  indices, other names index in sorted order);
- a ``.npy`` file (memory-mapped, samples along axis 0) for a single-input model;
- a ``.npz`` file with one array per input name (or ``x`` for a single input) and
  optionally ``y`` (or ``labels``) class indices. numpy cannot memory-map inside an .npz, so
  the kit does it itself: arrays stored as ``numpy.savez`` writes them are memory-mapped
  where they lie in the file, and ``numpy.savez_compressed`` arrays are decompressed batch
  by batch as they are read (in order; a Fortran-ordered compressed array is read whole);
- ``random:N``: N synthetic samples (at most MAX_RANDOM_SAMPLES; calibration with it is
  loudly warned about).

Arrays are in the source model's layout; a sample is one slice along axis 0. A model whose
batch axis is fixed at B is fed B samples at a time (see Dataset.batches)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kit.core.errors import InputError
from kit.core.specs import TensorSpec, check_array, random_feeds
from kit.data.arrays import load_npy, npz_arrays
from kit.data.batching import as_nchw, fixed_batch, free_batch, pad_batch, to_channel_last
from kit.data.preprocess import Preprocess, for_images

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


# random:N is generated and run sample by sample: past this it is hours of work that say no
# more than a thousand samples would (and a typo's 10**14 would never end).
MAX_RANDOM_SAMPLES = 1_000_000


LABEL_KEYS = ("y", "labels")  # an .npz's class indices, beside its inputs


@dataclass
class Dataset:
    """A stream of (feeds, labels) batches; ``fingerprint`` hashes every array it yielded.

    A Dataset may hold files open (a compressed .npz): close it, or use it as a context manager.
    """

    description: str
    count: int
    inputs: list[TensorSpec]
    reader: Callable[[int, int], tuple[dict, np.ndarray | None]] = field(repr=False)  # samples [start, stop)
    has_labels: bool = False
    synthetic: bool = False
    classes: list[str] | None = None  # class names of an image folder with subfolders
    closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def batches(self, batch_size: int = 1, limit: int | None = None, *,
                pad: bool = True) -> Iterator[tuple[dict, np.ndarray | None]]:
        """Batches of up to ``batch_size`` samples, as (feeds, labels).

        A model whose batch axis is fixed at B gets B samples per batch, whatever
        ``batch_size`` says. With ``pad``, a short last batch is filled up to B by repeating
        its last sample, so such a model can run it; labels are never padded (``len(labels)``
        counts the real samples). Without ``pad`` the last batch may be short (the harness
        pads per runtime and drops the padded outputs: see kit.check.runner.run_samples).
        """
        fixed = fixed_batch(self.inputs)
        size = fixed or batch_size
        total = self.count if limit is None else min(limit, self.count)
        for start in range(0, total, size):
            feeds, labels = self.reader(start, min(start + size, total))
            yield (pad_batch(feeds, fixed) if pad and fixed else feeds), labels

    def close(self) -> None:
        for close in self.closers:
            close()
        self.closers.clear()

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def open_data(source: str, inputs: list[TensorSpec], preprocess: dict | Preprocess | None = None,
              layout: str | None = None, *, user_preprocess: str | Preprocess | None = None,
              model: str | None = None) -> Dataset:
    """Open ``source`` as a stream of feeds for a model with these ``inputs``.

    ``preprocess`` is the model's stored preprocessing for images (its provenance);
    ``user_preprocess`` (``--preprocess`` text) overrides it or, without one, the defaults
    read off the input shape; ``model`` names the model in warnings and errors.
    ``layout="nhwc"`` says the model takes channel-last images while arrays are in the
    source model's NCHW layout: 4-D arrays are checked as NCHW and transposed on the way.
    """
    match = re.fullmatch(r"random:(\d+)", str(source))
    path = Path(source)
    if path.is_dir():  # the preprocessing already lays images out as the model takes them
        return _image_folder(path, inputs, preprocess, user_preprocess, model)
    if user_preprocess is not None:
        raise InputError(f"--preprocess describes how an image becomes the model's input; {source} is not a "
                         "folder of images (arrays are fed as they are).",
                         hint="Drop --preprocess, or give a folder of images.")
    if match:
        return _random(int(match[1]), inputs)
    if layout == "nhwc":
        return channel_last(open_data(source, [as_nchw(spec) for spec in inputs]), inputs)
    if not path.is_file():
        raise InputError(f"data {source} does not exist.",
                         hint="Give an image folder, an .npy/.npz file, or random:N.")
    if path.suffix == ".npy":
        return _npy(path, inputs)
    if path.suffix == ".npz":
        return _npz(path, inputs)
    raise InputError(f"expected data as an image folder, .npy, .npz or random:N; found {source}.",
                     hint="Save arrays with numpy.save/numpy.savez, or point at a folder of images.")


def from_arrays(arrays: dict[str, np.ndarray], inputs: list[TensorSpec], description: str = "arrays",
                layout: str | None = None) -> Dataset:
    """Arrays (stacked along axis 0, keyed by input name, in the source model's layout; in
    memory or memory-mapped) as a Dataset for a model with these ``inputs`` (see open_data's
    ``layout``)."""
    if layout == "nhwc":
        return channel_last(from_arrays(arrays, [as_nchw(spec) for spec in inputs], description), inputs)
    missing = [spec.name for spec in inputs if spec.name not in arrays]
    if missing:
        raise InputError(f"{description} holds {', '.join(arrays) or 'nothing'}; the model takes "
                         f"{', '.join(spec.name for spec in inputs)}.", hint="Compare models with the same inputs.")
    for spec in inputs:
        _check_samples(spec, arrays[spec.name], description)
    count = _same_count({spec.name: arrays[spec.name] for spec in inputs}, description)

    def read(start, stop):
        return {spec.name: np.asarray(arrays[spec.name][start:stop]) for spec in inputs}, None

    return Dataset(description, count, inputs, read)


def _random(count: int, inputs: list[TensorSpec]) -> Dataset:
    if not 1 <= count <= MAX_RANDOM_SAMPLES:
        raise InputError(f"expected random:N with N from 1 to {MAX_RANDOM_SAMPLES:,}, found random:{count:,}.",
                         hint="Random inputs say little past a few hundred samples; give real data for more, "
                              "e.g. random:200.")
    one_each = [free_batch(spec) for spec in inputs]  # dynamic axes get size 1: one sample per seed

    def read(start, stop):
        feeds = [random_feeds(one_each, seed=i) for i in range(start, stop)]
        return {spec.name: np.concatenate([f[spec.name] for f in feeds]) for spec in inputs}, None

    return Dataset(f"random:{count}", count, inputs, read, synthetic=True)


def _npy(path: Path, inputs: list[TensorSpec]) -> Dataset:
    if len(inputs) != 1:
        raise InputError(f"{path} holds one array, but the model takes {len(inputs)} inputs "
                         f"({', '.join(s.name for s in inputs)}).",
                         hint="Save an .npz with one array per input name.")
    arrays = {inputs[0].name: load_npy(path)}  # memory-mapped; dropped on close(), which unmaps it
    _check_samples(inputs[0], arrays[inputs[0].name], path)

    def read(start, stop):
        return {name: np.asarray(a[start:stop]) for name, a in arrays.items()}, None

    return Dataset(str(path), len(arrays[inputs[0].name]), inputs, read, closers=[arrays.clear])


def _npz(path: Path, inputs: list[TensorSpec]) -> Dataset:
    members, close = npz_arrays(path)
    try:
        keys = set(members)
        names = {spec.name: spec.name for spec in inputs}
        if len(inputs) == 1 and inputs[0].name not in keys and "x" in keys:
            names = {inputs[0].name: "x"}
        missing = [name for name, key in names.items() if key not in keys]
        if missing:
            raise InputError(f"{path} holds {', '.join(sorted(keys)) or 'no arrays'}; expected arrays named "
                             f"{', '.join(names)}" + (" (or x)" if len(inputs) == 1 else "") + ".",
                             hint="Save with numpy.savez(path, **{input_name: array}) and labels as y.")
        arrays = {name: members[key] for name, key in names.items()}
        label_key = next((k for k in LABEL_KEYS if k in keys and k not in names.values()), None)
        labels = _integer_labels(np.asarray(members[label_key]), path) if label_key else None
        for spec in inputs:
            _check_samples(spec, arrays[spec.name], path)
        count = _same_count({**arrays, **({label_key: labels} if label_key else {})}, path)
    except BaseException:
        close()
        raise

    def read(start, stop):
        return ({name: np.asarray(a[start:stop]) for name, a in arrays.items()},
                None if labels is None else labels[start:stop])

    return Dataset(str(path), count, inputs, read, has_labels=labels is not None, closers=[close, arrays.clear])


def _same_count(arrays: dict, source) -> int:
    counts = {len(a) for a in arrays.values()}
    if len(counts) != 1:
        raise InputError(f"arrays in {source} hold different sample counts ({sorted(counts)}).",
                         hint="Every array (and y) needs the same length along axis 0.")
    return counts.pop()


def _image_folder(folder: Path, inputs: list[TensorSpec], preprocess: dict | Preprocess | None,
                  user_preprocess: str | Preprocess | None, model: str | None) -> Dataset:
    if len(inputs) != 1:
        raise InputError(f"an image folder feeds a single-input model; this one takes {len(inputs)}.",
                         hint="Give an .npz with one array per input name.")
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir())
    if subfolders:
        loose = [p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        if loose:
            raise InputError(f"{folder} holds class subfolders and also images outside them ({', '.join(loose[:3])}).",
                             hint="Put every image in its class's subfolder, or use a folder without subfolders.")
        classes = [p.name for p in subfolders]
        # Folders named 0, 1, ... 9 are those class indices; other names index in sorted order.
        numbered = all(name.isdigit() for name in classes)
        indices = [int(name) for name in classes] if numbered else list(range(len(classes)))
        files = [(f, index) for index, sub in zip(indices, subfolders) for f in _images_in(sub)]
    else:
        classes, files = None, [(f, None) for f in _images_in(folder)]
    if not files:
        raise InputError(f"found no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}.",
                         hint="Point at a folder of images, or one subfolder of images per class.")
    steps = for_images(inputs[0], preprocess, user_preprocess, model=model)

    def read(start, stop):
        chunk = files[start:stop]
        feeds = {inputs[0].name: np.concatenate([steps.load_image(f) for f, _ in chunk])}
        return feeds, None if classes is None else np.array([label for _, label in chunk], np.int64)

    first = steps.load_image(files[0][0])
    check_array(free_batch(inputs[0]), first, what="images preprocessed for input")
    return Dataset(str(folder), len(files), inputs, read, has_labels=classes is not None, classes=classes)


def _integer_labels(labels: np.ndarray, path: Path) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not (labels.dtype.kind in "iu" or (labels.dtype.kind == "f" and np.all(labels == np.round(labels)))):
        raise InputError(f"expected labels in {path} as a 1-D array of class indices, found {labels.dtype.name} "
                         f"shaped {list(labels.shape)}.", hint="Save y as integers, one per sample.")
    return labels.astype(np.int64)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _check_samples(spec: TensorSpec, array, path: Path | str) -> None:
    """The arrays stack samples along axis 0: check one sample as a batch of one."""
    if array.ndim == 0 or len(array) == 0:
        raise InputError(f"{path} holds no samples for input {spec.describe()} (shape {list(array.shape)}).",
                         hint="Stack samples along axis 0.")
    check_array(free_batch(spec), np.asarray(array[:1]), what=f"data in {path} for input")


def channel_last(dataset: Dataset, inputs: list[TensorSpec]) -> Dataset:
    """The same samples with every 4-D array moved from NCHW to NHWC, for a channel-last model."""

    def read(start, stop):
        feeds, labels = dataset.reader(start, stop)
        return to_channel_last(feeds), labels

    return Dataset(dataset.description, dataset.count, inputs, read, has_labels=dataset.has_labels,
                   synthetic=dataset.synthetic, classes=dataset.classes, closers=[dataset.close])
