"""Calibration data in every form a user has it (a path, arrays, an iterable of feeds, an
object with get_next() as ONNX Runtime's readers have) and one counted, hashed pass over it
(FeedReader) for every quantizer."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from kit.core.errors import InputError
from kit.core.specs import TensorSpec, check_array
from kit.data.batching import fixed_batch, free_batch
from kit.data.datasets import Dataset, from_arrays, open_data


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
