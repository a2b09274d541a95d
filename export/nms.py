"""Non-maximum suppression inside an ONNX detector's graph, for ONNX Runtime.

The exported graph ends at the raw head (Ultralytics-style [N, 4 + classes, anchors] or SSD
boxes and scores). Appending ONNX's NonMaxSuppression makes a self-contained model whose
outputs are the detections themselves, in the layout TensorRT's EfficientNMS gives
(``num_detections`` [N], ``detection_boxes`` [N, K, 4] x1 y1 x2 y2, ``detection_scores``
[N, K], ``detection_classes`` [N, K]), so any ONNX Runtime program can use it without the
kit. It does what the host's NMS does (kit.tasks.detect): each candidate keeps its best class,
suppression is per class, and the best ``max_detections`` of each image are kept, so both
give the same boxes. Rows past ``num_detections`` are padding (score -1).

Every added node's name starts with NODE_PREFIX, which is how quantization keeps them in
float and TensorRT builds recognise them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kit.core.errors import InputError
from kit.tasks.detect import Detect

NODE_PREFIX = "kit_nms/"
OUTPUTS = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")
MIN_OPSET = 13  # Unsqueeze/ReduceSum/Slice take their axes as inputs from opset 13


def graph_nms_nodes(model) -> list[str]:
    """The names of the nodes append_nms added to ``model`` (an onnx ModelProto)."""
    return [node.name for node in model.graph.node if node.name.startswith(NODE_PREFIX)]


def append_nms(model, task: Detect, head: str, classes: int | None = None):
    """``model`` (an onnx ModelProto ending at a raw ``head``: ultralytics or ssd) with NMS
    appended; its raw outputs are replaced by OUTPUTS."""
    import onnx
    from onnx import TensorProto, helper

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        raise InputError(f"NMS in the graph needs opset {MIN_OPSET} or later; the model is opset {opset}.",
                         hint=f"Export with --opset {MIN_OPSET} or later, or leave NMS to the host.")
    if graph_nms_nodes(model):
        raise InputError("the model already has the kit's NMS in its graph.", hint="Give the model exported "
                         "without --nms graph.")
    graph = model.graph
    nodes, constants = [], []

    def const(name: str, value, dtype=np.int64) -> str:
        constants.append(onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype), NODE_PREFIX + name))
        return NODE_PREFIX + name

    def node(op: str, inputs: list[str], name: str, outputs: int = 1, **attributes) -> list[str]:
        names = [NODE_PREFIX + name + (f"_{i}" if outputs > 1 else "") for i in range(outputs)]
        nodes.append(helper.make_node(op, inputs, names, name=NODE_PREFIX + name, **attributes))
        return names

    if head == "ultralytics":
        boxes, scores = _ultralytics_parts(graph, classes, const, node)
    elif head == "ssd":
        boxes, scores = _ssd_parts(graph, task, const, node)
    else:
        raise InputError(f"NMS in the graph takes an ultralytics or ssd head, found {head!r}.",
                         hint="A decoded head already went through NMS.")
    # each candidate keeps its best class only, the first of equals as numpy's argmax on the
    # host: the others score -1
    (best,) = node("ArgMax", [scores], "best", axis=1, keepdims=1)  # [N, 1, A]
    (scores_shape,) = node("Shape", [scores], "scores_shape")
    (classes,) = node("Gather", [scores_shape, const("one", 1)], "class_count")
    (ids,) = node("Range", [const("class_start", 0), classes, const("class_step", 1)], "class_ids")
    (ids,) = node("Unsqueeze", [ids, const("id_axes", [0, 2])], "class_column")  # [1, C, 1]
    (is_best,) = node("Equal", [ids, best], "is_best")
    (scores,) = node("Where", [is_best, scores, const("minus_one", -1.0, np.float32)], "best_only")
    (selected,) = node("NonMaxSuppression", [boxes, scores, const("per_class", [task.max_detections]),
                                             const("iou", [task.iou_threshold], np.float32),
                                             const("score", [task.score_threshold], np.float32)], "nms")
    column = {}
    for index, what in enumerate(("batch", "class", "anchor")):
        (column[what],) = node("Gather", [selected, const(f"column_{what}", index)], f"{what}_of_selected", axis=1)
    (where,) = node("Gather", [selected, const("batch_and_anchor", [0, 2])], "batch_anchor", axis=1)
    (chosen_boxes,) = node("GatherND", [boxes, where], "chosen_boxes")
    (chosen_scores,) = node("GatherND", [scores, selected], "chosen_scores")
    # one row per image: the selections' scores where they belong to it, -1 elsewhere; TopK
    # then gives each image its best max_detections in score order
    (shape,) = node("Shape", [boxes], "boxes_shape")
    (images,) = node("Gather", [shape, const("zero", 0)], "image_count")
    (image_ids,) = node("Range", [const("start", 0), images, const("step", 1)], "image_ids")
    (image_col,) = node("Unsqueeze", [image_ids, const("axis1", [1])], "image_column")
    (batch_row,) = node("Unsqueeze", [column["batch"], const("axis0", [0])], "batch_row")
    (mine,) = node("Equal", [image_col, batch_row], "belongs")
    (score_row,) = node("Unsqueeze", [chosen_scores, const("axis0_scores", [0])], "score_row")
    (table,) = node("Where", [mine, score_row, const("padding", -1.0, np.float32)], "per_image")
    (selection_shape,) = node("Shape", [selected], "selection_shape")
    (count,) = node("Slice", [selection_shape, const("n0", [0]), const("n1", [1])], "selection_count")
    (k,) = node("Min", [count, const("max_detections", [task.max_detections])], "k")
    top_scores, top_index = node("TopK", [table, k], "top", outputs=2, axis=1, largest=1, sorted=1)
    (found,) = node("Greater", [top_scores, const("minus_half", -0.5, np.float32)], "found")
    (found_int,) = node("Cast", [found], "found_int", to=TensorProto.INT64)
    nodes.append(helper.make_node("ReduceSum", [found_int, const("sum_axis", [1])], ["num_detections"],
                                  name=NODE_PREFIX + "num_detections", keepdims=0))
    nodes.append(helper.make_node("Gather", [chosen_boxes, top_index], ["detection_boxes"],
                                  name=NODE_PREFIX + "detection_boxes", axis=0))
    nodes.append(helper.make_node("Identity", [top_scores], ["detection_scores"],
                                  name=NODE_PREFIX + "detection_scores"))
    nodes.append(helper.make_node("Gather", [column["class"], top_index], ["detection_classes"],
                                  name=NODE_PREFIX + "detection_classes", axis=0))
    graph.node.extend(nodes)
    graph.initializer.extend(constants)
    del graph.output[:]
    graph.output.extend([
        helper.make_tensor_value_info("num_detections", TensorProto.INT64, ["batch"]),
        helper.make_tensor_value_info("detection_boxes", TensorProto.FLOAT, ["batch", "detections", 4]),
        helper.make_tensor_value_info("detection_scores", TensorProto.FLOAT, ["batch", "detections"]),
        helper.make_tensor_value_info("detection_classes", TensorProto.INT64, ["batch", "detections"])])
    onnx.checker.check_model(model)
    return model


def _ultralytics_parts(graph, classes, const, node) -> tuple[str, str]:
    """[N, 4 + C, A] (or [N, A, 4 + C]) of centre and size -> boxes [N, A, 4] corners, scores [N, C, A]."""
    if len(graph.output) != 1:
        raise InputError(f"an Ultralytics head has one output [N, 4 + classes, anchors]; the model has "
                         f"{len(graph.output)} ({', '.join(o.name for o in graph.output)}).",
                         hint="Name the head with --head (ssd for boxes and scores), or leave NMS to the host.")
    (output,) = graph.output
    dims = [d.dim_value or None for d in output.type.tensor_type.shape.dim]
    if len(dims) != 3 or dims[1] is None or dims[2] is None:
        raise InputError(f"NMS in the graph needs the head's output [N, 4 + classes, anchors] with fixed sizes; "
                         f"{output.name} is {dims}.", hint="Leave NMS to the host.")
    raw = output.name
    transposed = dims[2] == 4 + classes if classes else dims[1] > dims[2]  # as kit.tasks.detect reads it
    if transposed:
        (raw,) = node("Transpose", [raw], "to_channels_first", perm=[0, 2, 1])
    axis = const("channel_axis", [1])
    (centre,) = node("Slice", [raw, const("c0", [0]), const("c2", [2]), axis], "centre")
    (size,) = node("Slice", [raw, const("s2", [2]), const("s4", [4]), axis], "size")
    (scores,) = node("Slice", [raw, const("k4", [4]), const("k_end", [2**62]), axis], "class_scores")
    (half,) = node("Mul", [size, const("half", 0.5, np.float32)], "half_size")
    (top_left,) = node("Sub", [centre, half], "top_left")
    (bottom_right,) = node("Add", [centre, half], "bottom_right")
    (corners,) = node("Concat", [top_left, bottom_right], "corners", axis=1)
    (boxes,) = node("Transpose", [corners], "boxes", perm=[0, 2, 1])
    return boxes, scores


def _ssd_parts(graph, task: Detect, const, node) -> tuple[str, str]:
    """boxes [N, A, 4] as they are; scores [N, A, C] -> [N, C, A], the background class dropped."""
    outputs = {o.name: [d.dim_value or None for d in o.type.tensor_type.shape.dim] for o in graph.output}
    boxes = [name for name, dims in outputs.items() if len(dims) == 3 and dims[2] == 4]
    scores = [name for name, dims in outputs.items() if len(dims) == 3 and dims[2] != 4]
    if len(boxes) != 1 or len(scores) != 1 or len(outputs) != 2:
        raise InputError(f"NMS in the graph needs SSD outputs boxes [N, A, 4] and scores [N, A, classes]; found "
                         f"{', '.join(f'{n}{d}' for n, d in outputs.items())}.", hint="Leave NMS to the host.")
    (score_name,) = scores
    if task.background:
        (score_name,) = node("Slice", [score_name, const("b1", [1]), const("b_end", [2**62]), const("b_axis", [2])],
                             "drop_background")
    (transposed,) = node("Transpose", [score_name], "class_scores", perm=[0, 2, 1])
    return boxes[0], transposed


def write_with_nms(source: Path, output: Path, task: Detect, head: str) -> list[str]:
    """``source`` with NMS appended, saved to ``output``; the added nodes' names."""
    import onnx

    model = append_nms(onnx.load(str(source)), task, head, len(task.labels) or None)
    onnx.save(model, str(output))
    return graph_nms_nodes(model)
