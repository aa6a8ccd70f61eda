"""Plugin-mode ONNX: the analyze graph with fusion and scoring as ``edgevae`` custom-op nodes.

TensorRT's ONNX parser turns a node it has no importer for into a plugin looked up by the node's
op type, its ``plugin_namespace`` and ``plugin_version`` attributes; ``aot=1`` asks for the
ahead-of-time Quickly Deployable Plugin (reference/tensorrt.md §3.1). The plugin-mode graph is
composed from the export's contract graphs, so it relies on contract tensor names only
(DESIGN §6), never on the exporter's internal node names::

    encode graph            modalities, mask -> ... expert_mu, expert_logvar (B, M, D)
      (its fusion nodes are cut off and removed)
    edgevae::poe_fusion     expert_mu, expert_logvar, mask
                              -> z_mu, z_logvar (B, D), kl_prior (B,), cross_modal (B, M)
    decode graph            z_mu -> recon_<m> ...        (internal names prefixed "decode/")
    Flatten + Concat        modalities -> x_cat (B, N); recon_<m> -> recon_cat (B, N)
    edgevae::anomaly_score  x_cat, recon_cat, mask, kl_prior, cross_modal,
                            offsets (M+1,) int32, mean, std, weight (P,)
                              -> score (B,), score_parts (B, P)

Outputs are the analyze contract: ``z_mu``, ``z_logvar``, ``recon_<m>``..., ``score``,
``score_parts``. The concatenation gives ``anomaly_score`` a fixed number of inputs for any
number of modalities (Quickly Deployable Plugins and their AOT kernels take a fixed signature);
``offsets`` marks where each modality's elements start. The statistics are constant inputs, not
attributes, because AOT plugins do not serialize attributes into the engine.

The plugin's ``score`` is the ``sum`` rule. Under the ``max`` rule (``score_stats["combine"]``,
:mod:`edgevae.model.score_rules`) the plugin's sum is left unused and ``score`` is computed from
``score_parts`` with standard ops: ``ReduceMax(score_parts * weight + pad((mask - 1) * 1e4))``,
which is the exported graphs' ``Where(keep, parts * weight, -1e4)`` written without booleans.

The custom-op semantics are those of ``edgevae.model.fusion`` and ``edgevae.model.scoring``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgevae.errors import ExportError
from edgevae.model.score_rules import MAX_EXCLUDED, check_combine
from edgevae.trt.export_dir import check_stats_match, modality_names

NAMESPACE = "edgevae"
PLUGIN_VERSION = "1"
POE_FUSION = "poe_fusion"
ANOMALY_SCORE = "anomaly_score"
DECODE_PREFIX = "decode/"

# Names of the tensors the surgery adds (prefixed so they never clash with the exporter's).
KL_PRIOR = "edgevae/kl_prior"
CROSS_MODAL = "edgevae/cross_modal"
X_CAT = "edgevae/x_cat"
RECON_CAT = "edgevae/recon_cat"
OFFSETS = "edgevae/score_offsets"
MEAN = "edgevae/score_mean"
STD = "edgevae/score_std"
WEIGHT = "edgevae/score_weight"
SCORE_SUM = "edgevae/score_sum"  # the plugin's sum-rule score, unused under the max rule


@dataclass(frozen=True)
class PluginGraphInfo:
    """What the surgery found: modality order, per-modality element counts, latent size."""

    modalities: list[str]
    elements: list[int]
    latent_dim: int

    @property
    def parts(self) -> list[str]:
        return [f"recon_{m}" for m in self.modalities] + ["kl_prior", "cross_modal"]


def plugin_node_attrs(aot: bool) -> dict[str, object]:
    """Attributes that map an ONNX node to an ``edgevae::<op>`` plugin in TensorRT's parser."""
    attrs: dict[str, object] = {"plugin_namespace": NAMESPACE, "plugin_version": PLUGIN_VERSION}
    if aot:
        attrs["aot"] = 1
    return attrs


