"""Data a user points the kit at, streamed as model feeds: for calibration, comparison and evaluation.

Accepted, for a model's input specs:
- a folder of images, decoded and preprocessed with OpenCV per the model's stored
  preprocessing; one subfolder per class gives labels (folders named 0..N are those
  indices, other names index in sorted order);
- a ``.npy`` file (memory-mapped, samples along axis 0) for a single-input model;
- a ``.npz`` file with one array per input name (or ``x`` for a single input) and
  optionally ``y`` (or ``labels``) class indices; each array is read whole when first used
  (numpy cannot memory-map inside an .npz: use .npy files for sets larger than memory);
- ``random:N``: N synthetic samples (calibration with it is loudly warned about).

Arrays are in the source model's layout; a sample is one slice along axis 0.
"""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
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


def open_data(source: str, inputs: list[TensorSpec], preprocess: dict | None = None,
              layout: str | None = None) -> Dataset:
    """Open ``source`` as a stream of feeds for a model with these ``inputs``.

    ``layout="nhwc"`` says the model takes channel-last images while arrays are in the
    source model's NCHW layout: 4-D arrays are checked as NCHW and transposed on the way.
    """
    match = re.fullmatch(r"random:(\d+)", str(source))
    if match:
        return _random(int(match[1]), inputs)
    path = Path(source)
    if path.is_dir():
        return _image_folder(path, inputs, preprocess)  # the stored preprocessing already lays images out
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


def channel_last(dataset: Dataset, inputs: list[TensorSpec]) -> Dataset:
    """The same samples with every 4-D array moved from NCHW to NHWC, for a channel-last model."""

    def read(start, stop):
        feeds, labels = dataset.reader(start, stop)
        return {name: np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if a.ndim == 4 else a
                for name, a in feeds.items()}, labels

    return Dataset(dataset.description, dataset.count, inputs, read, has_labels=dataset.has_labels,
                   synthetic=dataset.synthetic, classes=dataset.classes)


def as_nchw(spec: TensorSpec) -> TensorSpec:
    if spec.shape is None or len(spec.shape) != 4:
        return spec
    n, h, w, c = spec.shape
    return TensorSpec(spec.name, (n, c, h, w), spec.dtype, spec.scale, spec.zero_point)


def from_arrays(arrays: dict[str, np.ndarray], inputs: list[TensorSpec], description: str = "arrays",
                layout: str | None = None) -> Dataset:
    """Arrays already in memory (stacked along axis 0, keyed by input name, in the source
    model's layout) as a Dataset for a model with these ``inputs`` (see open_data's ``layout``)."""
    if layout == "nhwc":
        return channel_last(from_arrays(arrays, [as_nchw(spec) for spec in inputs], description), inputs)
    missing = [spec.name for spec in inputs if spec.name not in arrays]
    if missing:
        raise InputError(f"{description} holds {', '.join(arrays) or 'nothing'}; the model takes "
                         f"{', '.join(spec.name for spec in inputs)}.", hint="Compare models with the same inputs.")
    for spec in inputs:
        _check_samples(spec, arrays[spec.name], description)

    def read(start, stop):
        return {spec.name: arrays[spec.name][start:stop] for spec in inputs}, None

    return Dataset(description, len(arrays[inputs[0].name]), inputs, read)


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
    label_key = next((k for k in ("y", "labels") if k in keys and k not in names.values()), None)
    labels = _integer_labels(archive[label_key], path) if label_key else None
    if labels is not None:
        counts.add(len(labels))
    if len(counts) != 1:
        raise InputError(f"arrays in {path} hold different sample counts ({sorted(counts)}).",
                         hint="Every array (and y) needs the same length along axis 0.")
    for spec in inputs:
        _check_samples(spec, arrays[spec.name], path)

    def read(start, stop):
        return ({name: a[start:stop] for name, a in arrays.items()},
                None if labels is None else labels[start:stop])

    return Dataset(str(path), counts.pop(), inputs, read, has_labels=labels is not None)


def _image_folder(folder: Path, inputs: list[TensorSpec], preprocess: dict | None) -> Dataset:
    if len(inputs) != 1:
        raise InputError(f"an image folder feeds a single-input model; this one takes {len(inputs)}.",
                         hint="Give an .npz with one array per input name.")
    steps = Preprocess.from_dict(preprocess) if preprocess else Preprocess.for_input(inputs[0])
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

    def read(start, stop):
        chunk = files[start:stop]
        feeds = {inputs[0].name: np.concatenate([steps.load_image(f) for f, _ in chunk])}
        return feeds, None if classes is None else np.array([label for _, label in chunk], np.int64)

    first = steps.load_image(files[0][0])
    check_array(inputs[0], first, what="images preprocessed for input")
    return Dataset(str(folder), len(files), inputs, read, has_labels=classes is not None, classes=classes)


