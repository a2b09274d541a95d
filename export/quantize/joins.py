"""Concat nodes that join tensors of very different ranges, which one int8 scale cannot hold.

A QDQ Concat shares one scale across its inputs. A detector's output often joins box
coordinates in pixels (0-640) with class scores (0-1): under the boxes' scale the scores get
a handful of the 256 steps, every confidence rounds to the same few values and the mAP
ranking collapses (the "INT8 YOLO at 0 mAP" reports). The per-layer diagnosis cannot see it
either: SQNR over the joined tensor is dominated by the large part. So ranges are measured
on calibration samples in the float graph, and such a Concat stays in float.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kit.core.specs import TensorSpec
from kit.data.batching import fixed_batch
from kit.data.calibration import FeedReader
from kit.data.datasets import Dataset

# The smaller input would get fewer than 256 / 16 = 16 int8 steps under the larger one's scale.
MIXED_RANGE_RATIO = 16.0
RANGE_SAMPLES = 32


@dataclass(frozen=True)
class MixedJoin:
    node: str
    ranges: dict[str, float]  # each activation input's largest magnitude on the samples

    @classmethod
    def of(cls, node: str, ranges: dict[str, float]) -> MixedJoin | None:
        """The join when its inputs' magnitudes differ by MIXED_RANGE_RATIO or more, else None."""
        low, high = min(ranges.values()), max(ranges.values())
        return cls(node, ranges) if low > 0 and high / low >= MIXED_RANGE_RATIO else None

    @property
    def steps(self) -> int:
        """The int8 steps the smallest input keeps under the shared scale."""
        return max(1, int(256 * min(self.ranges.values()) / max(self.ranges.values())))

    def describe(self) -> str:
        ranges = ", ".join(f"{value:.3g}" for value in self.ranges.values())
        return (f"{self.node} joins tensors of magnitude {ranges}: one int8 scale would leave the "
                f"smallest {self.steps} of 256 steps")


def mixed_range_joins(graph_path: Path, dataset: Dataset, inputs: list[TensorSpec],
                      samples: int = RANGE_SAMPLES) -> list[MixedJoin]:
    """The named Concat nodes of the float graph whose activation inputs differ in magnitude by
    MIXED_RANGE_RATIO or more on ``samples`` calibration samples."""
    import onnx
    import onnxruntime

    proto = onnx.load(str(graph_path))
    constant = {init.name for init in proto.graph.initializer} | {
        out for node in proto.graph.node if node.op_type == "Constant" for out in node.output}
    joins = {node.name: [name for name in node.input if name and name not in constant]
             for node in proto.graph.node if node.op_type == "Concat" and node.name}
    joins = {name: tensors for name, tensors in joins.items() if len(set(tensors)) > 1}
    if not joins:
        return []
    watched = sorted({tensor for tensors in joins.values() for tensor in tensors})
    outputs = {output.name for output in proto.graph.output}
    proto.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name)
                              for name in watched if name not in outputs)
    with tempfile.TemporaryDirectory() as scratch:
        augmented = Path(scratch) / "ranges.onnx"
        onnx.save(proto, str(augmented))
        session = onnxruntime.InferenceSession(str(augmented), providers=["CPUExecutionProvider"])
    largest = dict.fromkeys(watched, 0.0)
    # A batch axis fixed at 1 streams as a free one in FeedReader (ORT's calibration wants it so);
    # this plain session takes the model's own batch.
    batch = 1 if fixed_batch(inputs) == 1 else 16
    for feeds in FeedReader(dataset, batch_size=batch, limit=samples, inputs=inputs):
        for name, value in zip(watched, session.run(watched, feeds)):
            if np.issubdtype(value.dtype, np.floating) and value.size:
                largest[name] = max(largest[name], float(np.max(np.abs(value))))
    found = (MixedJoin.of(node, {tensor: largest[tensor] for tensor in tensors}) for node, tensors in joins.items())
    return [join for join in found if join]
