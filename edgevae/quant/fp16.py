"""FP16-typed ONNX with FP32 I/O and an FP32 island for the fusion and the scoring.

onnxconverter-common's ``convert_float_to_float16(keep_io_types=True)`` does the conversion, with
its default op block list *extended* (passing ``op_block_list`` replaces the default, see
``reference/quantization.md`` §5) by the island's seed ops and the norms, and the island's nodes
(:func:`edgevae.quant.graph.fp32_island`) as the node block list. Two measured converter faults
are repaired around it:

1. it fails when a graph output is also consumed inside the graph, so every such output first
   gets its own ``Identity`` (:func:`edgevae.quant.graph.isolate_outputs`);
2. blocking nodes does not keep the tensors *between* blocked nodes in FP32: the converter casts
   every blocked node's output to FP16 and back to FP32 before the next blocked node, so the
   fusion's intermediates are still rounded. Every such ``Cast(fp32->fp16) -> Cast(fp16->fp32)``
   round trip is removed (consumers read the FP32 tensor directly).

:func:`island_violations` then proves the result: every island node's float outputs are FP32
typed and no island input went through an FP16 round trip.

Example:
    >>> data, details = convert(open("analyze.onnx", "rb").read())   # doctest: +SKIP
    >>> details["fp32_nodes"]                                        # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from typing import Any

from edgevae.errors import QuantizationError
from edgevae.quant.graph import (
    NORM_OPS,
    SEED_OPS,
    fp32_island,
    isolate_outputs,
    name_unnamed_nodes,
)

FLOAT, FLOAT16 = 1, 10  # onnx.TensorProto.FLOAT / FLOAT16


def _cast_to(node: Any) -> int | None:
    for attr in node.attribute:
        if attr.name == "to":
            return int(attr.i)
    return None


def remove_fp16_round_trips(model: Any) -> int:
    """Drop ``Cast(->fp16) -> Cast(->fp32)`` chains whose source is FP32, in place.

    The second Cast's consumers read the first Cast's FP32 input instead; a first Cast left
    without consumers is removed too. Graph outputs are never rewired.

    Returns:
        How many round trips were removed.
    """
    graph = model.graph
    types = _elem_types(model)
    producers = {o: n for n in graph.node for o in n.output}
    outputs = {o.name for o in graph.output}
    removed: list[Any] = []
    rename: dict[str, str] = {}
    for node in graph.node:
        if node.op_type != "Cast" or _cast_to(node) != FLOAT or node.output[0] in outputs:
            continue
        first = producers.get(node.input[0])
        if first is None or first.op_type != "Cast" or _cast_to(first) != FLOAT16:
            continue
        if types.get(first.input[0]) != FLOAT:
            continue
        rename[node.output[0]] = first.input[0]
        removed.append(node)
    for node in removed:
        graph.node.remove(node)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    used = {i for n in graph.node for i in n.input} | outputs
    for node in list(graph.node):
        if node.op_type == "Cast" and _cast_to(node) == FLOAT16 and node.output[0] not in used:
            graph.node.remove(node)
    return len(removed)


def restore_fp32_outputs(model: Any) -> list[str]:
    """Make every graph output FP32 again, in place.

    With ``keep_io_types`` the converter still types an output FP16 when a *blocked* node
    produces it (it appends a ``Cast(->fp16)``). Such a Cast of an FP32 tensor becomes an
    ``Identity``; an output computed in FP16 gets a ``Cast(->fp32)``.

    Returns:
        The outputs that were repaired.
    """
    import onnx

    graph = model.graph
    types = _elem_types(model)
    producers = {o: n for n in graph.node for o in n.output}
    fixed = []
    for value in graph.output:
        if value.type.tensor_type.elem_type != FLOAT16:
            continue
        node = producers.get(value.name)
        if node is not None and node.op_type == "Cast" and types.get(node.input[0]) == FLOAT:
            node.op_type = "Identity"
            del node.attribute[:]
        else:
            inner = f"{value.name}__fp16"
            for n in graph.node:
                n.output[:] = [inner if o == value.name else o for o in n.output]
                n.input[:] = [inner if i == value.name else i for i in n.input]
            graph.node.append(
                onnx.helper.make_node(
                    "Cast", [inner], [value.name], to=FLOAT, name=f"{value.name}__to_fp32"
                )
            )
        value.type.tensor_type.elem_type = FLOAT
        fixed.append(value.name)
    return fixed


def _elem_types(model: Any) -> dict[str, int]:
    graph = model.graph
    types = {i.name: int(i.data_type) for i in graph.initializer}
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.HasField("tensor_type"):
            types[value.name] = int(value.type.tensor_type.elem_type)
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    types[node.output[0]] = int(attr.t.data_type)
    return types


def island_violations(model: Any, island: set[str]) -> list[str]:
    """Why ``model`` does not keep ``island`` in FP32 (empty when it does).

    Checks, after shape inference: graph inputs and outputs are FP32, every float output of an
    island node is FP32 typed, and no island node reads a tensor that was rounded through FP16
    (``Cast(->fp32)`` of a ``Cast(->fp16)``).
    """
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types = _elem_types(inferred)
    producers = {o: n for n in inferred.graph.node for o in n.output}
    problems = [
        f"graph {kind} '{v.name}' is not FP32"
        for kind, values in (("input", inferred.graph.input), ("output", inferred.graph.output))
        for v in values
        if v.type.tensor_type.elem_type != FLOAT
    ]
    for node in inferred.graph.node:
        if node.name not in island:
            continue
        for out in node.output:
            if types.get(out) == FLOAT16:
                problems.append(f"{node.op_type} '{node.name}' writes FP16 '{out}'")
        for name in node.input:
            cast = producers.get(name)
            if cast is None or cast.op_type != "Cast" or _cast_to(cast) != FLOAT:
                continue
            inner = producers.get(cast.input[0])
            if inner is not None and inner.op_type == "Cast" and _cast_to(inner) == FLOAT16:
                problems.append(f"{node.op_type} '{node.name}' reads '{name}' rounded through FP16")
    return problems


def convert(data: bytes) -> tuple[bytes, dict[str, Any]]:
    """Convert a serialized FP32 graph to FP16 with FP32 I/O and an FP32 island.

    Args:
        data: the FP32 ONNX model bytes (already checked to be a valid, unquantized graph).

    Returns:
        ``(fp16 bytes, details)``; details: ``fp32_nodes`` (the island), ``fp16_nodes`` (count),
        ``isolated_outputs``, ``round_trips_removed``, ``op_block_list``.

    Raises:
        QuantizationError: the converter failed or the result does not keep the island FP32.
    """
    import onnx
    from onnxconverter_common import float16

    model = onnx.load_from_string(data)
    name_unnamed_nodes(model)
    isolated = isolate_outputs(model)
    island = fp32_island(model)
    block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | SEED_OPS | NORM_OPS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # one UserWarning per clamped constant
            converted = float16.convert_float_to_float16(
                model, keep_io_types=True, op_block_list=block, node_block_list=sorted(island)
            )
    except Exception as exc:  # the converter raises bare Exceptions/ValueErrors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise QuantizationError(
            f"the FP16 converter failed: {first[:300]}; report it with the export's manifest."
        ) from None
    removed = remove_fp16_round_trips(converted)
    restored = restore_fp32_outputs(converted)
    problems = island_violations(converted, island)
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise QuantizationError(
            f"the FP16 graph does not keep the fusion/scoring in FP32: {problems[0]}{more}; "
            "report it with the export's manifest."
        )
    names = {n.name for n in converted.graph.node}
    fp32_nodes = sorted(n for n in island if n in names)
    compute = [n for n in converted.graph.node if n.op_type not in ("Cast", "Constant")]
    details = {
        "fp32_nodes": fp32_nodes,
        "fp16_nodes": sum(1 for n in compute if n.name not in island),
        "isolated_outputs": isolated,
        "round_trips_removed": removed,
        "outputs_restored_to_fp32": restored,
        "op_block_list": block,
        "converter": "onnxconverter-common convert_float_to_float16(keep_io_types=True)",
    }
    return converted.SerializeToString(), details
