"""PyTorch -> ONNX: export with the dynamo exporter (TorchScript exporter as fallback),
check, validate against PyTorch on ONNX Runtime, optionally simplify with onnxslim,
record provenance, and only then move the file into place.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kit.check.metrics import compare_outputs, worst
from kit.check.runner import run
from kit.core import provenance
from kit.core.errors import ExportError, InputError, ValidationError, first_line, reraise_interrupt, root_cause
from kit.core.fileio import atomic_output, check_output_path, disk_full, model_files, model_size, same_file
from kit.core.quiet import silenced
from kit.export.result import ExportResult, task_settings
from kit.core.specs import InputShape, TensorSpec, parse_dynamic_axes, parse_input_shapes, random_feeds
from kit.data.preprocess import Preprocess
from kit.data.sources import TorchSource, input_specs, load_torch_source, source_from_module

EXPORTERS = ("auto", "dynamo", "torchscript")
DYNAMO_MIN_OPSET = 18  # dynamo silently stays at 18 when asked for less
TORCHSCRIPT_DEFAULT_OPSET = 17
EXTERNAL_DATA_BYTES = 1_900_000_000  # protobuf's 2 GB limit, with room for the graph


def export_onnx(
    source: str | os.PathLike | TorchSource | Any,
    output: str | os.PathLike,
    *,
    input_shapes: list[str] | Mapping[str | None, InputShape] | None = None,
    static: bool = False,
    dynamic: list[str] | None = None,
    opset: int | None = None,
    weights: str | None = None,
    allow_pickle: bool = False,
    simplify: bool = False,
    preprocess: str | Preprocess | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    exporter: str = "auto",
    task: Any = None,
    nms: str = "host",
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export ``source`` (a .pt/.pt2 path, ``file.py:factory``, or a torch.nn.Module in memory) to ``output``.

    ``nms="graph"`` (a detector) appends ONNX NonMaxSuppression after the validated head
    (kit.export.nms), checked to give the boxes the host's NMS gives.

    Raises ValidationError, leaving nothing at ``output``, when ONNX Runtime's outputs
    differ from PyTorch's beyond ``atol + rtol * |reference|`` on any validation batch.
    """
    started = time.perf_counter()
    say = progress or (lambda message: None)
    task = task_settings(task)  # bad task settings fail before the work
    _check_nms(nms, task)
    if exporter not in EXPORTERS:
        raise InputError(f"expected exporter among {', '.join(EXPORTERS)}, found {exporter!r}.", hint="Use auto.")
    output = Path(output)
    if output.suffix.lower() != ".onnx":
        raise InputError(f"expected an output path ending in .onnx, found {output}.", hint="Name it model.onnx.")
    inputs = [None if isinstance(source, TorchSource) or _is_module(source) else source, weights]
    check_output_path(output, *inputs)

    say("loading the PyTorch model")
    if _is_module(source):
        source = source_from_module(source)
    elif not isinstance(source, TorchSource):
        source = load_torch_source(str(source), weights=weights, allow_pickle=allow_pickle)
    if isinstance(input_shapes, str):
        input_shapes = [input_shapes]
    shapes = parse_input_shapes(input_shapes) if isinstance(input_shapes, (list, tuple)) else input_shapes
    specs, examples = input_specs(source, shapes, static=static, dynamic_axes=parse_dynamic_axes(dynamic))
    preprocess_spec = _preprocess_for(specs, preprocess)

    from kit.runtimes.pytorch import TorchRuntime

    _check_opset(opset)
    reference = TorchRuntime.from_source(source, specs)
    output_names = [spec.name for spec in reference.outputs]
    notes: list[str] = []
    replaced_companions = _companions_of(output)
    with atomic_output(output) as tmp:
        used, opset_used = _export(source, specs, examples, output_names, tmp, opset, exporter, notes, say)
        if opset is not None and opset_used != opset:
            notes.append(f"asked for opset {opset}; the {used} exporter wrote opset {opset_used}.")
        _name_dynamic_axes(tmp, specs)
        say("checking the ONNX graph")
        _check(tmp)
        runs, batches = _validation_runs(specs, examples)
        say("validating against PyTorch on ONNX Runtime")
        validation, onnx_inputs, onnx_outputs = _validate(tmp, reference, specs, runs, atol, rtol, used, notes)
        simplified = False
        if simplify:
            say("simplifying with onnxslim")
            _simplify(tmp)
            validation, onnx_inputs, onnx_outputs = _validate(tmp, reference, specs, runs, atol, rtol, "onnxslim",
                                                              notes)
            simplified = True
        if nms == "graph":
            say("appending NonMaxSuppression to the graph")
            onnx_outputs, task = _append_nms(tmp, task, specs, runs, atol, notes)
        _write_provenance(tmp, source, used, opset_used, onnx_inputs, onnx_outputs, preprocess_spec,
                          validation, atol, rtol, simplified, task)
    _remove_stale_companions(output, replaced_companions, inputs)
    size = model_size(output)
    return ExportResult(output, "onnx", onnx_inputs, onnx_outputs, validation, size, time.perf_counter() - started,
                        notes, batches, task, exporter=used, opset=opset_used, simplified=simplified)


