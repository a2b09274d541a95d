"""kit adopt: provenance for a model the kit did not export (a third-party ONNX or TFLite file),
so run --image, eval, quantize, bench and bundle treat it as one of the kit's own.

The copy at the output holds the same graph and weights; only the kit's metadata is added
(ONNX metadata_props, a TFLite metadata buffer), and the adopted model is checked to give the
original's outputs exactly on random inputs before anything is written.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from kit.export.result import task_settings

from kit import tasks
from kit.core import provenance
from kit.core.errors import InputError, ModelFileError, ValidationError
from kit.core.fileio import (
    atomic_output,
    check_output_path,
    external_data_files,
    sha256_of,
)
from kit.core.specs import batch_feeds

FORMATS = {".onnx": "onnx", ".tflite": "tflite"}


@dataclass
class AdoptResult:
    path: Path
    source: Path
    format: str
    precision: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    preprocess: dict[str, Any] | None
    task: dict[str, Any] | None
    seconds: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "source": str(self.source), "format": self.format,
                "precision": self.precision, "inputs": self.inputs, "outputs": self.outputs,
                "preprocess": self.preprocess, "task": self.task, "seconds": round(self.seconds, 3),
                "notes": self.notes}


def adopt(model: str | os.PathLike, output: str | os.PathLike, *, preprocess: str | None = None,
          task: Any = None) -> AdoptResult:
    """A copy of ``model`` at ``output`` carrying the kit's provenance: its inputs and outputs,
    ``preprocess`` (``key=value,...`` text, for image inputs) and ``task`` (a kit.tasks Task or
    its dict). Nothing is written when the model cannot be read or the copy differs."""
    from kit.runtimes.registry import load

    from kit.data.preprocess import Preprocess

    started = time.perf_counter()
    model, output = Path(model), Path(output)
    kind = FORMATS.get(model.suffix.lower())
    if kind is None:
        raise InputError(f"expected an .onnx or .tflite model to adopt, found {model}.",
                         hint="Engines and PyTorch files are adopted by exporting their source with kit export.")
    if not model.is_file():
        raise ModelFileError(f"model file {model} does not exist.", hint="Check the path.")
    if output.suffix.lower() != model.suffix.lower():
        raise InputError(f"expected the output to be a {model.suffix} file like the model, found {output}.",
                         hint=f"Name it {model.stem}.adopted{model.suffix}.")
    check_output_path(output, model)
    recorded = provenance.read(model)
    if recorded and recorded.get("stage") != "adopt":
        raise InputError(f"{model} was made by the kit ({recorded.get('stage')}) and already records its "
                         "provenance.", hint="Give --task/--labels/--preprocess to kit run or kit eval instead, or "
                                             "export it again with them.")
    settings = task_settings(task)
    with load(model, threads=1) as original:
        inputs, outputs = original.inputs, original.outputs
        feeds = batch_feeds(inputs)
        expected = original.run(feeds)
    if settings:
        _check_task(tasks.from_dict(settings), expected)
    stated = Preprocess.for_input(inputs[0], preprocess).to_dict() if preprocess else None
    record = provenance.new(
        stage="adopt", format=kind, precision=_precision(model, kind), source=str(model.resolve()),
        source_kind="adopted", source_sha256=sha256_of(model),
        inputs=[spec.to_dict() for spec in inputs], outputs=[spec.to_dict() for spec in outputs],
        preprocess=stated, task=settings)
    with atomic_output(output) as tmp:
        _write(model, tmp, kind, record)
        with load(tmp, threads=1) as adopted:
            got = adopted.run(feeds)
        for name, array in expected.items():
            if not np.array_equal(array, got[name], equal_nan=array.dtype.kind in "fc"):
                raise ValidationError(f"the adopted copy of {model} gives other outputs than the original ({name}).",
                                      hint="Nothing was written. Report this: adopting adds metadata only.")
    hint = ("no --preprocess: kit run --image and image data need one (e.g. size=224,mean=0.485/0.456/0.406,"
            "std=0.229/0.224/0.225).")
    notes = [] if stated or len(inputs) != 1 else [hint]
    return AdoptResult(output, model, kind, record["precision"], record["inputs"], record["outputs"], stated,
                       settings, time.perf_counter() - started, notes)


def _check_task(task, outputs: dict[str, np.ndarray]) -> None:
    """The task must read the model's outputs (a detector's layout, a classifier's scores), and
    a classifier's labels must number its classes."""
    task.results(outputs)  # raises, naming what it expected, when the outputs are not the task's
    if task.name == "classify" and task.labels:
        classes = task.scores(outputs).shape[-1]
        if classes != len(task.labels):
            raise InputError(f"--labels names {len(task.labels)} classes; the model scores {classes}.",
                             hint="One label per class, class 0 first.")


def _precision(model: Path, kind: str) -> str:
    if kind == "onnx":
        import onnx

        from kit.core.onnx_ops import QUANTIZED_OPS

        graph = onnx.load(str(model), load_external_data=False).graph
        if any(node.op_type in QUANTIZED_OPS for node in graph.node):
            return "int8"
        fp16 = any(init.data_type == onnx.TensorProto.FLOAT16 for init in graph.initializer)
        return "fp16" if fp16 else "fp32"
    return _tflite_precision(model.read_bytes())


def _tflite_precision(flatbuffer: bytes) -> str:
    """int8 when activations are quantized (a QUANTIZE op, or int8 inputs), int8-dynamic when only
    weights are, fp16 for float16 weights, else fp32: the names kit export's TFLite variants use."""
    from ai_edge_litert import schema_py_generated as schema
    from kit.export.tflite_int8 import named_operators

    graph, ops = named_operators(flatbuffer)
    names = {name for name, _ in ops}
    types = {tensor.type for tensor in graph.tensors}
    inputs = {graph.tensors[index].type for index in graph.inputs}
    quantized = {schema.TensorType.INT8, schema.TensorType.UINT8}
    if "QUANTIZE" in names or inputs & quantized:
        return "int8"
    if types & quantized:
        return "int8-dynamic"
    return "fp16" if schema.TensorType.FLOAT16 in types else "fp32"


def _write(model: Path, path: Path, kind: str, record: dict[str, Any]) -> None:
    if kind == "tflite":
        shutil.copyfile(model, path)
        provenance.write_tflite(path, record)
        return
    import onnx

    proto = onnx.load(str(model), load_external_data=False)
    if external_data_files(proto, model, strict=False):
        raise InputError(f"{model} keeps its weights in external data files; adopting copies one file.",
                         hint="Save it as one file first: onnx.save(onnx.load(path), path2).")
    provenance.attach_to_onnx(proto, record)
    onnx.save(proto, str(path))
