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
batch axis is fixed at B is fed B samples at a time (see Dataset.batches).
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from kit.core.errors import InputError
from kit.core.specs import TensorSpec, check_array, describe_specs, random_feeds
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
        pads per runtime and drops the padded outputs: see kit.check.harness.run_samples).
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


def fixed_batch(inputs: list[TensorSpec]) -> int | None:
    """The batch every run of a model with these inputs must have, or None when it may vary."""
    if any(spec.shape is None for spec in inputs):
        return 1  # rank unknown: one sample at a time is all that is safe
    sizes = {spec.shape[0] for spec in inputs if spec.shape and isinstance(spec.shape[0], int)}
    if len(sizes) > 1:
        raise InputError(f"the model's inputs fix different sizes on axis 0 ({describe_specs(inputs)}); the kit "
                         "feeds samples stacked along axis 0.", hint="Run it with kit run --input NAME=FILE per input.")
    return sizes.pop() if sizes else None


def pad_batch(feeds: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Feeds of fewer than ``size`` samples filled up by repeating the last sample."""
    count = samples_in(feeds)
    if count >= size:
        return feeds
    return {name: np.concatenate([a, np.repeat(a[-1:], size - count, axis=0)]) for name, a in feeds.items()}


def samples_in(feeds: dict[str, np.ndarray]) -> int:
    return len(next(iter(feeds.values())))


def available_memory() -> int | None:
    """Bytes of memory this machine can still hand out (Linux's MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def free_batch(spec: TensorSpec) -> TensorSpec:
    """The spec with its batch axis free: data stacks any number of samples there."""
    if not spec.shape or not isinstance(spec.shape[0], int):
        return spec
    return TensorSpec(spec.name, ("batch", *spec.shape[1:]), spec.dtype, spec.scale, spec.zero_point)


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


def channel_last(dataset: Dataset, inputs: list[TensorSpec]) -> Dataset:
    """The same samples with every 4-D array moved from NCHW to NHWC, for a channel-last model."""

    def read(start, stop):
        feeds, labels = dataset.reader(start, stop)
        return to_channel_last(feeds), labels

    return Dataset(dataset.description, dataset.count, inputs, read, has_labels=dataset.has_labels,
                   synthetic=dataset.synthetic, classes=dataset.classes, closers=[dataset.close])


def to_channel_last(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if a.ndim == 4 else a for name, a in feeds.items()}


def as_nchw(spec: TensorSpec) -> TensorSpec:
    if spec.shape is None or len(spec.shape) != 4:
        return spec
    n, h, w, c = spec.shape
    return TensorSpec(spec.name, (n, c, h, w), spec.dtype, spec.scale, spec.zero_point)


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


def load_npy(path: Path) -> np.ndarray:
    """An .npy file memory-mapped (never unpickled)."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # EOFError: an empty file
        if "Python objects" in str(exc) or "allow_pickle" in str(exc):
            raise _objects_refused(path) from None
        raise InputError(f"could not read {path} as a numpy .npy file ({exc}).",
                         hint="Save arrays with numpy.save.") from exc
    if not isinstance(array, np.ndarray):
        raise InputError(f"could not read {path} as a numpy .npy file (it is an .npz archive).",
                         hint="Name it .npz, or save one array with numpy.save.")
    return array


def _objects_refused(path, key: str | None = None) -> InputError:
    where = f"{path}" + (f" (array {key})" if key else "")
    return InputError(f"{where} holds Python objects (dtype object); the kit reads numeric arrays and never "
                      "unpickles data.", hint="Save numeric arrays, e.g. numpy.asarray(x, dtype=numpy.float32).")


# ----- .npz members read in place --------------------------------------------------------------

_LOCAL_HEADER = struct.Struct("<4s5H3I2H")  # a zip local file header, 30 bytes


def npz_arrays(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], Callable[[], None]]:
    """Every array of an .npz, keyed as numpy.load keys them, without reading the data, and a
    function that closes what stays open. Object arrays are refused (nothing is unpickled)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            entries = {info.filename.removesuffix(".npy"): _npz_member(path, archive, info)
                       for info in archive.infolist() if info.filename.endswith(".npy")}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, struct.error) as exc:
        raise InputError(f"could not read {path} as a numpy .npz file ({exc}).",
                         hint="Save arrays with numpy.savez.") from exc

    def close():  # a memory map is unmapped (and its file closed) when the last reference goes
        for entry in entries.values():
            if isinstance(entry, _CompressedRows):
                entry.close()
        entries.clear()

    return entries, close


def _npz_member(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo):
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"array {info.filename} uses .npy format {version[0]}.{version[1]}")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(member)
        header_size = member.tell()
    if dtype.hasobject:
        raise _objects_refused(path, info.filename.removesuffix(".npy"))
    if info.flag_bits & 0x1:
        raise ValueError(f"array {info.filename} is encrypted")
    order = "F" if fortran else "C"
    if np.prod(shape, dtype=np.float64) == 0:
        return np.empty(shape, dtype, order=order)
    if info.compress_type == zipfile.ZIP_STORED:  # numpy.savez: the bytes lie as they are in the file
        with open(path, "rb") as handle:
            handle.seek(info.header_offset)
            fields = _LOCAL_HEADER.unpack(handle.read(_LOCAL_HEADER.size))
        if fields[0] != b"PK\x03\x04":
            raise ValueError(f"array {info.filename} has no local zip header")
        start = info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1] + header_size
        return np.memmap(path, dtype=dtype, mode="r", offset=start, shape=shape, order=order)
    if fortran:  # samples are not contiguous: decompress it whole (rare: numpy.savez_compressed of x.T)
        with archive.open(info) as member:
            return np.lib.format.read_array(member, allow_pickle=False)
    return _CompressedRows(path, info.filename, shape, dtype, header_size)


