"""Edge inference kit: export a PyTorch model, quantize it, run it on edge runtimes, measure it.

``import kit`` is light: it imports neither torch nor any runtime library; those load
inside the functions that need them.
"""

from kit._version import __version__
from kit.core.errors import KitError
from kit.core.specs import TensorSpec


def load(path, runtime=None, *, model=None, **options):
    """Open a model on a runtime and return the loaded :class:`kit.runtimes.Runtime`.

    The backend is chosen from the file (the first usable one) unless ``runtime`` names one.
    ``path`` may be a bundle folder: its best model for this device is loaded (``model``
    names another), after every file was checked against the bundle's manifest.
    """
    from kit.deploy.choose import resolve
    from kit.runtimes.registry import load as _load

    choice = resolve(path, model, runtime)
    if choice is not None:
        path, runtime = choice.path, choice.runtime
    elif model is not None:
        raise TypeError("model= picks a model inside a bundle; path is not a bundle.")
    return _load(path, runtime, **options)


__all__ = ["KitError", "TensorSpec", "__version__", "load"]
