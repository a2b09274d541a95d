"""The one loop that runs any set of models over the same data (after Polygraphy's
Comparator.run and RunResults): export validation, quantization fidelity, compare, eval and
bench all feed their models through it.

Data is streamed: each batch is read, run by every model and handed to the consumers (a
metrics accumulator, a golden-file writer, a memory check) before the next is read, so a data
set never has to fit in memory. Outputs are kept only when asked (``keep=True``), and the
kept results can be saved and loaded, so models run in different processes (kit bench runs
each variant in its own) or on different machines are compared the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from kit.data.batching import fixed_batch, pad_batch, samples_in, to_channel_last
from kit.data.golden import save_arrays

Feeds = dict[str, np.ndarray]
Batch = tuple[Feeds, "np.ndarray | None"]  # inputs stacked along axis 0, and their labels if any
# Called after every batch with its inputs, labels and each model's outputs (in model order).
Consumer = Callable[[Feeds, "np.ndarray | None", list[Feeds]], None]
Progress = Callable[[int, int], None]  # (samples done, samples in all)


class Runnable(Protocol):
    """What the runner runs: a loaded kit Runtime, or anything with its ``inputs`` and ``run``."""

    inputs: list
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


@dataclass
class Subject:
    """One model as the runner feeds it: its layout (``"nhwc"``: 4-D inputs moved channel-last
    from the data's NCHW) and only the inputs it takes (an export may drop unused ones)."""

    model: Runnable
    layout: str | None = None

    def run(self, feeds: Feeds) -> Feeds:
        names = {spec.name for spec in self.model.inputs}
        feeds = {name: array for name, array in feeds.items() if name in names}
        return run_samples(self.model, to_channel_last(feeds) if self.layout == "nhwc" else feeds)


def run_samples(runtime: Runnable, feeds: Feeds) -> Feeds:
    """Run any number of samples (stacked along axis 0): a model whose batch axis is fixed at B
    gets them B at a time, the last batch padded by repeating its last sample, and the outputs
    of the padding are dropped."""
    batch = fixed_batch(runtime.inputs)
    count = samples_in(feeds)
    if batch is None or batch == count:
        return runtime.run(feeds)
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, count, batch):
        chunk = {name: array[start:start + batch] for name, array in feeds.items()}
        real = samples_in(chunk)
        for name, array in runtime.run(pad_batch(chunk, batch)).items():
            parts.setdefault(name, []).append(array[:real] if array.ndim and len(array) == batch else array)
    return {name: np.concatenate(arrays) for name, arrays in parts.items()}


@dataclass
class RunResults:
    """What a run kept: each model's outputs over every sample (when ``keep``), the labels, and
    how many samples went through."""

    names: list[str]
    samples: int = 0
    _outputs: list[dict[str, list[np.ndarray]]] = field(default_factory=list)
    _labels: list[np.ndarray] = field(default_factory=list)

    def add(self, outputs: list[Feeds], labels: np.ndarray | None) -> None:
        for kept, produced in zip(self._outputs, outputs):
            for name, array in produced.items():
                kept.setdefault(name, []).append(array)
        if labels is not None:
            self._labels.append(labels)

    def outputs(self, model: int | str = 0) -> Feeds:
        """One model's outputs (by position or name), concatenated along axis 0; none when the run
        did not keep them."""
        index = self.names.index(model) if isinstance(model, str) else model
        if not self._outputs:
            return {}
        return {name: np.concatenate(arrays) for name, arrays in self._outputs[index].items()}

    @property
    def labels(self) -> np.ndarray | None:
        return np.concatenate(self._labels) if self._labels else None

    def save(self, path: str | os.PathLike | Any, model: int | str = 0) -> None:
        """One model's outputs (and the labels) as an .npz: ``output.NAME`` arrays and ``labels``."""
        arrays = {f"output.{name}": array for name, array in self.outputs(model).items()}
        if self.labels is not None:
            arrays["labels"] = self.labels
        save_arrays(path, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike, name: str = "") -> RunResults:
        """Results saved by :meth:`save` (in another process, or on another machine)."""
        with np.load(path) as archive:
            outputs = {key.removeprefix("output."): archive[key] for key in archive.files if key.startswith("output.")}
            labels = archive["labels"] if "labels" in archive.files else None
        results = cls([name], samples=len(next(iter(outputs.values()))) if outputs else 0, _outputs=[{}])
        results.add([outputs], labels)
        return results


def run(models: Sequence[Runnable | Subject], batches: Iterable[Batch], *, consumers: Sequence[Consumer] = (),
        keep: bool = False, names: Sequence[str] | None = None, total: int | None = None,
        progress: Progress | None = None) -> RunResults:
    """Run every model on each batch, hand the batch and the outputs to the consumers, and keep the
    outputs when asked. ``total`` (the samples expected) is for ``progress`` only."""
    subjects = [model if isinstance(model, Subject) else Subject(model) for model in models]
    results = RunResults(list(names or [str(i) for i in range(len(subjects))]),
                         _outputs=[{} for _ in subjects] if keep else [])
    for feeds, labels in batches:
        outputs = [subject.run(feeds) for subject in subjects]
        for consume in consumers:
            consume(feeds, labels, outputs)
        results.samples += samples_in(feeds)
        if keep:
            results.add(outputs, labels)
        if progress:
            progress(results.samples, total if total is not None else results.samples)
    return results


class Stored:
    """Outputs saved earlier (a golden file), served batch by batch as if a model produced them:
    the runner compares a model with them exactly as with a second model."""

    def __init__(self, outputs: Mapping[str, np.ndarray], inputs: list):
        self.outputs, self.inputs, self.done = outputs, inputs, 0

    def run(self, feeds: Mapping[str, np.ndarray]) -> Feeds:
        count = samples_in(dict(feeds))
        rows = {name: np.asarray(array[self.done:self.done + count]) for name, array in self.outputs.items()}
        self.done += count
        return rows
