"""Build feeds for ``kit run`` from what a user has: .npy and .npz files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kit.core.errors import InputError
from kit.core.specs import TensorSpec
from kit.data.arrays import load_npy, npz_arrays
from kit.data.datasets import LABEL_KEYS


def feeds_from_files(specs: list[TensorSpec], items: list[str]) -> dict[str, np.ndarray]:
    """``x.npy`` (the only input), ``NAME=x.npy``, or an ``.npz`` holding arrays keyed by input
    name (or ``x`` for a single input, as ``--data`` takes it; labels in ``y`` are ignored).

    ``NAME=`` counts only when NAME is an input of the model, so paths may contain '='; a
    NAME the model lacks, in front of a path that does not exist, is a typo and named as one.
    """
    feeds: dict[str, np.ndarray] = {}
    names = [spec.name for spec in specs]
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or name not in names:
            if sep and not Path(item).exists():
                raise InputError(f"the model has no input named {name!r} (its inputs: {', '.join(names)}); "
                                 f"found --input {item}.", hint="Write --input NAME=FILE with one of those names.")
            name, sep, path = None, "", item
        path = Path(path)
        if path.suffix == ".npz":
            feeds.update(_read_npz(path, names))
            continue
        if not sep:
            if len(specs) != 1:
                raise InputError(f"the model takes {len(specs)} inputs ({', '.join(names)}); "
                                 f"found an unnamed --input {item}.", hint="Write --input NAME=file.npy per input.")
            name = specs[0].name
        feeds[name] = _non_empty(np.asarray(load_npy(_existing(path))), path)
    return feeds


def _read_npz(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    arrays, close = npz_arrays(_existing(path))
    try:
        if not arrays:
            raise InputError(f"{path} holds no arrays.", hint="Save one array per input with numpy.savez.")
        if len(names) == 1 and names[0] not in arrays and "x" in arrays:
            keys = {names[0]: "x"}  # the x/y layout --data takes
        else:
            keys = {key: key for key in arrays if key in names or key not in LABEL_KEYS}
        return {name: _non_empty(np.array(arrays[key]), f"{path} (array {key})") for name, key in keys.items()}
    finally:
        close()


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise InputError(f"input file {path} does not exist.", hint="Check the path.")
    return path


def _non_empty(array: np.ndarray, where) -> np.ndarray:
    if array.size == 0:
        raise InputError(f"{where} holds an empty array (shape {list(array.shape)}); expected at least one sample.",
                         hint="Stack one or more samples along axis 0.")
    return array
