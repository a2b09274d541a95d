"""Per-layer diagnosis of a QDQ model against its float model, with ONNX Runtime's qdq_loss_debug.

Every quantized activation tensor gets:
- ``accumulated_sqnr_db``: the float model's tensor vs the QDQ model's (all noise up to here);
- ``local_sqnr_db``: before vs after its own Quantize/Dequantize pair in the QDQ model;
- ``drop_db``: how much accumulated SQNR its producer loses, from the worst of the
  producer's activation inputs to this tensor. The ranking is by this drop, worst first:
  accumulated error only grows along a graph (it would blame the last layers), and the
  local SQNR is distorted where ONNX Runtime fuses Conv+Relu (the "pre-QDQ" tensor is the
  Conv output with its negatives). Measured on a digits CNN with one outlier channel, the
  depthwise conv after it lost 39 dB while every other node lost under 10.

``keep_in_float`` names the nodes that must be excluded from quantization so the
producer runs in float on a float input: the producer, and the chain above it through
element-wise activations up to the previous compute node (ONNX Runtime quantizes a
Conv's output when the Relu after it is excluded, so excluding only the Relu is not enough).
"""

from __future__ import annotations

import math
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from kit.core.errors import KitError, root_cause
from kit.core.specs import TensorSpec
from kit.data.calibration import FeedReader
from kit.data.datasets import Dataset


@dataclass(frozen=True)
class LayerError:
    tensor: str
    producer: str | None  # the float model's node writing the tensor (None for a graph input)
    op_type: str | None
    local_sqnr_db: float
    accumulated_sqnr_db: float | None
    drop_db: float | None  # accumulated SQNR lost across the producer
    keep_in_float: list[str]  # nodes to exclude so the producer runs in float on float input

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("local_sqnr_db", "accumulated_sqnr_db", "drop_db"):
            if data[key] is not None and math.isinf(data[key]):
                data[key] = "inf"
        return data


def layer_errors(float_model: str | Path, qdq_model: str | Path, dataset: Dataset, *,
                 samples: int = 32, inputs: list[TensorSpec] | None = None) -> list[LayerError]:
    """SQNR per quantized activation, the largest drop first. ``inputs`` (the models' input specs,
    when the Dataset's are not) set the batch size a fixed batch axis needs."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    graph = onnx.load(str(float_model), load_external_data=False).graph
    try:
        with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            activations = {}
            for role, path in (("float", float_model), ("qdq", qdq_model)):
                augmented = Path(scratch) / f"{role}.onnx"
                modify_model_output_intermediate_tensors(str(path), str(augmented))
                reader = FeedReader(dataset, limit=samples, inputs=inputs)
                activations[role] = collect_activations(str(augmented), reader,
                                                        execution_providers=["CPUExecutionProvider"])
        matching = create_activation_matching(activations["qdq"], activations["float"])
        for match in matching.values():
            match.setdefault("float", None)
        errors = compute_activation_error(matching)
    except Exception as exc:
        raise KitError(f"per-layer comparison failed: {root_cause(exc)}",
                       hint="The second model must be a QDQ model quantized from the first.") from exc
    accumulated = {t: e.get("xmodel_err") for t, e in errors.items()}
    producers = {out: node for node in graph.node for out in node.output}
    layers = []
    for tensor, error in errors.items():
        producer = producers.get(tensor)
        layers.append(LayerError(
            tensor, producer.name if producer else None, producer.op_type if producer else None,
            float(error["qdq_err"]), accumulated.get(tensor), _drop(producer, tensor, accumulated, producers),
            _float_chain(producer, producers) if producer else []))
    return sorted(layers, key=lambda l: (-(l.drop_db if l.drop_db is not None else -math.inf),
                                         l.accumulated_sqnr_db if l.accumulated_sqnr_db is not None else math.inf))


# Single-input element-wise ops that ONNX Runtime's QDQ quantizer fuses with the compute op before them.
_COMPUTE = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


def head_layers(graph_path: str | Path) -> list[str]:
    """The compute nodes (Conv, Gemm, MatMul) that write the graph's outputs through no other
    compute node: only the decoding after them (Sigmoid, Exp, Reshape, Concat, ...)."""
    import onnx

    graph = onnx.load(str(graph_path), load_external_data=False).graph
    producers = {out: node for node in graph.node for out in node.output}
    heads, seen = [], set()
    pending = [output.name for output in graph.output]
    while pending:
        node = producers.get(pending.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in _COMPUTE:
            heads.append(node.name)
        else:
            pending += list(node.input)
    return sorted(heads)


_ELEMENTWISE = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Identity"}


def _drop(producer, tensor: str, accumulated: dict[str, float | None], producers: dict) -> float | None:
    if producer is None or accumulated.get(tensor) is None:
        return None
    before = [sqnr for sqnr in (_sqnr_at(name, accumulated, producers) for name in producer.input) if sqnr is not None]
    return min(before) - accumulated[tensor] if before else None


def _sqnr_at(tensor: str, accumulated: dict[str, float | None], producers: dict, depth: int = 8) -> float | None:
    """The accumulated SQNR of a tensor, or of the nearest measured tensor above it (fused ones have none)."""
    while accumulated.get(tensor) is None:
        node = producers.get(tensor)
        if node is None or not node.input or depth == 0:
            return None
        tensor, depth = node.input[0], depth - 1
    return accumulated[tensor]


def _float_chain(producer, producers: dict) -> list[str]:
    """The producer, then up through element-wise ops to (and including) the previous compute node."""
    chain, node = [producer.name], producer
    while node.input and node.input[0] in producers:
        node = producers[node.input[0]]
        chain.append(node.name)
        if node.op_type not in _ELEMENTWISE:
            break
    return chain