def _companions_of(output: Path) -> list[Path]:
    """External data files that the model now at ``output`` references and that are named after it
    (``model.onnx.data``): the export replaces that model, so they are its to replace or remove."""
    return [p for p in model_files(output)[1:] if p.name.startswith(output.name + ".")] if output.is_file() else []


def _remove_stale_companions(output: Path, replaced: list[Path], inputs: list) -> None:
    """Remove the old model's external data that the new model does not use (a single-file export
    over an external-data one would otherwise leave gigabytes that bench and inspect count)."""
    kept = set(model_files(output))
    for stale in replaced:
        if stale not in kept and stale.is_file() and not any(same_file(stale, i) for i in inputs if i):
            stale.unlink()


def _is_module(source) -> bool:
    return hasattr(source, "forward") and hasattr(source, "state_dict")


def _check_opset(opset: int | None) -> None:
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if opset is not None and not 7 <= opset <= newest:
        raise InputError(f"expected --opset between 7 and {newest} (the newest this onnx knows), found {opset}.",
                         hint="Leave --opset out for the exporter's default.")


def _preprocess_for(specs: list[TensorSpec], preprocess: str | Preprocess | None) -> Preprocess | None:
    if preprocess is None or isinstance(preprocess, Preprocess):
        return preprocess
    return Preprocess.for_input(specs[0], preprocess)


def _export(source, specs, examples, output_names, path: Path, opset, exporter, notes, say) -> tuple[str, int]:
    import torch

    args = tuple(_example_tensor(spec, examples[spec.name], torch) for spec in specs)
    external = _parameter_bytes(source.module) > EXTERNAL_DATA_BYTES
    if exporter == "auto" and opset is not None and opset < DYNAMO_MIN_OPSET:
        exporter = "torchscript"
        notes.append(f"opset {opset} < {DYNAMO_MIN_OPSET}: used the TorchScript exporter (dynamo cannot go below).")
    if exporter in ("auto", "dynamo"):
        say("exporting with the dynamo exporter")
        try:
            with _quiet():
                torch.onnx.export(
                    source.program or source.module, args, str(path), dynamo=True,
                    dynamic_shapes=None if source.program else _dynamic_shapes(specs, torch),
                    input_names=[s.name for s in specs], output_names=output_names,
                    opset_version=opset, external_data=external, optimize=True)
            return "dynamo", _opset_of(path)
        except Exception as exc:
            reraise_interrupt(exc)  # an interrupt or a full disk must stop the export, not start the fallback
            if exporter == "dynamo" or disk_full(exc):
                raise ExportError(f"the dynamo exporter failed: {root_cause(exc)}",
                                  hint="Try --exporter torchscript.") from exc
            notes.append(f"dynamo exporter failed ({root_cause(exc)}); "
                         "used the TorchScript exporter.")
            _empty(path.parent)
    say("exporting with the TorchScript exporter")
    module = source.program.module() if source.program else source.module
    try:
        with _quiet():
            torch.onnx.export(
                module, args, str(path), dynamo=False, input_names=[s.name for s in specs],
                output_names=output_names, opset_version=opset or TORCHSCRIPT_DEFAULT_OPSET,
                dynamic_axes={s.name: s.dynamic_axes for s in specs if s.dynamic_axes} or None)
    except Exception as exc:
        reraise_interrupt(exc)
        raise ExportError(
            f"the TorchScript exporter failed: {root_cause(exc)}"
            + (f" (after: {notes[-1]})" if notes else ""),
            hint="Check that forward() takes tensors and returns tensors; try another --opset.") from exc
    return "torchscript", _opset_of(path)