def _integer_labels(labels: np.ndarray, path: Path) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not (labels.dtype.kind in "iu" or (labels.dtype.kind == "f" and np.all(labels == np.round(labels)))):
        raise InputError(f"expected labels in {path} as a 1-D array of class indices, found {labels.dtype.name} "
                         f"shaped {list(labels.shape)}.", hint="Save y as integers, one per sample.")
    return labels.astype(np.int64)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"could not read {path} as a numpy .npy file ({exc}).",
                         hint="Save arrays with numpy.save.") from exc


def _check_samples(spec: TensorSpec, array: np.ndarray, path: Path | str) -> None:
    """The arrays stack samples along axis 0: check one sample as a batch of one."""
    if array.ndim == 0 or len(array) == 0:
        raise InputError(f"{path} holds no samples for input {spec.describe()} (shape {list(array.shape)}).",
                         hint="Stack samples along axis 0.")
    check_array(spec, np.asarray(array[:1]), what=f"data in {path} for input")


class FeedReader:
    """ONNX Runtime's data-reader protocol (``get_next()``) over a Dataset, for one calibration pass.

    The reader streams the Dataset in batches, counts the samples, hashes every array it
    hands out, and keeps the first ``keep`` samples for a later check. A model with a fixed
    batch axis above 1 (``inputs``, else the Dataset's) gets batches of exactly that size;
    samples that do not fill a last batch are left out and counted in ``dropped``.
    """

    def __init__(self, dataset: Dataset, *, batch_size: int = 16, limit: int | None = None,
                 inputs: list[TensorSpec] | None = None, keep: int = 0):
        self.description, self.synthetic = dataset.description, dataset.synthetic
        self.static_batch = static_batch(inputs or dataset.inputs)
        if self.static_batch:  # slice any number of samples; the fixed size is asked for below
            dataset = replace(dataset, inputs=[any_batch(spec) for spec in dataset.inputs])
        self._batches = (feeds for feeds, _ in dataset.batches(self.static_batch or batch_size, limit))
        self._keep = keep
        self._digest = hashlib.sha256()
        self.count = self.dropped = 0
        self.kept: dict[str, list[np.ndarray]] = {}

    def get_next(self) -> dict[str, np.ndarray] | None:
        feeds = next(self._batches, None)
        if feeds is None:
            return None
        samples = len(next(iter(feeds.values())))
        if self.static_batch and samples != self.static_batch:  # only the last batch can be short
            self.dropped += samples
            return None
        feeds = {name: np.ascontiguousarray(array) for name, array in feeds.items()}
        for name in sorted(feeds):
            self._digest.update(feeds[name].tobytes())
        if self.count < self._keep:  # whole batches for a fixed batch axis, else just what is asked
            for name, array in feeds.items():
                self.kept.setdefault(name, []).append(array if self.static_batch else array[: self._keep - self.count])
        self.count += samples
        return feeds

    def __iter__(self):  # ORT's collect_activations iterates instead of calling get_next()
        return iter(self.get_next, None)

    def sha256(self) -> str:
        return self._digest.hexdigest()

    def kept_arrays(self) -> dict[str, np.ndarray]:
        return {name: np.concatenate(parts) for name, parts in self.kept.items()}


def calibration_feeds(calib, inputs: list[TensorSpec], preprocess: dict | None = None, **options) -> FeedReader:
    """One pass (a FeedReader) over calibration data in any form calibration_data takes;
    ``options`` go to FeedReader."""
    return FeedReader(calibration_data(calib, inputs, preprocess, limit=options.get("limit")), inputs=inputs,
                      **options)


def calibration_data(calib, inputs: list[TensorSpec], preprocess: dict | None = None, *,
                     limit: int | None = None) -> Dataset:
    """Calibration data in any form a user gives it, as a Dataset that can be read more than once
    (an accuracy-budgeted quantization calibrates again on every try):

    - a data string or path (image folder, .npy, .npz, random:N; see open_data) or a Dataset;
    - arrays in memory: a dict of stacked arrays by input name, or one array for a single input;
    - feed dicts from Python: a list, a generator or any iterable of them, or a reader with
      ``get_next()`` (ONNX Runtime's CalibrationDataReader). These are read once, up to
      ``limit`` samples, checked against ``inputs`` and kept in memory (ONNX Runtime's
      calibration holds every batch's activations anyway, which outweigh the inputs).

    Samples are slices along axis 0 whatever the batches they came in, so the same samples
    give the same batches, hash and result in every form. A fixed batch axis in ``inputs``
    is opened as free: FeedReader batches to the fixed size.
    """
    samples = [any_batch(spec) for spec in inputs]
    if isinstance(calib, (str, os.PathLike)):
        return open_data(str(calib), samples, preprocess)
    if isinstance(calib, Dataset):
        return replace(calib, inputs=[any_batch(spec) for spec in calib.inputs])
    if isinstance(calib, np.ndarray):
        if len(inputs) != 1:
            raise InputError(f"calibration data is one array, but the model takes {len(inputs)} inputs "
                             f"({', '.join(s.name for s in inputs)}).", hint="Give a dict of arrays by input name.")
        calib = {inputs[0].name: calib}
    if isinstance(calib, Mapping):
        return from_arrays({name: np.asarray(array) for name, array in calib.items()}, samples,
                           "calibration arrays from Python")
    return _python_feeds(calib, samples, limit)


