"""Jetson latency/throughput **estimates** from a model's MACs and bytes and published peaks.

This is a roofline, not a measurement: ``time = max(2 * MACs / peak, bytes / bandwidth)``. It is a
*lower bound* on latency (small models are dominated by per-kernel launch overhead, which a roofline
ignores), reported as a range: ``fused`` counts only weights and graph I/O as memory traffic,
``unfused`` adds every intermediate tensor written once and read once. Results live under their own
``projection`` key, labelled ``"kind": "estimate"``, and are never mixed with measured rows.

Peak table (GPU only, **dense**; T = 10^12 FLOP/s or OP/s; "—" = no source):

===================  =====  =====  =====  =====
device               FP32   FP16   INT8   GB/s
===================  =====  =====  =====  =====
Orin Nano 8GB Super  2.09   16.75  33.5   102
Orin NX 16GB Super   2.40   19.3   38.5   102.4
AGX Orin 64GB        5.3    42.5   85     204.8
Xavier NX            0.845  6.76   13.5   59.7
AGX Thor T5000       —      259    —      273
===================  =====  =====  =====  =====

Sources and derivations:

* Orin Nano 8GB Super: tensorrt.md §5.3 (67 sparse INT8 TOPS, 102 GB/s); INT8 dense = 67/2,
  FP16 dense = 67/4 (§5.3 derives "≈ 17"); FP32 = 1024 CUDA cores x 2 x 1.02 GHz (a third-party
  summary of NVIDIA's Super datasheet).
* Orin NX 16GB Super: the Orin Nano Super figures x 1173/1020 MHz (same 1024-core / 32-tensor-core
  GPU at a higher clock) [UNVERIFIED clock]; 102.4 GB/s [UNVERIFIED] (§5.3).
* AGX Orin 64GB: tensorrt.md §5.3: 5.3 FP32 TFLOPS (2048 cores), 170 sparse INT8 GPU TOPS -> 85
  dense, FP16 ≈ 42.5 (derived there); 204.8 GB/s [UNVERIFIED].
* Xavier NX: 384 CUDA cores x 2 x 1.1 GHz (third-party GPU database); FP16 = 48 Volta tensor
  cores x 64 FMA x 2 x 1.1 GHz, INT8 = 2 x FP16 (derived); 59.7 GB/s [UNVERIFIED] (§5.3).
* AGX Thor T5000: tensorrt.md §5.3: 2070 sparse FP4 TFLOPS -> FP16 dense = 2070/8 (2x for
  sparsity and 2x per precision halving, derived); no source for the FP32 and INT8 rates;
  273 GB/s [UNVERIFIED].

tensorrt.md §5.3 warns that headline Orin TOPS are sparse and GPU+DLA combined and must be checked
against the module datasheets; benchmarking.md §7 shows small models reach nowhere near these
peaks. Treat every number here as an upper bound on speed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgevae.errors import ConfigError, ExportError

PRECISIONS = ("fp32", "fp16", "int8")
BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "int8": 1}
ESTIMATE_LABEL = "ESTIMATE (roofline from published peaks; not measured)"


@dataclass(frozen=True)
class DeviceSpec:
    """Published (or derived) GPU peaks of one Jetson module; None where no source gives one."""

    key: str
    name: str
    peak_tflops: dict[str, float | None]
    bandwidth_gbs: float
    source: str
    unverified: bool = True


DEVICES: tuple[DeviceSpec, ...] = (
    DeviceSpec(
        "orin-nano-8gb-super", "Jetson Orin Nano 8GB (Super, MAXN_SUPER)",
        {"fp32": 2.09, "fp16": 16.75, "int8": 33.5}, 102.0,
        "tensorrt.md §5.3 (67 sparse INT8 TOPS, 102 GB/s); FP32 from 1024 cores x 1.02 GHz",
    ),
    DeviceSpec(
        "orin-nx-16gb-super", "Jetson Orin NX 16GB (Super)",
        {"fp32": 2.40, "fp16": 19.3, "int8": 38.5}, 102.4,
        "Orin Nano Super x 1173/1020 MHz [UNVERIFIED clock]; 102.4 GB/s [UNVERIFIED]",
    ),
    DeviceSpec(
        "agx-orin-64gb", "Jetson AGX Orin 64GB (MAXN)",
        {"fp32": 5.3, "fp16": 42.5, "int8": 85.0}, 204.8,
        "tensorrt.md §5.3 (5.3 FP32 TFLOPS, 170 sparse INT8 GPU TOPS); 204.8 GB/s [UNVERIFIED]",
    ),
    DeviceSpec(
        "xavier-nx", "Jetson Xavier NX",
        {"fp32": 0.845, "fp16": 6.76, "int8": 13.5}, 59.7,
        "384 cores / 48 tensor cores x 1.1 GHz (derived); 59.7 GB/s [UNVERIFIED]",
    ),
    DeviceSpec(
        "agx-thor-t5000", "Jetson AGX Thor T5000",
        {"fp32": None, "fp16": 259.0, "int8": None}, 273.0,
        "tensorrt.md §5.3 (2070 sparse FP4 TFLOPS -> FP16 dense /8, derived); "
        "273 GB/s [UNVERIFIED]",
    ),
)  # fmt: skip


@dataclass(frozen=True)
class GraphCost:
    """Work and data of one sample through a graph (batch 1), counted from the ONNX graph.

    ``macs`` counts Conv, ConvTranspose, MatMul and Gemm (and their integer/Q variants);
    elementwise ops are ignored. ``activation_elements`` is the sum of every intermediate tensor's
    element count; ``io_elements`` of the graph inputs and outputs; ``params`` of the weights.
    """

    macs: int
    params: int
    activation_elements: int
    io_elements: int
    counted_nodes: int
    unknown_shape_nodes: int = 0
    ops: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def onnx_cost(model: Any) -> GraphCost:
    """Count MACs, parameters and tensor sizes of an ONNX model (path, bytes or ModelProto) at
    batch 1 (every symbolic dimension is set to 1 before shape inference).

    Raises:
        ExportError: a file that is not a loadable ONNX model.
    """
    import numpy as np
    import onnx
    from onnx import shape_inference

    if isinstance(model, str | os.PathLike):
        try:
            proto = onnx.load(str(model))
        except Exception as exc:
            raise ExportError(f"cannot read ONNX model '{model}': {exc}; re-export it.") from None
    elif isinstance(model, bytes):
        proto = onnx.load_from_string(model)
    else:
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
    graph = proto.graph
    init_names = {t.name for t in graph.initializer}
    for vi in list(graph.input) + list(graph.output):
        for dim in vi.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.dim_value = 1  # batch (and any other symbolic dim) -> 1
    try:
        proto = shape_inference.infer_shapes(proto, data_prop=True)
    except Exception as exc:
        raise ExportError(f"ONNX shape inference failed ({exc}); the model is invalid.") from None
    graph = proto.graph

    shapes: dict[str, tuple[int, ...] | None] = {}
    for vi in [*graph.input, *graph.output, *graph.value_info]:
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = (
            tuple(d.dim_value for d in dims) if all(d.HasField("dim_value") for d in dims) else None
        )
    for t in graph.initializer:
        shapes[t.name] = tuple(t.dims)
    params = sum(int(np.prod(t.dims)) for t in graph.initializer)
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    params += int(np.prod(a.t.dims))
                    shapes[node.output[0]] = tuple(a.t.dims)

    def numel(name: str) -> int | None:
        s = shapes.get(name)
        return int(np.prod(s)) if s is not None else None

    macs = counted = unknown = 0
    ops: dict[str, int] = {}
    for node in graph.node:
        op = node.op_type
        try:
            n = _node_macs(op, node, shapes)
        except (KeyError, TypeError, IndexError, ValueError):
            n = None
        if n is None:
            if op in _MAC_OPS:
                unknown += 1
            continue
        macs += n
        counted += 1
        ops[op] = ops.get(op, 0) + n
    graph_io = {vi.name for vi in [*graph.input, *graph.output]} - init_names
    io = sum(numel(n) or 0 for n in graph_io)
    act = 0
    for node in graph.node:
        if node.op_type == "Constant":
            continue
        for out in node.output:
            if out and out not in graph_io:
                act += numel(out) or 0
    return GraphCost(int(macs), int(params), int(act), int(io), counted, unknown, ops)


_MAC_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm", "ConvInteger", "MatMulInteger",
            "QLinearConv", "QLinearMatMul"}  # fmt: skip


def _node_macs(op: str, node: Any, shapes: dict[str, tuple[int, ...] | None]) -> int | None:
    import numpy as np

    def shape(i: int, outputs: bool = False) -> tuple[int, ...]:
        name = (node.output if outputs else node.input)[i]
        s = shapes[name]
        if s is None:
            raise KeyError(name)
        return s

    if op in ("Conv", "ConvInteger", "QLinearConv"):
        w = shape(3 if op == "QLinearConv" else 1)  # (Cout, Cin/g, k...)
        y = shape(0, outputs=True)  # (N, Cout, ...)
        return int(np.prod(y)) * int(np.prod(w[1:]))
    if op == "ConvTranspose":
        x, w = shape(0), shape(1)  # (N, Cin, ...), (Cin, Cout/g, k...)
        return int(np.prod(x)) * int(np.prod(w[1:]))
    if op in ("MatMul", "MatMulInteger", "QLinearMatMul"):
        a = shape(0)
        y = shape(0, outputs=True)
        return int(np.prod(y)) * int(a[-1])
    if op == "Gemm":
        a = shape(0)
        trans_a = next((at.i for at in node.attribute if at.name == "transA"), 0)
        k = a[0] if trans_a else a[-1]
        return int(np.prod(shape(0, outputs=True))) * int(k)
    return None


def project(
    cost: GraphCost,
    *,
    devices: Sequence[DeviceSpec] = DEVICES,
    precisions: Sequence[str] = PRECISIONS,
    batches: Sequence[int] = (1,),
    efficiency: float = 1.0,
) -> dict[str, Any]:
    """Roofline estimates for each device x precision x batch (see module docstring).

    Args:
        cost: per-sample work and data (:func:`onnx_cost`).
        devices: the peak table rows to use.
        precisions: subset of ``fp32``, ``fp16``, ``int8``.
        batches: batch sizes (MACs, activations and I/O scale with the batch; weights do not).
        efficiency: fraction of peak compute and bandwidth assumed reachable (1.0 = ideal).

    Returns:
        ``{"kind": "estimate", "label", "method", "model", "rows": [...]}``; a device without a
        published peak for a precision gets no row for it.

    Raises:
        ConfigError: unknown precision, non-positive batch or efficiency outside (0, 1].
    """
    for p in precisions:
        if p not in PRECISIONS:
            raise ConfigError(
                f"unknown precision '{p}' for projection; use {', '.join(PRECISIONS)}."
            )
    if not 0 < efficiency <= 1:
        raise ConfigError(f"efficiency must be in (0, 1], got {efficiency}.")
    if any(b < 1 for b in batches):
        raise ConfigError(f"batch sizes must be >= 1, got {list(batches)}.")
    rows = []
    for dev in devices:
        for prec in precisions:
            peak = dev.peak_tflops.get(prec)
            if peak is None:
                continue
            width = BYTES_PER_ELEMENT[prec]
            for b in batches:
                compute_s = 2.0 * cost.macs * b / (peak * 1e12 * efficiency)
                fused = cost.params * width + cost.io_elements * b * 4  # graph I/O stays FP32
                unfused = fused + 2 * cost.activation_elements * b * width
                bw = dev.bandwidth_gbs * 1e9 * efficiency
                lo = max(compute_s, fused / bw)
                hi = max(compute_s, unfused / bw)
                rows.append(
                    {
                        "device": dev.key,
                        "device_name": dev.name,
                        "precision": prec,
                        "batch": b,
                        "peak_tflops": peak,
                        "bandwidth_gbs": dev.bandwidth_gbs,
                        "latency_ms_fused": lo * 1e3,
                        "latency_ms_unfused": hi * 1e3,
                        "throughput_fused": b / lo if lo > 0 else None,
                        "throughput_unfused": b / hi if hi > 0 else None,
                        "bound": "compute" if compute_s >= unfused / bw else "memory",
                        "source": dev.source,
                        "unverified": dev.unverified,
                    }
                )
    return {
        "kind": "estimate",
        "label": ESTIMATE_LABEL,
        "method": (
            "roofline: max(2*MACs/peak, bytes/bandwidth); fused bytes = weights + I/O, unfused "
            "adds every intermediate tensor written and read once; ignores launch overhead, so "
            "latency is a lower bound"
        ),
        "efficiency": efficiency,
        "model": cost.to_dict(),
        "rows": rows,
    }


def projection_markdown(projection: dict[str, Any]) -> str:
    """A markdown table of a :func:`project` result, headed by the estimate label."""
    lines = [
        f"**{projection['label']}** — {projection['method']}.",
        "",
        "| Device | Precision | Batch | Peak (dense T) | GB/s | est. latency ms (fused–unfused) "
        "| est. samples/s | bound |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in projection["rows"]:
        thr = r["throughput_unfused"], r["throughput_fused"]
        mark = " ⚠" if r["unverified"] else ""
        lines.append(
            f"| {r['device_name']}{mark} | {r['precision']} | {r['batch']} | {r['peak_tflops']:g} "
            f"| {r['bandwidth_gbs']:g} | {r['latency_ms_fused']:.3g}–{r['latency_ms_unfused']:.3g} "
            f"| {_num(thr[0])}–{_num(thr[1])} | {r['bound']} |"
        )
    lines.append("")
    lines.append(
        "⚠ peak or bandwidth not confirmed against a primary datasheet (see projection.py)."
    )
    return "\n".join(lines)


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f}"


def cost_of(path: str | os.PathLike[str]) -> GraphCost | None:
    """:func:`onnx_cost` for an ``.onnx`` path, None for other artifacts."""
    return onnx_cost(Path(path)) if Path(path).suffix.lower() == ".onnx" else None