def build_plugin_model(
    encode: onnx.ModelProto,
    decode: onnx.ModelProto,
    score_stats: dict[str, list],
    *,
    aot: bool = True,
) -> tuple[onnx.ModelProto, PluginGraphInfo]:
    """Compose the plugin-mode analyze graph from the encode and decode graphs.

    Args:
        encode: ``encode[.<precision>].onnx`` (outputs z_mu, z_logvar, expert_mu, expert_logvar).
        decode: ``decode[.<precision>].onnx`` (input z, outputs recon_<m>).
        score_stats: ``{"names", "mean", "std", "weight"}`` for the P = M + 2 score parts, and
            optionally ``combine`` (``sum`` when absent).
        aot: mark the nodes for AOT Quickly Deployable Plugins (TensorRT >= 10.9); False for the
            C++ IPluginV3 library.

    Returns:
        The checked model and what the surgery found.

    Raises:
        ExportError: graphs without the contract names, mismatched opsets, control flow, or
            statistics for other modalities.
    """
    eg, dg = encode.graph, decode.graph
    for name, g in (("encode", eg), ("decode", dg)):
        _refuse_subgraphs(g, name)
    e_inputs = _graph_inputs(eg)
    modalities = modality_names(list(e_inputs))
    if "eps" in e_inputs:
        raise ExportError(
            "the encode graph has an 'eps' input; plugin mode computes z = z_mu: re-export "
            "without sampling."
        )
    e_outputs = {o.name: o for o in eg.output}
    _require(e_outputs, ("z_mu", "z_logvar", "expert_mu", "expert_logvar"), "encode")
    d_inputs = _graph_inputs(dg)
    if list(d_inputs) != ["z"]:
        raise ExportError(
            f"the decode graph takes {list(d_inputs)}, expected exactly ['z']; re-export it."
        )
    d_outputs = {o.name: o for o in dg.output}
    recon_names = [f"recon_{m}" for m in modalities]
    _require(d_outputs, recon_names, "decode")
    check_stats_match(score_stats, modalities)
    combine = check_combine(score_stats.get("combine", "sum"))
    for name in ("expert_mu", "expert_logvar"):
        if e_outputs[name].type.tensor_type.elem_type != TensorProto.FLOAT:
            raise ExportError(
                f"encode output '{name}' is not float32; the fusion plugin takes FP32 experts "
                "(keep the graph's I/O FP32 when converting to FP16)."
            )

    elements = [_sample_elements(e_inputs[m], m) for m in modalities]
    latent_dim = _latent_dim(e_outputs["z_mu"])
    info = PluginGraphInfo(modalities, elements, latent_dim)
    batch_dim = _first_dim(e_inputs["mask"])

    # 1) encode: cut z_mu / z_logvar off their producers; the fusion plugin produces them now.
    nodes = [_copy(n) for n in eg.node]
    for node in nodes:
        for i, out in enumerate(node.output):
            if out in ("z_mu", "z_logvar"):
                node.output[i] = f"{out}/replaced_by_{POE_FUSION}"
    nodes.append(
        helper.make_node(
            POE_FUSION,
            ["expert_mu", "expert_logvar", "mask"],
            ["z_mu", "z_logvar", KL_PRIOR, CROSS_MODAL],
            name=f"{NAMESPACE}/{POE_FUSION}",
            domain=NAMESPACE,
            **plugin_node_attrs(aot),
        )
    )
    # 2) decode on z = z_mu, internal names prefixed.
    keep = {"z": "z_mu", **{r: r for r in recon_names}, "": ""}
    rename = lambda t: keep.get(t, DECODE_PREFIX + t)  # noqa: E731
    for node in dg.node:
        n = _copy(node)
        n.name = DECODE_PREFIX + (n.name or n.op_type)
        n.input[:] = [rename(t) for t in n.input]
        n.output[:] = [rename(t) for t in n.output]
        nodes.append(n)
    inits = [_copy(i) for i in eg.initializer]
    for init in dg.initializer:
        i = _copy(init)
        i.name = rename(i.name)
        inits.append(i)
    value_info = [_copy(v) for v in eg.value_info]
    for vi in dg.value_info:
        v = _copy(vi)
        v.name = rename(v.name)
        value_info.append(v)
    # 3) scoring: flatten + concat, then the anomaly_score plugin.
    for m, r in zip(modalities, recon_names, strict=True):
        nodes.append(helper.make_node("Flatten", [m], [f"edgevae/flat_x/{m}"], axis=1))
        nodes.append(helper.make_node("Flatten", [r], [f"edgevae/flat_r/{m}"], axis=1))
    nodes.append(
        helper.make_node("Concat", [f"edgevae/flat_x/{m}" for m in modalities], [X_CAT], axis=1)
    )
    nodes.append(
        helper.make_node("Concat", [f"edgevae/flat_r/{m}" for m in modalities], [RECON_CAT], axis=1)
    )
    offsets = np.concatenate([[0], np.cumsum(elements)]).astype(np.int32)
    inits += [
        numpy_helper.from_array(offsets, OFFSETS),
        numpy_helper.from_array(np.asarray(score_stats["mean"], np.float32), MEAN),
        numpy_helper.from_array(np.asarray(score_stats["std"], np.float32), STD),
        numpy_helper.from_array(np.asarray(score_stats["weight"], np.float32), WEIGHT),
    ]
    nodes.append(
        helper.make_node(
            ANOMALY_SCORE,
            [X_CAT, RECON_CAT, "mask", KL_PRIOR, CROSS_MODAL, OFFSETS, MEAN, STD, WEIGHT],
            ["score" if combine == "sum" else SCORE_SUM, "score_parts"],
            name=f"{NAMESPACE}/{ANOMALY_SCORE}",
            domain=NAMESPACE,
            **plugin_node_attrs(aot),
        )
    )
    if combine == "max":
        opset = next((o.version for o in encode.opset_import if o.domain in ("", "ai.onnx")), 17)
        max_nodes, max_inits = _max_score_nodes(opset)
        nodes += max_nodes
        inits += max_inits
    p = len(info.parts)
    outputs = [
        _copy(e_outputs["z_mu"]),
        _copy(e_outputs["z_logvar"]),
        *[_copy(d_outputs[r]) for r in recon_names],
        _value_info("score", [batch_dim]),
        _value_info("score_parts", [batch_dim, p]),
    ]
    graph = helper.make_graph(
        nodes,
        f"{eg.name or 'edgevae'}_plugin",
        [_copy(v) for v in eg.input if v.name in e_inputs],
        outputs,
        initializer=inits,
        value_info=value_info,
    )
    _prune(graph)
    model = helper.make_model(
        graph, opset_imports=_merge_opsets(encode, decode), producer_name="edgevae"
    )
    model.ir_version = max(encode.ir_version, decode.ir_version)
    meta = {"modalities": modalities, "elements": elements, "latent_dim": latent_dim, "aot": aot}
    helper.set_model_props(model, {"edgevae.plugin_graph": json.dumps(meta)})
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ExportError(f"the plugin-mode graph is invalid ({first}); re-export.") from None
    return model, info


