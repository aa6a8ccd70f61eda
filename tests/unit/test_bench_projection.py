import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgevae.bench.projection import (
    DEVICES,
    ESTIMATE_LABEL,
    GraphCost,
    onnx_cost,
    project,
    projection_markdown,
)
from edgevae.errors import ConfigError, ExportError


def small_graph() -> onnx.ModelProto:
    """x (batch, 2, 8, 8) -> Conv 2->4 3x3 pad 1 -> ConvTranspose 4->2 k2 s2 -> Flatten -> MatMul
    (512 x 3) -> Gemm (3 x 5)."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 2, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal((4, 2, 2, 2)).astype(np.float32), "w2"),
        numpy_helper.from_array(rng.standard_normal((512, 3)).astype(np.float32), "w3"),
        numpy_helper.from_array(rng.standard_normal((3, 5)).astype(np.float32), "w4"),
        numpy_helper.from_array(np.zeros(5, np.float32), "b4"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["h1"], pads=[1, 1, 1, 1]),
        helper.make_node("ConvTranspose", ["h1", "w2"], ["h2"], strides=[2, 2]),
        helper.make_node("Flatten", ["h2"], ["h3"]),
        helper.make_node("MatMul", ["h3", "w3"], ["h4"]),
        helper.make_node("Gemm", ["h4", "w4", "b4"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5])],
        inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_onnx_cost_counts_macs_params_and_tensors(tmp_path):
    path = tmp_path / "small.onnx"
    onnx.save(small_graph(), str(path))
    cost = onnx_cost(path)
    conv = (4 * 8 * 8) * (2 * 3 * 3)  # output elements x (Cin/g * k * k)
    deconv = (4 * 8 * 8) * (2 * 2 * 2)  # input elements x (Cout/g * k * k)
    matmul = 3 * 512
    gemm = 5 * 3
    assert cost.ops == {"Conv": conv, "ConvTranspose": deconv, "MatMul": matmul, "Gemm": gemm}
    assert cost.macs == conv + deconv + matmul + gemm
    assert cost.params == 72 + 32 + 1536 + 15 + 5
    assert cost.io_elements == 2 * 8 * 8 + 5
    assert cost.activation_elements == 256 + 512 + 512 + 3  # h1, h2, h3, h4
    assert cost.unknown_shape_nodes == 0
    assert onnx_cost(small_graph().SerializeToString()).macs == cost.macs  # bytes too


def test_onnx_cost_rejects_a_corrupt_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ExportError, match="cannot read ONNX model"):
        onnx_cost(bad)


def test_roofline_compute_and_memory_bound():
    heavy = GraphCost(macs=10**9, params=1000, activation_elements=1000, io_elements=100,
                      counted_nodes=1)  # fmt: skip
    nano = next(d for d in DEVICES if d.key == "orin-nano-8gb-super")
    proj = project(heavy, devices=[nano], precisions=["fp16"], batches=[1, 4])
    r1, r4 = proj["rows"]
    assert r1["bound"] == "compute"
    expected_ms = 2e9 / (16.75e12) * 1e3
    assert r1["latency_ms_fused"] == pytest.approx(expected_ms)
    assert r4["latency_ms_fused"] == pytest.approx(4 * expected_ms)  # MACs scale with the batch
    light = GraphCost(macs=10, params=10**7, activation_elements=10**6, io_elements=10,
                      counted_nodes=1)  # fmt: skip
    row = project(light, devices=[nano], precisions=["int8"])["rows"][0]
    assert row["bound"] == "memory"
    fused = (10**7 * 1 + 10 * 4) / 102e9 * 1e3  # INT8 weights, FP32 I/O
    unfused = fused + 2 * 10**6 * 1 / 102e9 * 1e3
    assert row["latency_ms_fused"] == pytest.approx(fused)
    assert row["latency_ms_unfused"] == pytest.approx(unfused)
    assert row["latency_ms_fused"] <= row["latency_ms_unfused"]


def test_projection_is_labelled_and_skips_unknown_peaks():
    cost = GraphCost(macs=10**6, params=10**5, activation_elements=10**4, io_elements=10**3,
                     counted_nodes=3)  # fmt: skip
    proj = project(cost)
    assert proj["kind"] == "estimate" and proj["label"] == ESTIMATE_LABEL
    keys = {(r["device"], r["precision"]) for r in proj["rows"]}
    assert ("agx-thor-t5000", "fp16") in keys
    assert ("agx-thor-t5000", "fp32") not in keys  # no published FP32 rate: no row, no guess
    assert {d.key for d in DEVICES} >= {"orin-nano-8gb-super", "orin-nx-16gb-super",
                                        "agx-orin-64gb", "xavier-nx", "agx-thor-t5000"}  # fmt: skip
    md = projection_markdown(proj)
    assert "ESTIMATE" in md and "not measured" in md
    assert all(d.source for d in DEVICES)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"precisions": ["fp8"]}, "unknown precision"), ({"efficiency": 0.0}, "efficiency"),
     ({"batches": [0]}, "batch sizes")],
)  # fmt: skip
def test_projection_rejects_bad_options(kwargs, match):
    cost = GraphCost(1, 1, 1, 1, 1)
    with pytest.raises(ConfigError, match=match):
        project(cost, **kwargs)
