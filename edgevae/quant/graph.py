"""ONNX graph analysis shared by the FP16 and INT8 paths (onnx protobufs only, no runtime).

Three questions every lower-precision artifact has to answer the same way:

* **Which nodes form the FP32 island?** The masked product of experts, the KL terms and the
  anomaly score (DESIGN §4: "fusion in FP32"). Seeds are the ops whose FP16/INT8 error is
  amplified or saturates: ``Exp``, ``Log``, ``Softplus``, ``Reciprocal``, ``Pow``, ``Sqrt``, every
  ``Reduce*`` and ``Clip`` (the log-variance clamp). The island is each seed together with every
  node that is connected to it without crossing a *heavy* node (``Conv``, ``ConvTranspose``,
  ``Gemm``, ``MatMul``, ``Resize``): the mask arithmetic, the ``8 * tanh(x / 8)`` log-variance
  soft clamp of the expert heads, the precision sums, the standardisation of the score parts,
  down to the graph outputs. Heavy nodes stay outside, so encoders and decoders are converted.
* **Which layers are first and last?** A heavy node whose input comes from a graph input through
  light nodes only is a first layer; one whose output reaches a graph output through light nodes
  only is a last layer.
* **Is the model already quantized?** Q/DQ, integer or QLinear ops, or FP16 tensors.

Example:
    >>> import onnx                                   # doctest: +SKIP
    >>> island = fp32_island(onnx.load("analyze.onnx"))  # doctest: +SKIP
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

HEAVY_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "Resize"})
WEIGHT_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
SEED_OPS = frozenset(
    {
        "Exp", "Log", "Softplus", "Reciprocal", "Pow", "Sqrt", "Clip",
        "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
        "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare",
    }
)  # fmt: skip
NORM_OPS = frozenset(
    {"LayerNormalization", "GroupNormalization", "InstanceNormalization", "BatchNormalization"}
)
QUANTIZED_OPS = frozenset(
    {
        "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
        "QLinearMatMul", "QLinearAdd", "QLinearMul", "ConvInteger", "MatMulInteger", "QGemm",
    }
)  # fmt: skip
_PASS_THROUGH = frozenset({"Constant"})  # carry no tensor edge that joins regions


def _producers(graph: Any) -> dict[str, Any]:
    return {out: node for node in graph.node for out in node.output if out}


def _consumers(graph: Any) -> dict[str, list[Any]]:
    users: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            if name:
                users[name].append(node)
    return users


def fp32_island(model: Any) -> set[str]:
    """Names of the nodes that must stay FP32 (see the module docstring for the rule).

    Args:
        model: an ``onnx.ModelProto`` (every node must have a unique, non-empty name).

    Returns:
        Node names of every light node connected to a seed op without crossing a heavy node.
    """
    graph = model.graph
    light = [n for n in graph.node if n.op_type not in HEAVY_OPS and n.op_type not in _PASS_THROUGH]
    light_names = {n.name for n in light}
    producers = _producers(graph)
    consumers = _consumers(graph)
    # undirected adjacency between light nodes through the tensors that connect them
    adjacent: dict[str, set[str]] = defaultdict(set)
    for node in light:
        for name in node.input:
            src = producers.get(name)
            if src is not None and src.name in light_names:
                adjacent[node.name].add(src.name)
                adjacent[src.name].add(node.name)
        for name in node.output:
            for dst in consumers.get(name, ()):
                if dst.name in light_names:
                    adjacent[node.name].add(dst.name)
                    adjacent[dst.name].add(node.name)
    island: set[str] = set()
    stack = [n.name for n in light if n.op_type in SEED_OPS]
    while stack:
        name = stack.pop()
        if name in island:
            continue
        island.add(name)
        stack.extend(adjacent[name] - island)
    return island


def _walk(start: Iterable[str], step: dict[str, list[str]]) -> set[str]:
    """Every tensor reachable from ``start`` (tensor names) by following ``step``."""
    seen: set[str] = set()
    stack = list(start)
    while stack:
        tensor = stack.pop()
        if tensor not in seen:
            seen.add(tensor)
            stack.extend(step.get(tensor, ()))
    return seen


def first_and_last_layers(model: Any, island: set[str] | None = None) -> tuple[set[str], set[str]]:
    """The weight-bearing layers that meet raw inputs or the FP32 island / outputs directly.

    * first: no heavy node upstream of its data input (it sees the graph inputs as given);
    * last: its output reaches a graph output or an island node through light nodes only (it
      produces an expert head, a reconstruction or an output).

    Args:
        model: an ``onnx.ModelProto``.
        island: :func:`fp32_island` of ``model`` (computed when not given).

    Returns:
        ``(first, last)`` node-name sets.
    """
    graph = model.graph
    island = fp32_island(model) if island is None else island
    inits = {i.name for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    producers = _producers(graph)
    consumers = _consumers(graph)
    up = {t: [i for i in n.input if i and i not in inits] for t, n in producers.items()}
    down_light = {
        t: [o for u in users if u.op_type not in HEAVY_OPS for o in u.output if o]
        for t, users in consumers.items()
    }
    first, last = set(), set()
    for node in graph.node:
        if node.op_type not in WEIGHT_OPS:
            continue
        upstream = _walk([i for i in node.input[:1] if i], up)
        if not any(producers[t].op_type in HEAVY_OPS for t in upstream if t in producers):
            first.add(node.name)
        reached = _walk([o for o in node.output if o], down_light)
        feeds_island = any(u.name in island for t in reached for u in consumers.get(t, ()))
        if feeds_island or reached & outputs:
            last.add(node.name)
    return first, last


def quantized_ops(model: Any) -> list[str]:
    """Op types in ``model`` that only a quantized graph holds (empty for an FP32 graph)."""
    return sorted({n.op_type for n in model.graph.node if n.op_type in QUANTIZED_OPS})


def float16_tensors(model: Any) -> list[str]:
    """Names of FP16-typed initializers, inputs, outputs and value infos (an FP16 graph)."""
    fp16 = 10  # onnx.TensorProto.FLOAT16
    names = [i.name for i in model.graph.initializer if i.data_type == fp16]
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        if value.type.tensor_type.elem_type == fp16:
            names.append(value.name)
    return names


def name_unnamed_nodes(model: Any) -> None:
    """Give every unnamed node a unique name (``<op>_<index>``) in place: exclusion lists and
    reports address nodes by name."""
    taken = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            candidate = f"{node.op_type}_{i}"
            while candidate in taken:
                candidate += "_"
            node.name = candidate
            taken.add(candidate)


def outputs_consumed_inside(model: Any) -> list[str]:
    """Graph outputs that are also inputs of a node (the FP16 converter cannot keep their type)."""
    used = {i for n in model.graph.node for i in n.input}
    return [o.name for o in model.graph.output if o.name in used]


def isolate_outputs(model: Any) -> list[str]:
    """Give every graph output that is also consumed inside the graph its own ``Identity``.

    The producer's tensor is renamed ``<name>__inner`` (every consumer follows) and an
    ``Identity`` writes the output name, so the output tensor has no consumer. In place.

    Returns:
        The outputs that were isolated.
    """
    import onnx

    names = outputs_consumed_inside(model)
    for name in names:
        inner = f"{name}__inner"
        for node in model.graph.node:
            for i, tensor in enumerate(node.input):
                if tensor == name:
                    node.input[i] = inner
            for i, tensor in enumerate(node.output):
                if tensor == name:
                    node.output[i] = inner
        for value in model.graph.value_info:
            if value.name == name:
                value.name = inner
        model.graph.node.append(
            onnx.helper.make_node("Identity", [inner], [name], name=f"{name}__output")
        )
    return names
