"""Graph analysis and the FP16 path on a hand-built graph (no training, milliseconds)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgevae.quant.fp16 import FLOAT, FLOAT16, convert, island_violations
from edgevae.quant.graph import (
    first_and_last_layers,
    fp32_island,
    outputs_consumed_inside,
    quantized_ops,
)

ISLAND = {"clip", "neg", "exp", "sum", "add", "log", "double"}


def _model() -> onnx.ModelProto:
    """x -> gemm1 -> h; h -> clip/neg/exp/reducesum/add/log -> lv (an output also consumed by
    'double' -> lv2); h -> gemm2 -> sigmoid -> recon."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 8)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal((8, 6)).astype(np.float32), "w2"),
        numpy_helper.from_array(np.array([-8.0], np.float32), "lo"),
        numpy_helper.from_array(np.array([8.0], np.float32), "hi"),
        numpy_helper.from_array(np.array([1], np.int64), "axes"),
        numpy_helper.from_array(np.array([1.0], np.float32), "one"),
        numpy_helper.from_array(np.array([2.0], np.float32), "two"),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "w1"], ["h"], name="gemm1"),
        helper.make_node("Clip", ["h", "lo", "hi"], ["c"], name="clip"),
        helper.make_node("Neg", ["c"], ["n"], name="neg"),
        helper.make_node("Exp", ["n"], ["e"], name="exp"),
        helper.make_node("ReduceSum", ["e", "axes"], ["s"], name="sum", keepdims=1),
        helper.make_node("Add", ["s", "one"], ["p"], name="add"),
        helper.make_node("Log", ["p"], ["lv"], name="log"),
        helper.make_node("Mul", ["lv", "two"], ["lv2"], name="double"),
        helper.make_node("Gemm", ["h", "w2"], ["g"], name="gemm2"),
        helper.make_node("Sigmoid", ["g"], ["recon"], name="sigmoid"),
    ]
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "toy",
        [helper.make_tensor_value_info("x", f, ["batch", 4])],
        [
            helper.make_tensor_value_info("lv", f, ["batch", 1]),
            helper.make_tensor_value_info("lv2", f, ["batch", 1]),
            helper.make_tensor_value_info("recon", f, ["batch", 6]),
        ],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_island_first_last_and_consumed_outputs() -> None:
    model = _model()
    assert fp32_island(model) == ISLAND
    first, last = first_and_last_layers(model)
    assert first == {"gemm1"}  # gemm2 reads gemm1's output
    assert last == {"gemm1", "gemm2"}  # gemm1 feeds the island, gemm2 an output
    assert outputs_consumed_inside(model) == ["lv"]
    assert quantized_ops(model) == []


def test_fp16_keeps_island_and_io_fp32() -> None:
    model = _model()
    data, details = convert(model.SerializeToString())
    m16 = onnx.shape_inference.infer_shapes(onnx.load_from_string(data))
    onnx.checker.check_model(m16, full_check=True)
    assert {v.type.tensor_type.elem_type for v in [*m16.graph.input, *m16.graph.output]} == {FLOAT}
    types = {v.name: v.type.tensor_type.elem_type for v in m16.graph.value_info}
    nodes = {n.name: n for n in m16.graph.node}
    for name in ISLAND:  # exp/log/reduce/clamp and their neighbours: FP32 outputs
        for out in nodes[name].output:
            assert types.get(out, FLOAT) == FLOAT, (name, out)
    assert island_violations(m16, ISLAND) == []
    # the heavy layers really are FP16
    weights = {i.name: i.data_type for i in m16.graph.initializer}
    assert weights["w1"] == FLOAT16 and weights["w2"] == FLOAT16
    assert details["round_trips_removed"] >= 1 and "lv" in details["isolated_outputs"]
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    ref = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    out = ort.InferenceSession(data).run(None, {"x": x})
    for a, b in zip(ref, out, strict=True):
        assert b.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-2, atol=1e-2)


def test_round_trip_detector_flags_rounded_island_input() -> None:
    """A Cast(->fp16)->Cast(->fp32) pair feeding an island node is reported."""
    model = _model()
    nodes = list(model.graph.node)
    i = next(k for k, n in enumerate(nodes) if n.name == "neg")
    nodes[i].input[0] = "c32"
    extra = [
        helper.make_node("Cast", ["c"], ["c16"], name="to16", to=FLOAT16),
        helper.make_node("Cast", ["c16"], ["c32"], name="to32", to=FLOAT),
    ]
    del model.graph.node[:]
    model.graph.node.extend(nodes[:i] + extra + nodes[i:])
    problems = island_violations(model, ISLAND)
    assert problems == ["Neg 'neg' reads 'c32' rounded through FP16"]
