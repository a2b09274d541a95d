"""Edge inference kit: export a PyTorch model, quantize it, run it on edge runtimes, measure it.

``import kit`` is light: it imports neither torch nor any runtime library; those load
inside the functions that need them.
"""

from kit._version import __version__
from kit.core.errors import KitError
from kit.core.specs import TensorSpec


def load(path, runtime=None, **options):
    """Open a model on a runtime and return the loaded :class:`kit.runtimes.Runtime`.

    The backend is chosen from the file (the first usable one) unless ``runtime`` names one.
    """
    from kit.runtimes.registry import load as _load

    return _load(path, runtime, **options)


__all__ = ["KitError", "TensorSpec", "__version__", "load"]
