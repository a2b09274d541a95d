"""Coral Edge TPU backend: the TFLite interpreter with the Edge TPU delegate (libedgetpu).

It opens models compiled by edgetpu_compiler (``*_edgetpu.tflite``); a model that was not
compiled gets a warning that it runs on the CPU. The delegate's two failures become clear
errors: a missing library (OSError: install libedgetpu) and a library that finds no device
(ValueError: plug one in). Both are tested here with a small stub library built by the tests;
a real Edge TPU was not available.

Availability (``kit runtimes``, choosing a backend in ``kit.load``) only checks that the
library loads and is a delegate library; the device is opened by ``load()`` alone, so listing
backends never touches a device another process is using.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import platform
import sys
import warnings
from pathlib import Path
from typing import Any

from kit.runtimes.base import Availability
from kit.runtimes.tflite import TFLiteRuntime

from kit.core.errors import InputError, KitWarning, RuntimeUnavailableError

LIBRARIES = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
INSTALL = ("install libedgetpu (Coral's apt repository: libedgetpu1-std; macOS and Windows: Coral's runtime "
           "package) and pip install \"edge-inference-kit[tflite]\"")


class EdgeTPURuntime(TFLiteRuntime):
    """Options: ``device`` ("usb", "usb:0", "pci", "pci:0", ":0"; default the first found),
    ``library`` (the delegate library; default libedgetpu for this OS), ``threads``, ``raw``."""

    name = "edgetpu"
    priority = 100  # it alone opens a compiled *_edgetpu.tflite
    suffixes = ("_edgetpu.tflite",)
    extra = "tflite"
    install_hint = INSTALL
    accepted_options = ("threads", "raw", "device", "library")

    @classmethod
    def can_open(cls, path: str, named: bool = False) -> bool:
        return str(path).lower().endswith(cls.suffixes)

    @classmethod
    def default_library(cls) -> str:
        return LIBRARIES.get(platform.system(), LIBRARIES["Linux"])

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        options = super().check_options(options)
        for key, kinds in (("device", str), ("library", (str, os.PathLike))):
            value = options.get(key)
            if value is not None and not isinstance(value, kinds):
                raise InputError(f"expected {key} as a string, found {value!r} ({type(value).__name__}).",
                                 hint='E.g. device="usb:0", library="libedgetpu.so.1".')
        if options.get("library") is not None:
            options["library"] = os.fspath(options["library"])
        return options

    @classmethod
    def availability(cls) -> Availability:
        """The interpreter and a loadable delegate library; no device is opened here."""
        interpreter = super().availability()
        if not interpreter.usable:
            return interpreter
        library = cls.default_library()
        try:
            found = ctypes.CDLL(library)
        except OSError as exc:
            return Availability(False, interpreter.version, f"the Edge TPU library {library} could not be loaded "
                                                            f"({_last_line(exc)})", INSTALL)
        if not hasattr(found, "tflite_plugin_create_delegate"):
            return Availability(False, interpreter.version, f"{library} is not a TFLite delegate library (it lacks "
                                                            "tflite_plugin_create_delegate)", INSTALL)
        return Availability(True, interpreter.version, f"Edge TPU delegate {library} (the device opens on load)")

    @classmethod
    def device_problem(cls) -> str | None:
        try:
            cls._load_delegate(cls.default_library(), None)  # released at once: the probe holds nothing
        except RuntimeUnavailableError as error:
            return str(error)
        return None

    def require(self) -> None:
        """The interpreter only: the delegate, with this instance's library and device, loads in load()."""
        state = TFLiteRuntime.availability()
        if not state.usable:
            raise RuntimeUnavailableError(f"runtime '{self.name}' is not usable here ({state.detail}).",
                                          hint=f"To fix it, {INSTALL}.")

    @classmethod
    def _load_delegate(cls, library: str, device: str | None):
        module = cls.interpreter_module()
        failure = None
        with _quiet_failed_delegate():
            try:
                return module.load_delegate(library, {"device": device} if device else None)
            except (OSError, ValueError) as exc:  # keep only the text: the traceback holds the broken Delegate
                failure = (isinstance(exc, OSError), _last_line(exc))
        missing, detail = failure
        if missing:
            raise RuntimeUnavailableError(f"the Edge TPU library {library} could not be loaded ({detail}).",
                                          hint=f"To fix it, {INSTALL}.")
        raise RuntimeUnavailableError(
            f"the Edge TPU library {library} loaded but found no Edge TPU"
            + (f" at device {device!r}" if device else "") + f" ({detail}).",
            hint="Plug in the Coral USB Accelerator (or check the PCIe module's driver, gasket/apex) and retry; "
                 "`lsusb` should list 1a6e:089a or 18d1:9302.")

    def _delegates(self) -> list:
        return [self._load_delegate(self.options.get("library") or self.default_library(), self.options.get("device"))]

    def _load(self):
        if not _compiled_for_edgetpu(self.model_path):
            warnings.warn(f"{self.model_path} was not compiled for the Edge TPU (no edgetpu-custom-op): it runs on "
                          "the CPU. Compile it with edgetpu_compiler (see `kit check edgetpu`).", KitWarning,
                          stacklevel=3)
        return super()._load()

    def _info(self) -> dict[str, Any]:
        return {**super()._info(), "device": f"edgetpu {self.options.get('device') or '(first found)'}",
                "delegates": [self.options.get("library") or self.default_library()]}


@contextlib.contextmanager
def _quiet_failed_delegate():
    """A Delegate that failed in __init__ raises AttributeError again from __del__ (ai-edge-litert
    2.3), printed as 'Exception ignored'; collect it here, under a hook that drops just that."""
    previous = sys.unraisablehook

    def hook(unraisable):
        if not (isinstance(unraisable.exc_value, AttributeError) and "Delegate" in repr(unraisable.object)):
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        gc.collect()
        sys.unraisablehook = previous


def _last_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else ""


def _compiled_for_edgetpu(path: str) -> bool:
    return b"edgetpu-custom-op" in Path(path).read_bytes()