def _example_tensor(spec: TensorSpec, shape: tuple[int, ...], torch):
    # Dynamic axes are traced at size >= 2: torch.export specializes sizes 0 and 1.
    dims = [max(size, 2) if isinstance(d, str) else size for d, size in zip(spec.shape, shape)]
    feeds = random_feeds([TensorSpec(spec.name, tuple(dims), spec.dtype)], seed=0)
    return torch.from_numpy(feeds[spec.name])


def _dynamic_shapes(specs: list[TensorSpec], torch):
    dims: dict[str, Any] = {}
    shapes = []
    for spec in specs:
        axes = {axis: dims.setdefault(name, torch.export.Dim(name)) for axis, name in spec.dynamic_axes.items()}
        shapes.append(axes or None)
    return tuple(shapes)


def _parameter_bytes(module) -> int:
    try:
        return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))
    except Exception:
        return 0


def _quiet():
    """The converters' own chatter (warnings, progress, log lines) says nothing to our users."""
    return silenced("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")


def _empty(folder: Path) -> None:
    """Remove a failed exporter's partial files from the private temporary folder."""
    for stale in folder.iterdir():
        stale.unlink()


def _name_dynamic_axes(path: Path, specs: list[TensorSpec]) -> None:
    """Give dynamic axes the names in ``specs`` ("batch"), everywhere they appear.

    A .pt2 program carries its own symbols (s31, ...), and the exporters differ in
    how they name output axes; users should see the names they chose.
    """
    import onnx

    model = onnx.load(str(path))
    renames = {}
    graph_inputs = {value.name: value for value in model.graph.input}
    for spec in specs:
        value = graph_inputs.get(spec.name)
        if value is None:
            continue
        for axis, name in spec.dynamic_axes.items():
            dim = value.type.tensor_type.shape.dim[axis]
            if dim.dim_param and dim.dim_param != name:
                renames[dim.dim_param] = name
    if not renames:
        return
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in renames:
                dim.dim_param = renames[dim.dim_param]
    _save(model, path)


