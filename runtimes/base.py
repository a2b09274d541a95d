"""The one interface every backend implements.

A backend subclass sets ``name``, ``suffixes``, ``extra`` and ``modules`` and implements
four small methods: ``_load`` (returns input and output specs), ``_run`` (the raw call,
feeds already validated), ``_close`` and ``_info``. The base class owns the lifecycle,
the option and feed checks and the error messages, so backends cannot drift apart on them.

Constructing a runtime is cheap and imports nothing heavy; ``load()`` does the work.

Threads. A loaded runtime may be shared by threads: concurrent ``run`` calls each get exactly
what a serial call gives. A backend whose library allows concurrent calls on one model says
so with ``thread_safe = True``; every other backend's calls are serialized by a lock here.

- ``onnxruntime``: thread-safe (``InferenceSession.run`` is); calls run in parallel and share
  the session's intra-op thread pool.
- ``tflite``, ``edgetpu``: serialized (an Interpreter and its tensors belong to one caller at a
  time); for parallel inference load one runtime per thread.
- ``torch``, ``tensorrt`` and plugins that do not declare it: serialized (a TensorRT execution
  context, its stream and buffers serve one call at a time).

``close()`` waits for a serialized call in progress; calls made after it (or still waiting for
the lock) raise a RunError saying the runtime was closed. ``load()`` before sharing a runtime.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from kit.core.errors import (
    InputError,
    KitError,
    ModelFileError,
    RunError,
    RuntimeUnavailableError,
    first_line,
    root_cause,
)
from kit.core.specs import DTYPES, TensorSpec, check_array, describe_specs

# Why a model refuses NaN and Inf in its float inputs, unless its backend says otherwise.
INTEGER_MODEL = "this model computes in integers, which cannot represent them"
# Threads beyond the CPUs only contend; a few times over still lets a user measure oversubscription,
# while keeping thread stacks and per-thread buffers far from exhausting memory (--threads 100000
# once started 9,000+ threads and was killed for memory).
THREADS_PER_CPU = 4


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity mask: a container's or taskset's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def check_threads(threads: Any, option: str = "threads", minimum: int = 0) -> int | None:
    """``threads`` (or another per-CPU count, named ``option``) as an int from ``minimum`` (0: the
    runtime's default) to THREADS_PER_CPU x the CPUs, or an InputError."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
        raise InputError(f"expected {option} as a whole number, found {threads!r} ({type(threads).__name__}).",
                         hint=f"Pass e.g. {option}=4, or 0 for the runtime's default.")
    cpus = cpu_count()
    if not minimum <= threads <= THREADS_PER_CPU * cpus:
        raise InputError(f"expected {option} from {minimum} to {THREADS_PER_CPU * cpus} ({THREADS_PER_CPU} per CPU; this "
                         f"machine gives the kit {cpus} CPU{'s' if cpus > 1 else ''}), found {threads}.",
                         hint=f"Use at most {cpus} (one per CPU)" + (", or 0 for the runtime's default." if not minimum
                                                                     else "."))
    return int(threads)


def check_choice(option: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InputError(f"expected {option} among {', '.join(choices)}, found {value!r}.",
                         hint=f"Use e.g. {option}={choices[-1]!r}.")
    return value


def check_flag(option: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"expected {option} as True or False, found {value!r} ({type(value).__name__}).",
                         hint=f"Pass {option}=True or leave it out.")
    return bool(value)


@dataclass(frozen=True)
class Availability:
    """Whether a backend can be used on this machine, and if not, what to do."""

    usable: bool
    version: str | None = None
    detail: str = ""  # providers, delegates, or why it is not usable
    install: str = ""  # the exact command that makes it usable

    def to_dict(self) -> dict:
        return {"usable": self.usable, "version": self.version, "detail": self.detail, "install": self.install}


class Runtime:
    """Base class of all backends. Use as ``with kit.load(path) as rt: rt.run(feeds)``."""

    name: ClassVar[str] = ""
    suffixes: ClassVar[tuple[str, ...]] = ()  # file suffixes this backend opens
    # Suffixes it opens only when named (--runtime NAME): another backend is the default for them,
    # and a benchmark of every runtime would not run it unasked.
    named_suffixes: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str] = ""  # the pip extra of edge-inference-kit that provides it
    modules: ClassVar[tuple[str, ...]] = ()  # importable modules it needs
    install_hint: ClassVar[str] = ""  # overrides the pip line where pip is not the way
    accepted_options: ClassVar[tuple[str, ...]] = ()  # the keyword options __init__ takes
    thread_safe: ClassVar[bool] = False  # may run() execute concurrently on one model? (else: a lock)
    # Routing: when several usable backends open a file, the highest priority is the default
    # (ties: by name). Built-ins declare 100, so a plugin (0 unless it says more) never takes over
    # a built-in's files by accident.
    priority: ClassVar[int] = 0

    def __init__(self, model_path: str | os.PathLike, **options: Any):
        unknown = sorted(set(options) - set(self.accepted_options))
        if unknown:
            raise InputError(f"runtime '{self.name}' does not take the option{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(unknown)}; it takes {', '.join(self.accepted_options) or 'none'}.",
                             hint="Drop the option, or name the runtime that takes it.")
        self.model_path = str(model_path)
        self.options = self.check_options(options)
        self._inputs: list[TensorSpec] | None = None
        self._outputs: list[TensorSpec] | None = None
        self._finite_only: frozenset[str] = frozenset()  # float inputs a quantized model cannot take NaN/Inf in
        self._finite_reason = INTEGER_MODEL  # why they are refused, in the error
        self._lock = threading.Lock()  # serializes run() unless thread_safe, and close() with it
        self._closed = False
        # The last run()'s stages in milliseconds, for backends that measure them (TensorRT: h2d_ms,
        # compute_ms, d2h_ms); empty for the others. kit bench records it with every variant.
        self.stage_ms: dict[str, float] = {}

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Validate option values before any work (a backend adds its own, calling super()); ``threads``
        is checked here for every backend that takes it."""
        if "threads" in options:
            options = {**options, "threads": check_threads(options["threads"])}
        return options

    # ----- discovery ---------------------------------------------------------------

    @classmethod
    def install_command(cls) -> str:
        return cls.install_hint or f'pip install "edge-inference-kit[{cls.extra}]"'

    @classmethod
    def availability(cls) -> Availability:
        """Import the backend's modules (and nothing else) and report what was found."""
        try:
            for module in cls.modules:
                importlib.import_module(module)
        except Exception as exc:  # an ImportError, or a library that fails while importing
            return Availability(False, None, f"{type(exc).__name__}: {exc}", cls.install_command())
        return Availability(True, cls.version(), cls.describe_backend())

    @classmethod
    def device_problem(cls) -> str | None:
        """What stops this usable backend from running here beyond installation (an accelerator
        that is not plugged in), or None. Opens the device when the backend has one: kit doctor
        and choosing a bundle's model ask; listing runtimes does not."""
        return None

    @classmethod
    def version(cls) -> str | None:
        module = importlib.import_module(cls.modules[0]) if cls.modules else None
        return getattr(module, "__version__", None)

    @classmethod
    def describe_backend(cls) -> str:
        """One line on what this machine gives the backend (providers, delegates, devices)."""
        return ""

    @classmethod
    def target_options(cls, target: str) -> dict[str, Any]:
        """The options ``NAME:TARGET`` stands for (``onnxruntime:CUDA``: an execution provider,
        ``openvino:GPU``: a device); a backend with targets overrides this."""
        raise InputError(f"runtime '{cls.name}' takes no target; found '{cls.name}:{target}'.",
                         hint=f"Use --runtime {cls.name}.")

    @classmethod
    def concurrent_options(cls, streams: int) -> dict[str, Any]:
        """Options a model shared by ``streams`` concurrent callers loads with (OpenVINO: its
        throughput hint and streams); kit bench --streams uses them."""
        return {}

    @classmethod
    def target_problem(cls, target: str) -> tuple[str, str] | None:
        """Why ``NAME:TARGET`` cannot run here, and what would make it run; None when it can.
        A benchmark skips such a variant with these two lines instead of failing."""
        return None

    @classmethod
    def can_open(cls, path: str, named: bool = False) -> bool:
        """Does it open ``path`` by default, or (``named``) when the user names it?"""
        suffixes = cls.suffixes + (cls.named_suffixes if named else ())
        return any(str(path).lower().endswith(suffix) for suffix in suffixes)

    def require(self) -> None:
        """Raise a clear error when the backend's libraries are missing."""
        state = self.availability()
        if not state.usable:
            raise RuntimeUnavailableError(
                f"runtime '{self.name}' is not usable here ({state.detail}).",
                hint=f"Install it with: {state.install}",
            )

    # ----- lifecycle ---------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._inputs is not None

    def load(self) -> Runtime:
        if self.loaded:
            return self
        self.require()
        if not self._source_exists():
            raise ModelFileError(f"model file {self.model_path} does not exist.", hint="Check the path.")
        try:
            inputs, outputs = self._load()
            self._checks = [_fast_check(spec) for spec in inputs]
            self._inputs, self._outputs, self._closed = inputs, outputs, False
        except KitError:
            raise
        except Exception as exc:
            raise ModelFileError(
                f"{self.name} could not load {self.model_path}: {type(exc).__name__}: {first_line(exc)}",
                hint=f"Expected a valid model for this runtime ({', '.join(self.suffixes)}); "
                     "check that the file is complete and was written by a supported exporter.",
            ) from exc
        return self

    def close(self) -> None:
        with self._lock:  # after a serialized call in progress, before the next
            if self.loaded:
                self._close()
                self._closed = True
            self._inputs = self._outputs = None

    def __enter__(self) -> Runtime:
        return self.load()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "not loaded"
        return f"<{type(self).__name__} {self.model_path!r} {state}>"

    # ----- description -------------------------------------------------------------

    @property
    def inputs(self) -> list[TensorSpec]:
        self._require_loaded()
        return list(self._inputs)

    @property
    def outputs(self) -> list[TensorSpec]:
        self._require_loaded()
        return list(self._outputs)

    @property
    def info(self) -> dict[str, Any]:
        """Runtime name and version, device, providers or delegates, threads."""
        self._require_loaded()
        return {"runtime": self.name, "version": self.version(), **self._info()}

    # ----- inference ---------------------------------------------------------------

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one inference: numpy arrays in by input name, numpy arrays out by output name."""
        self._require_loaded()
        checked = None
        try:
            checked = self.check_feeds(feeds)
            if self._finite_only:
                _refuse_non_finite(checked, self._finite_only, self._finite_reason)
            if self.thread_safe:
                return self._run(checked)
            with self._lock:
                self._require_loaded()  # close() may have run while this call waited
                return self._run(checked)
        except KitError:
            raise
        except Exception as exc:
            if not self.loaded:  # closed by another thread during the call
                raise self._closed_error() from exc
            if checked is None:
                raise
            # the library refused inputs that fit the spec (an id out of range, ...)
            raise RunError(f"runtime '{self.name}' failed on inputs "
                           f"{', '.join(f'{k}{list(v.shape)}' for k, v in checked.items())}: {root_cause(exc)}",
                           hint="Check the input values (ranges, ids) against what the model expects.") from exc

    def check_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Return the feeds as arrays, or raise an InputError that names the expected spec.

        This runs on every call, so the common case (a dict of right-typed arrays) is one
        pass over precomputed (name, dtype, rank, fixed dims) tuples; only a mismatch
        builds a message. Measured: about 1 us for one input.
        """
        if type(feeds) is dict and len(feeds) == len(self._checks):
            checked = {}
            for name, dtype, rank, fixed in self._checks:
                array = feeds.get(name)
                if type(array) is not np.ndarray or array.dtype != dtype or array.ndim != rank or any(
                        array.shape[axis] != size for axis, size in fixed):
                    break
                checked[name] = array
            else:
                return checked
        return self._check_feeds_slowly(feeds)

    def _check_feeds_slowly(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not isinstance(feeds, Mapping):
            raise InputError(
                f"expected feeds as a mapping of input name to array, found {type(feeds).__name__}.",
                hint=f"Call run({{name: array}}) with the inputs {describe_specs(self._inputs)}.",
            )
        expected = {spec.name for spec in self._inputs}
        missing, unknown = expected - feeds.keys(), feeds.keys() - expected
        if missing or unknown:
            found = ", ".join(sorted(map(str, feeds))) or "nothing"
            raise InputError(
                f"expected the inputs {describe_specs(self._inputs)}; found {found}"
                + (f" (missing: {', '.join(sorted(missing))})" if missing else "")
                + (f" (unknown: {', '.join(sorted(map(str, unknown)))})" if unknown else "") + ".",
                hint="Pass exactly one array per model input, keyed by input name.",
            )
        checked = {}
        for spec in self._inputs:
            array = feeds[spec.name]
            if not isinstance(array, np.ndarray):
                try:
                    array = np.asarray(array)
                except (ValueError, TypeError) as exc:  # ragged nesting, objects numpy cannot hold
                    raise InputError(f"input {spec.describe()} expected an array, found a {type(array).__name__} "
                                     f"that numpy cannot turn into one ({first_line(exc, 120)}).",
                                     hint=f"Pass a numpy array of shape [{','.join(map(str, spec.shape or '?'))}] "
                                          f"and dtype {spec.dtype}.") from exc
            check_array(spec, array)
            checked[spec.name] = array
        return checked

    # ----- what a backend implements -----------------------------------------------

    def _load(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        raise NotImplementedError

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _close(self) -> None:
        """Release sessions, interpreters and buffers."""

    def _info(self) -> dict[str, Any]:
        return {}

    # ----- helpers -----------------------------------------------------------------

    def _source_exists(self) -> bool:
        return Path(self.model_path).is_file()

    def _require_loaded(self) -> None:
        if self._closed:
            raise self._closed_error()
        if not self.loaded:
            raise KitError(f"runtime '{self.name}' for {self.model_path} is not loaded.",
                           hint="Call load() first, or use it as a context manager.")

    def _closed_error(self) -> RunError:
        return RunError(f"runtime '{self.name}' for {self.model_path} was closed; this call did not run.",
                        hint="Close a shared runtime only after every thread's run() has returned, or load() it "
                             "again.")


def _refuse_non_finite(feeds: dict[str, np.ndarray], names: frozenset[str], reason: str) -> None:
    """A model that would turn NaN and Inf into ordinary numbers answers with confidence: refuse them."""
    for name in names:
        array = feeds[name]
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            count = array.size - int(np.isfinite(array).sum())
            raise InputError(f"input {name!r} holds {count} NaN or infinite value{'s' if count > 1 else ''}; {reason}, "
                             "and would return a finite, confident answer.",
                             hint="Replace or drop them before feeding (check the preprocessing, or np.nan_to_num).")


def _fast_check(spec: TensorSpec) -> tuple:
    """(name, numpy dtype, rank, [(axis, fixed size)]) for the per-call feed check."""
    dtype = np.dtype(spec.dtype) if spec.dtype in DTYPES else None  # None: no array matches; the slow path explains
    rank = -1 if spec.shape is None else len(spec.shape)
    return spec.name, dtype, rank, [(axis, size) for axis, size in enumerate(spec.shape or ()) if isinstance(size, int)]
