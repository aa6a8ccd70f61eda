"""A tiny export directory built with onnx.helper: a stand-in for ``edgevae export`` in TRT tests.

Two modalities, ``a`` (vector, 4) and ``b`` (series, 2x3), latent D = 3. Each expert is one
MatMul; the fusion in ``encode.onnx`` is the DESIGN §4 masked PoE written in plain ONNX ops, and
``decode.onnx`` is one MatMul per modality. ``analyze.onnx`` has the analyze contract I/O (its
scoring is simplified: it only has to look like an analyze graph to the fake TensorRT). It is
NOT the real exporter's graph; it follows the same tensor-name contract (DESIGN §6).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MODALITIES = {"a": (4,), "b": (2, 3)}
D = 3
OPSET = 17
SCORE_STATS = {
    "names": ["recon_a", "recon_b", "kl_prior", "cross_modal"],
    "mean": [0.5, 0.25, 1.0, 0.1],
    "std": [2.0, 0.5, 1.5, 0.2],
    "weight": [1.0, 1.0, 0.5, 2.0],
}


def _w(name: str, shape: tuple[int, ...], seed: int) -> onnx.TensorProto:
    rng = np.random.default_rng(seed)
    return numpy_helper.from_array(rng.normal(0, 0.7, shape).astype(np.float32), name)


def _c(name: str, value, dtype=np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype), name)


def _io(name: str, dims: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def _encoder_nodes() -> tuple[list, list]:
    n = helper.make_node
    nodes, inits = [], [_c("split_d", [D, D], np.int64), _c("ax1", [1], np.int64)]
    for i, (m, shape) in enumerate(MODALITIES.items()):
        size = int(np.prod(shape))
        inits.append(_w(f"W_{m}", (size, 2 * D), seed=i))
        nodes += [
            n("Flatten", [m], [f"{m}_flat"], axis=1),
            n("MatMul", [f"{m}_flat", f"W_{m}"], [f"{m}_h"]),
            n("Split", [f"{m}_h", "split_d"], [f"{m}_mu", f"{m}_lv"], axis=1),
            n("Unsqueeze", [f"{m}_mu", "ax1"], [f"{m}_mu3"]),
            n("Unsqueeze", [f"{m}_lv", "ax1"], [f"{m}_lv3"]),
        ]
    names = list(MODALITIES)
    nodes += [
        n("Concat", [f"{m}_mu3" for m in names], ["expert_mu"], axis=1),
        n("Concat", [f"{m}_lv3" for m in names], ["expert_logvar"], axis=1),
    ]
    return nodes, inits


def _fusion_nodes() -> tuple[list, list]:
    """Masked PoE with a N(0, I) prior expert (DESIGN §4) in plain ONNX ops."""
    n = helper.make_node
    inits = [_c("lo", -8.0), _c("hi", 8.0), _c("one", 1.0), _c("ax2", [2], np.int64)]
    nodes = [
        n("Clip", ["expert_logvar", "lo", "hi"], ["lv_c"]),
        n("Neg", ["lv_c"], ["neg_lv"]),
        n("Exp", ["neg_lv"], ["prec_raw"]),
        n("Unsqueeze", ["mask", "ax2"], ["mask3"]),
        n("Mul", ["prec_raw", "mask3"], ["prec"]),
        n("ReduceSum", ["prec", "ax1"], ["prec_sum"], keepdims=0),
        n("Add", ["prec_sum", "one"], ["total"]),
        n("Mul", ["prec", "expert_mu"], ["prec_mu"]),
        n("ReduceSum", ["prec_mu", "ax1"], ["weighted"], keepdims=0),
        n("Div", ["weighted", "total"], ["z_mu"]),
        n("Log", ["total"], ["log_total"]),
        n("Neg", ["log_total"], ["z_logvar"]),
    ]
    return nodes, inits


def _decoder_nodes(z: str) -> tuple[list, list]:
    n = helper.make_node
    nodes, inits = [], []
    for i, (m, shape) in enumerate(MODALITIES.items()):
        size = int(np.prod(shape))
        inits += [_w(f"V_{m}", (D, size), seed=10 + i), _c(f"shape_{m}", [-1, *shape], np.int64)]
        nodes += [
            n("MatMul", [z, f"V_{m}"], [f"{m}_rflat"]),
            n("Reshape", [f"{m}_rflat", f"shape_{m}"], [f"recon_{m}"]),
        ]
    return nodes, inits


def _inputs() -> list:
    return [_io(m, ["batch", *s]) for m, s in MODALITIES.items()] + [
        _io("mask", ["batch", len(MODALITIES)])
    ]


def _recon_outputs() -> list:
    return [_io(f"recon_{m}", ["batch", *s]) for m, s in MODALITIES.items()]


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    for i, node in enumerate(graph.node):  # exporters name nodes; parser errors quote the names
        node.name = node.name or f"/{graph.name}/{node.op_type}_{i}"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def encode_model() -> onnx.ModelProto:
    enc, enc_i = _encoder_nodes()
    fus, fus_i = _fusion_nodes()
    m = len(MODALITIES)
    outputs = [
        _io("z_mu", ["batch", D]),
        _io("z_logvar", ["batch", D]),
        _io("expert_mu", ["batch", m, D]),
        _io("expert_logvar", ["batch", m, D]),
    ]
    g = helper.make_graph(enc + fus, "encode", _inputs(), outputs, initializer=enc_i + fus_i)
    return _model(g)


def decode_model() -> onnx.ModelProto:
    dec, dec_i = _decoder_nodes("z")
    g = helper.make_graph(dec, "decode", [_io("z", ["batch", D])], _recon_outputs(), dec_i)
    return _model(g)


def analyze_model() -> onnx.ModelProto:
    n = helper.make_node
    enc, enc_i = _encoder_nodes()
    fus, fus_i = _fusion_nodes()
    dec, dec_i = _decoder_nodes("z_mu")
    score = []
    for m in MODALITIES:
        score += [
            n("Sub", [m, f"recon_{m}"], [f"{m}_diff"]),
            n("Mul", [f"{m}_diff", f"{m}_diff"], [f"{m}_sq"]),
            n("Flatten", [f"{m}_sq"], [f"{m}_sqf"], axis=1),
            n("ReduceMean", [f"{m}_sqf"], [f"{m}_err"], axes=[1], keepdims=1),
        ]
    score += [
        n("Mul", ["z_mu", "z_mu"], ["mu2"]),
        n("ReduceSum", ["mu2", "ax1"], ["kl"], keepdims=1),
        n("Sub", ["kl", "kl"], ["cross"]),
        n("Concat", [*[f"{m}_err" for m in MODALITIES], "kl", "cross"], ["score_parts"], axis=1),
        n("ReduceSum", ["score_parts", "ax1"], ["score"], keepdims=0),
    ]
    p = len(MODALITIES) + 2
    outputs = [
        _io("z_mu", ["batch", D]),
        _io("z_logvar", ["batch", D]),
        *_recon_outputs(),
        _io("score", ["batch"]),
        _io("score_parts", ["batch", p]),
    ]
    g = helper.make_graph(
        enc + fus + dec + score, "analyze", _inputs(), outputs, enc_i + fus_i + dec_i
    )
    return _model(g)


def write_export(out: Path, precisions: tuple[str, ...] = ("fp32",), *, stats: bool = True) -> Path:
    """Write analyze/encode/decode ONNX (+ precision copies, score_stats.json) into ``out``.

    The fp16/int8 files are byte copies of the fp32 ones: the fake TensorRT does not look at
    precision, only the file names matter for these tests.
    """
    out.mkdir(parents=True, exist_ok=True)
    for name, model in (
        ("analyze", analyze_model()),
        ("encode", encode_model()),
        ("decode", decode_model()),
    ):
        base = out / f"{name}.onnx"
        onnx.save(model, str(base))
        for precision in precisions:
            suffix = {"fp32": None, "fp16": ".fp16.onnx", "int8": ".int8.trt.onnx"}[precision]
            if suffix:
                shutil.copyfile(base, out / f"{name}{suffix}")
    if stats:
        (out / "score_stats.json").write_text(json.dumps(SCORE_STATS))
    return out


def feed(batch: int, seed: int = 0, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """A random input feed for the tiny graphs (mask all present unless given)."""
    rng = np.random.default_rng(seed)
    f = {m: rng.normal(size=(batch, *s)).astype(np.float32) for m, s in MODALITIES.items()}
    f["mask"] = (
        np.ones((batch, len(MODALITIES)), np.float32) if mask is None else mask.astype(np.float32)
    )
    return f