def _python_feeds(source, inputs: list[TensorSpec], limit: int | None) -> Dataset:
    description = f"{type(source).__name__} of feeds from Python"
    if hasattr(source, "get_next"):
        items = iter(source.get_next, None)
    else:
        try:
            items = iter(source)
        except TypeError:
            raise InputError(f"expected calibration data as a data path, a Dataset, arrays, or feed dicts; found "
                             f"{type(source).__name__}.", hint="E.g. calib=[{input_name: batch_array}, ...] or "
                                                              "calib='calib.npz'.") from None
    batches: list[dict[str, np.ndarray]] = []
    count = 0
    while limit is None or count < limit:  # read no further than needed: a generator may be endless
        feeds = next(items, None)
        if feeds is None or (isinstance(feeds, Mapping) and not feeds):  # readers end with None (some with {})
            break
        batches.append(_checked_feeds(feeds, inputs, batches[0] if batches else None))
        count += len(batches[-1][inputs[0].name])
    if not count:
        raise InputError(f"the calibration {description} yielded no samples.",
                         hint="Give a few hundred representative samples.")
    starts = np.cumsum([0] + [len(batch[inputs[0].name]) for batch in batches])

    def read(start, stop):
        first = int(np.searchsorted(starts, start, side="right")) - 1
        parts: dict[str, list[np.ndarray]] = {spec.name: [] for spec in inputs}
        for index in range(first, len(batches)):
            if starts[index] >= stop:
                break
            for spec in inputs:
                parts[spec.name].append(batches[index][spec.name][max(start - starts[index], 0):stop - starts[index]])
        return {name: np.concatenate(arrays) for name, arrays in parts.items()}, None

    return Dataset(description, count, inputs, read)


def _checked_feeds(feeds, inputs: list[TensorSpec], first: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """One batch of Python feeds, checked like a data file's: names, dtype, shape, one sample shape throughout."""
    if not isinstance(feeds, Mapping):
        raise InputError(f"expected each calibration item to be a dict of input name to array, found "
                         f"{type(feeds).__name__}.", hint="Yield one dict per batch keyed by input name.")
    names = {spec.name for spec in inputs}
    if set(feeds) != names:
        raise InputError(f"calibration feeds hold {', '.join(sorted(map(str, feeds))) or 'nothing'}; the model "
                         f"takes {', '.join(sorted(names))}.", hint="Yield one dict per batch keyed by input name.")
    arrays = {}
    for spec in inputs:
        array = np.asarray(feeds[spec.name])
        check_array(spec, array, what="calibration feed for input")
        if array.ndim == 0 or len(array) == 0:
            raise InputError(f"a calibration feed for input {spec.describe()} holds no samples (shape "
                             f"{list(array.shape)}).", hint="Stack samples along axis 0.")
        if first is not None and array.shape[1:] != first[spec.name].shape[1:]:
            raise InputError(f"calibration feed for input {spec.describe()} changed its sample shape from "
                             f"{list(first[spec.name].shape[1:])} to {list(array.shape[1:])}.",
                             hint="Give every batch the same sample shape (stack samples along axis 0).")
        arrays[spec.name] = array
    if len({len(array) for array in arrays.values()}) != 1:
        raise InputError(f"calibration feeds hold different sample counts per input in one batch "
                         f"({', '.join(f'{n}{list(a.shape)}' for n, a in arrays.items())}).",
                         hint="Every input needs the same number of samples along axis 0.")
    return arrays


def static_batch(inputs: list[TensorSpec]) -> int | None:
    """The fixed batch size of inputs whose axis 0 is fixed above 1 (None when it is free or 1)."""
    sizes = {spec.shape[0] for spec in inputs if spec.shape and isinstance(spec.shape[0], int)}
    size = max(sizes, default=1)
    return size if size > 1 else None


def any_batch(spec: TensorSpec) -> TensorSpec:
    """The spec with axis 0 free: a sample set of any size fits it."""
    return replace(spec, shape=("batch", *spec.shape[1:])) if spec.shape else spec