def write_plugin_onnx(
    encode_path: str | os.PathLike[str],
    decode_path: str | os.PathLike[str],
    score_stats: dict[str, list],
    out_path: str | os.PathLike[str],
    *,
    aot: bool = True,
) -> tuple[Path, PluginGraphInfo]:
    """File-level :func:`build_plugin_model`: read both graphs, write the plugin graph atomically.

    Raises:
        ExportError: unreadable graphs or any surgery error.
    """
    from edgevae._util.artifacts import write_bytes_atomic

    encode, decode = _load(encode_path), _load(decode_path)
    model, info = build_plugin_model(encode, decode, score_stats, aot=aot)
    return write_bytes_atomic(out_path, model.SerializeToString()), info


def experts_only_model(encode: onnx.ModelProto) -> onnx.ModelProto:
    """The encode graph without its fusion: outputs ``expert_mu``, ``expert_logvar`` only.

    Split mode runs the fusion in the ``poe_fusion`` kernel between the engines, so the encode
    engine must not compute it a second time.

    Raises:
        ExportError: when the graph lacks the expert outputs.
    """
    _require({o.name: o for o in encode.graph.output}, ("expert_mu", "expert_logvar"), "encode")
    model = _copy(encode)
    keep = [_copy(o) for o in model.graph.output if o.name in ("expert_mu", "expert_logvar")]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    _prune(model.graph)
    return model


def write_experts_only_onnx(
    encode_path: str | os.PathLike[str], out_path: str | os.PathLike[str]
) -> Path:
    """File-level :func:`experts_only_model`, written atomically."""
    from edgevae._util.artifacts import write_bytes_atomic

    model = experts_only_model(_load(encode_path))
    return write_bytes_atomic(out_path, model.SerializeToString())