def _opset_of(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _check(path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise ExportError(f"the exported graph fails onnx.checker: {first_line(exc)}",
                          hint="Try the other exporter (--exporter torchscript or dynamo) or another --opset.") from exc


def _validation_runs(specs, examples) -> tuple[list[dict[str, int]], list[int]]:
    """Sizes of the dynamic axes for each validation run, and the batch size of each run.

    A dynamic batch axis (whatever its name) is checked at 1 and at 3, a size the export
    never traced; other dynamic axes at their example size.
    """
    sizes = {name: examples[spec.name][axis] for spec in specs for axis, name in spec.dynamic_axes.items()}
    first = specs[0]
    if not first.dynamic_batch:
        return [sizes], [examples[first.name][0]]
    return [{**sizes, first.shape[0]: batch} for batch in (1, 3)], [1, 3]


def _validate(path, reference, specs, runs, atol, rtol, produced_by, notes):
    """Run ONNX Runtime and PyTorch on the same inputs; raise ValidationError beyond tolerance."""
    from kit.runtimes.ort import OnnxRuntime

    diffs = []
    with OnnxRuntime(path, threads=1) as candidate:
        fed = {spec.name for spec in candidate.inputs}
        dropped = [spec.name for spec in specs if spec.name not in fed]
        if dropped and not any("unused" in n for n in notes):
            notes.append(f"inputs {', '.join(dropped)} are unused by the model and were left out of the ONNX graph.")
        # Each run is its own batch size, judged on its own (the worst of them is reported).
        batches = ((random_feeds(specs, seed=seed, **sizes), None) for seed, sizes in enumerate(runs, start=1))
        run([reference, candidate], batches, consumers=[
            lambda feeds, labels, outputs: diffs.extend(compare_outputs(*outputs, atol=atol, rtol=rtol))])
        inputs, outputs = candidate.inputs, candidate.outputs
    merged = worst(diffs)
    failing = [d for d in merged if not d.passed]
    if failing:
        detail = "; ".join(f"'{d.name}' max abs error {d.max_abs:.3g}, max rel error {d.max_rel:.3g}" for d in failing)
        raise ValidationError(
            f"the ONNX model ({produced_by}) does not match PyTorch within atol={atol:g}, rtol={rtol:g}: {detail}.",
            hint="Look for data-dependent control flow or state in forward(); try the other --exporter; "
                 "raise --atol/--rtol only if the difference is acceptable. Nothing was written.")
    return merged, inputs, outputs


def _check_nms(nms: str, task: dict | None) -> None:
    if nms == "host":
        return
    if nms != "graph":
        raise InputError(f"expected --nms host or graph, found {nms!r}.", hint="host is the default.")
    if not task or task["name"] != "detect":
        raise InputError("--nms graph puts a detector's NMS in the ONNX graph; the export has no --task detect.",
                         hint="Add --task detect (and --labels), or drop --nms.")
    if task["head"] == "decoded":
        raise InputError("--nms graph needs the raw head; --head decoded outputs already went through NMS.",
                         hint="Drop --nms, or name the raw head (ultralytics or ssd).")


def _append_nms(path: Path, task: dict, specs, runs, atol: float, notes: list[str]):
    """NMS appended to the validated graph at ``path``, checked on the validation inputs against
    the host's NMS of the raw outputs: the same count, classes and boxes (within atol, scaled)."""
    from kit import tasks
    from kit.export.nms import write_with_nms
    from kit.runtimes.ort import OnnxRuntime
    from kit.tasks.detect import detect_head

    detector = tasks.from_dict(task)
    feeds = [random_feeds(specs, seed=seed, **sizes) for seed, sizes in enumerate(runs, start=1)]
    with OnnxRuntime(path, threads=1) as raw_model:
        raw = [raw_model.run(feed) for feed in feeds]
    head = detector.head if detector.head != "auto" else detect_head(raw[0])
    write_with_nms(path, path, detector, head)
    with OnnxRuntime(path, threads=1) as graph_model:
        graph = [graph_model.run(feed) for feed in feeds]
        outputs = graph_model.outputs
    for before, after in zip(raw, graph):
        for (hb, hs, hc), (gb, gs, gc) in zip(detector.detections(before), detector.detections(after)):
            scale = max(1.0, float(np.abs(hb).max()) if len(hb) else 1.0)
            if len(hb) != len(gb) or (hc != gc).any() or not np.allclose(hb, gb, atol=atol * scale) or \
                    not np.allclose(hs, gs, atol=atol):
                raise ValidationError("NMS in the graph does not give the boxes the host's NMS gives on the "
                                      f"validation inputs ({len(gb)} boxes against {len(hb)}).",
                                      hint="Export with --nms host (the default). Nothing was written.")
    notes.append(f"NMS is in the graph (ONNX NonMaxSuppression after the {head} head): outputs num_detections, "
                 "detection_boxes, detection_scores, detection_classes, checked against the host's NMS.")
    return outputs, {**task, "head": "decoded", "nms": "graph"}


def _simplify(path: Path) -> None:
    import onnx
    import onnxslim

    try:
        with _quiet():
            slim = onnxslim.slim(onnx.load(str(path)))
    except Exception as exc:
        raise ExportError(f"onnxslim failed: {type(exc).__name__}: {first_line(exc)}",
                          hint="Export without --simplify.") from exc
    _save(slim, path)
    _check(path)


def _write_provenance(path, source, exporter, opset, inputs, outputs, preprocess, validation, atol, rtol,
                      simplified, task) -> None:
    import onnx

    model = onnx.load(str(path))
    provenance.attach_to_onnx(model, provenance.new(
        **source.provenance(), stage="export", format="onnx", precision="fp32", exporter=exporter, opset=opset,
        simplified=simplified, inputs=[s.to_dict() for s in inputs], outputs=[s.to_dict() for s in outputs],
        preprocess=preprocess.to_dict() if preprocess else None,
        validation={"atol": atol, "rtol": rtol, "outputs": [d.to_dict() for d in validation]},
        task=task_settings(task)))
    _save(model, path)


def _save(model, path: Path) -> None:
    import onnx

    try:
        external = model.ByteSize() > EXTERNAL_DATA_BYTES
    except Exception:  # protobuf cannot even size a message over 2 GB
        external = True
    for stale in path.parent.glob(path.name + ".data"):
        stale.unlink()
    onnx.save_model(model, str(path), save_as_external_data=external, location=path.name + ".data")