class _CompressedRows:
    """A compressed .npz member read by rows: each slice decompresses only what it needs,
    continuing where the previous one ended (batches in order never decompress twice)."""

    def __init__(self, path: Path, name: str, shape: tuple[int, ...], dtype: np.dtype, header_size: int):
        self.path, self.name, self.shape, self.dtype, self.header_size = path, name, shape, dtype, header_size
        self.ndim = len(shape)
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        self._archive = self._member = None

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice) -> np.ndarray:
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise TypeError("compressed .npz arrays are read by contiguous slices of samples")
        start, stop, _ = rows.indices(self.shape[0])
        stop = max(start, stop)
        if self._member is None:
            self._archive = zipfile.ZipFile(self.path)
            self._member = self._archive.open(self.name)
        self._member.seek(self.header_size + start * self.row_bytes)  # forward: reads on; backward: restarts
        data = self._member.read((stop - start) * self.row_bytes)
        return np.frombuffer(data, self.dtype).reshape((stop - start, *self.shape[1:]))

    def __array__(self, dtype=None, copy=None):
        array = self[:]
        return array if dtype is None else array.astype(dtype)

    def close(self) -> None:
        if self._member is not None:
            self._member.close()
            self._archive.close()
            self._member = self._archive = None


def _check_samples(spec: TensorSpec, array, path: Path | str) -> None:
    """The arrays stack samples along axis 0: check one sample as a batch of one."""
    if array.ndim == 0 or len(array) == 0:
        raise InputError(f"{path} holds no samples for input {spec.describe()} (shape {list(array.shape)}).",
                         hint="Stack samples along axis 0.")
    check_array(free_batch(spec), np.asarray(array[:1]), what=f"data in {path} for input")


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
        fixed = fixed_batch(inputs or dataset.inputs)
        self.static_batch = fixed if fixed and fixed > 1 else None  # batch 1 streams like a free axis
        if self.static_batch:  # slice any number of samples; the fixed size is asked for below
            dataset = replace(dataset, inputs=[free_batch(spec) for spec in dataset.inputs])
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
            self._check_finite(name, feeds[name], samples)
            self._digest.update(feeds[name].tobytes())
        if self.count < self._keep:  # whole batches for a fixed batch axis, else just what is asked
            for name, array in feeds.items():
                self.kept.setdefault(name, []).append(array if self.static_batch else array[: self._keep - self.count])
        self.count += samples
        return feeds

    def _check_finite(self, name: str, array: np.ndarray, samples: int) -> None:
        """Ranges calibrated on NaN or Inf are NaN or Inf: ONNX Runtime then fails with "scale issue"."""
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad = int(array.size - np.isfinite(array).sum())
            raise InputError(f"calibration data {self.description} holds {bad} NaN or Inf values in input '{name}' "
                             f"(samples {self.count} to {self.count + samples - 1}); ranges calibrated on them are "
                             "meaningless.", hint="Remove or repair those samples.")

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
    samples = [free_batch(spec) for spec in inputs]
    if isinstance(calib, (str, os.PathLike)):
        return open_data(str(calib), samples, preprocess)
    if isinstance(calib, Dataset):
        return replace(calib, inputs=[free_batch(spec) for spec in calib.inputs])
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