def custom_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The ``edgevae``-domain nodes of a model (what the TensorRT parser maps to plugins)."""
    return [n for n in model.graph.node if n.domain == NAMESPACE]


# --------------------------------------------------------------------------------------------


def _load(path: str | os.PathLike[str]) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except Exception as exc:  # DecodeError, OSError
        raise ExportError(f"{path} is not a readable ONNX model ({exc}); re-export it.") from None


def _copy(proto):  # type: ignore[no-untyped-def]
    new = type(proto)()
    new.CopyFrom(proto)
    return new


def _graph_inputs(g: onnx.GraphProto) -> dict[str, onnx.ValueInfoProto]:
    inits = {i.name for i in g.initializer}
    return {v.name: v for v in g.input if v.name not in inits}


def _require(have: dict[str, object], names: Iterable[str], graph: str) -> None:
    missing = [n for n in names if n not in have]
    if missing:
        raise ExportError(
            f"the {graph} graph lacks output(s) {missing} (it has {list(have)}); re-export it "
            "with `edgevae export` (contract names, DESIGN §6)."
        )


def _refuse_subgraphs(g: onnx.GraphProto, name: str) -> None:
    for node in g.node:
        for attr in node.attribute:
            if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                raise ExportError(
                    f"the {name} graph has control flow (node '{node.name}', {node.op_type}); "
                    "exported edgevae graphs must not: re-export."
                )


def _dims(vi: onnx.ValueInfoProto) -> list[int | str]:
    return [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
        for d in vi.type.tensor_type.shape.dim
    ]


def _first_dim(vi: onnx.ValueInfoProto) -> int | str:
    dims = _dims(vi)
    return dims[0] if dims else "batch"


def _sample_elements(vi: onnx.ValueInfoProto, name: str) -> int:
    dims = _dims(vi)[1:]
    if not all(isinstance(d, int) and d > 0 for d in dims):
        raise ExportError(
            f"input '{name}' has per-sample shape {dims}; plugin mode needs fixed sample "
            "shapes: re-export."
        )
    return int(np.prod(dims)) if dims else 1


def _latent_dim(vi: onnx.ValueInfoProto) -> int:
    dims = _dims(vi)
    if len(dims) != 2 or not isinstance(dims[1], int):
        raise ExportError(
            f"encode output 'z_mu' has shape {dims}, expected (batch, D) with a fixed D; re-export."
        )
    return int(dims[1])


def _value_info(name: str, dims: list[int | str]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def _prune(graph: onnx.GraphProto) -> None:
    """Drop nodes, initializers and value infos that no graph output depends on."""
    producer = {out: i for i, n in enumerate(graph.node) for out in n.output if out}
    live_nodes: set[int] = set()
    needed = [o.name for o in graph.output]
    seen: set[str] = set()
    while needed:
        t = needed.pop()
        if t in seen:
            continue
        seen.add(t)
        i = producer.get(t)
        if i is not None and i not in live_nodes:
            live_nodes.add(i)
            needed.extend(x for x in graph.node[i].input if x)
    kept = [_copy(n) for i, n in enumerate(graph.node) if i in live_nodes]
    del graph.node[:]
    graph.node.extend(kept)
    inits = [_copy(i) for i in graph.initializer if i.name in seen]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    vis = [_copy(v) for v in graph.value_info if v.name in seen]
    del graph.value_info[:]
    graph.value_info.extend(vis)


def _max_score_nodes(opset: int) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """``score = ReduceMax(score_parts * weight + pad((mask - 1) * 1e4, 2 zeros))`` over axis 1.

    Absent modalities' recon parts are 0 (the plugin zeroes them), so they become -1e4, the
    exported graphs' :data:`~edgevae.model.score_rules.MAX_EXCLUDED`; KL and cross-modal parts
    always count.
    """
    p = "edgevae/max/"
    inits = [
        numpy_helper.from_array(np.array(1.0, np.float32), p + "one"),
        numpy_helper.from_array(np.array(-MAX_EXCLUDED, np.float32), p + "big"),
        numpy_helper.from_array(np.array([0, 0, 0, 2], np.int64), p + "pads"),
    ]
    nodes = [
        helper.make_node("Sub", ["mask", p + "one"], [p + "absent"]),  # 0 present, -1 absent
        helper.make_node("Mul", [p + "absent", p + "big"], [p + "penalty_m"]),  # (B, M)
        helper.make_node("Pad", [p + "penalty_m", p + "pads"], [p + "penalty"]),  # (B, P)
        helper.make_node("Mul", ["score_parts", WEIGHT], [p + "weighted"]),
        helper.make_node("Add", [p + "weighted", p + "penalty"], [p + "masked"]),
    ]
    if opset >= 18:  # axes became an input in opset 18
        inits.append(numpy_helper.from_array(np.array([1], np.int64), p + "axes"))
        nodes.append(
            helper.make_node("ReduceMax", [p + "masked", p + "axes"], ["score"], keepdims=0)
        )
    else:
        nodes.append(helper.make_node("ReduceMax", [p + "masked"], ["score"], axes=[1], keepdims=0))
    for n in nodes:
        n.name = n.output[0]
    return nodes, inits


def _merge_opsets(a: onnx.ModelProto, b: onnx.ModelProto) -> list[onnx.OperatorSetIdProto]:
    versions: dict[str, int] = {}
    for model in (a, b):
        for op in model.opset_import:
            domain = op.domain or ""
            if domain in versions and versions[domain] != op.version:
                raise ExportError(
                    f"encode and decode graphs use different opsets for domain "
                    f"'{domain or 'ai.onnx'}' ({versions[domain]} vs {op.version}); export both "
                    "with the same `edgevae export` run."
                )
            versions[domain] = op.version
    versions[NAMESPACE] = 1
    return [helper.make_opsetid(d, v) for d, v in versions.items()]
