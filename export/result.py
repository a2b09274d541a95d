"""What every exporter returns: one result type for every format, so the CLI, the demo and a
user's script read an export the same way whatever it produced."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.check.metrics import OutputDiff
from kit.core.specs import TensorSpec

# atol, rtol an export with fp16 weights is held to against float32 (TFLite's fp16 recipe, OpenVINO's
# compressed IR): the weights are rounded to f16, the arithmetic is not.
FP16_TOLERANCE = (1e-2, 1e-2)

# The fields each format fills in beyond the common ones, in the order its JSON lists them.
FORMAT_FIELDS = {
    "onnx": ("exporter", "opset", "simplified"),
    "tflite": ("precision", "layout", "calibration", "accuracy"),
    "openvino": ("precision",),
}


@dataclass
class ExportResult:
    path: Path
    format: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    validation: list[OutputDiff]  # the worst error per output over every validation batch
    size_bytes: int
    seconds: float
    notes: list[str] = field(default_factory=list)  # what the user should know about this export
    batches: list[int] = field(default_factory=list)  # the batch sizes validated (when more than one can run)
    task: dict[str, Any] | None = None  # what the outputs mean, as recorded (kit.tasks)
    # ONNX
    exporter: str | None = None  # which of torch's exporters produced the file
    opset: int | None = None
    simplified: bool = False
    # TFLite, OpenVINO
    precision: str = "fp32"
    layout: str | None = None  # of the inputs: nhwc or nchw
    calibration: dict[str, Any] | None = None
    accuracy: dict[str, Any] | None = None  # top-1 of PyTorch and of the export on --eval data

    def to_dict(self) -> dict[str, Any]:
        validation = {"batches": self.batches} if self.batches else {}
        return {"path": str(self.path), "format": self.format,
                **{name: getattr(self, name) for name in FORMAT_FIELDS.get(self.format, ())},
                "inputs": [s.to_dict() for s in self.inputs], "outputs": [s.to_dict() for s in self.outputs],
                "validation": {**validation, "outputs": [d.to_dict() for d in self.validation]},
                "size_bytes": self.size_bytes, "seconds": round(self.seconds, 3), "notes": list(self.notes),
                **({"task": self.task} if self.task else {})}


def task_settings(task: Any) -> dict[str, Any] | None:
    """What an export records of the model's task: a kit.tasks Task or its dict (checked by
    building it), or None."""
    if task is None:
        return None
    from kit import tasks

    return (task if hasattr(task, "to_dict") else tasks.from_dict(dict(task))).to_dict()
