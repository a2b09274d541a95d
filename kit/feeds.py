"""Build feeds for ``kit run`` from what a user has: .npy/.npz files or an image."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from kit.errors import InputError
from kit.preprocess import Preprocess
from kit.specs import TensorSpec


def feeds_from_files(specs: list[TensorSpec], items: list[str]) -> dict[str, np.ndarray]:
    """``x.npy`` (the only input), ``NAME=x.npy``, or an ``.npz`` holding arrays keyed by input name.

    ``NAME=`` counts only when NAME is an input of the model, so paths may contain '='.
    """
    feeds: dict[str, np.ndarray] = {}
    names = {spec.name for spec in specs}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or name not in names:
            name, sep, path = None, "", item
        path = Path(path)
        if path.suffix == ".npz":
            feeds.update(_read(path))
            continue
        if not sep:
            if len(specs) != 1:
                raise InputError(f"the model takes {len(specs)} inputs ({', '.join(s.name for s in specs)}); "
                                 f"found an unnamed --input {item}.", hint="Write --input NAME=file.npy per input.")
            name = specs[0].name
        feeds[name] = _read(path)
    return feeds


def _read(path: Path):
    if not path.is_file():
        raise InputError(f"input file {path} does not exist.", hint="Check the path.")
    try:
        data = np.load(path, allow_pickle=False)  # never unpickle an input file
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise InputError(f"could not read {path} as a numpy .npy/.npz file ({exc}).",
                         hint="Save arrays with numpy.save or numpy.savez.") from exc
    return dict(data) if isinstance(data, np.lib.npyio.NpzFile) else data


def feeds_from_image(specs: list[TensorSpec], image: str, preprocess: dict | None) -> dict[str, np.ndarray]:
    if len(specs) != 1:
        raise InputError(f"--image feeds a single-input model; this one takes {len(specs)}.",
                         hint="Use --input NAME=file.npy per input.")
    spec = specs[0]
    steps = Preprocess.from_dict(preprocess) if preprocess else Preprocess.for_input(spec)
    return {spec.name: steps.load_image(image)}
