"""`edgevae quantize --precision int8` on a tiny trained export: Q/DQ structure, manifests,
range-cache reuse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests.cli_util import invoke
from tests.quant_util import tiny_export

GRAPHS = ("analyze", "encode", "decode")
ISLAND_OPS = {"Exp", "Log", "ReduceSum", "ReduceMean", "Clip"}


@pytest.fixture(scope="module")
def int8_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from edgevae.cli import run

    export, data = tiny_export(tmp_path_factory, tmp_path_factory.mktemp("int8") / "export")
    args = ["quantize", export, "--precision", "int8", "--data", data, "--recipe", "quick",
            "--cpu-arch", "x86", "--quiet"]  # fmt: skip
    code = run([str(a) for a in args])
    doc = json.loads((export / "quantize.int8.gate.json").read_text())
    return {"export": export, "data": data, "code": code, "doc": doc}


def _graph(path: Path) -> tuple[onnx.ModelProto, dict[str, Any], dict[str, list[Any]]]:
    model = onnx.load(str(path))
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    return model, producers, consumers


def _const(model: onnx.ModelProto, name: str) -> np.ndarray:
    inits = {i.name: i for i in model.graph.initializer}
    return numpy_helper.to_array(inits[name])


def test_exit_code_matches_verdicts(int8_run: dict[str, Any]) -> None:
    doc = int8_run["doc"]
    verdicts = {a["artifact"]: a["verdict"] for a in doc["artifacts"]}
    assert set(verdicts) == {f"{g}.int8.{t}.onnx" for g in GRAPHS for t in ("trt", "cpu")}
    assert set(verdicts.values()) <= {"passed", "failed"}  # every artifact was built
    expected = 0 if set(verdicts.values()) == {"passed"} else 1
    assert int8_run["code"] == expected
    for a in doc["artifacts"]:
        assert a["symbol"] == {"passed": "✅", "failed": "❎"}[a["verdict"]]
        assert set(a["gate"]["outputs"]) and a["gate"]["layers"]["layers"]
    analyze = next(a for a in doc["artifacts"] if a["artifact"] == "analyze.int8.trt.onnx")
    assert {"auroc", "psnr"} <= set(analyze["gate"]["task"])


@pytest.mark.parametrize("graph", GRAPHS)
def test_trt_qdq_structure(int8_run: dict[str, Any], graph: str) -> None:
    export = int8_run["export"]
    path = export / f"{graph}.int8.trt.onnx"
    model, producers, consumers = _graph(path)
    manifest = json.loads(path.with_name(path.name + ".manifest.json").read_text())
    excluded = manifest["details"]["excluded_nodes"]
    # symmetric S8: every zero point is int8 0
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    for node in qdq:
        zp = _const(model, node.input[2])
        assert zp.dtype == np.int8 and not zp.any(), node.name
    quantized = 0
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        srcs = [producers.get(i) for i in node.input]
        weight_dq = srcs[1] is not None and srcs[1].op_type == "DequantizeLinear"
        if node.name in excluded:
            assert not weight_dq and not any(
                s is not None and s.op_type == "DequantizeLinear" for s in srcs
            ), f"excluded {node.name} has Q/DQ"
            continue
        if not weight_dq:
            continue
        quantized += 1
        w = (
            _const(model, srcs[1].input[0])
            if srcs[1].input[0] in {i.name for i in model.graph.initializer}
            else _const(model, producers[srcs[1].input[0]].input[0])
        )
        scale = _const(model, srcs[1].input[1])
        out_channels = w.shape[0]  # Conv (OC, IC, ...) and Gemm transB (N, K)
        assert scale.shape == (out_channels,), f"{node.name}: not per-channel"
        if len(node.input) > 2:  # bias stays an FP32 initializer
            assert srcs[2] is None and _const(model, node.input[2]).dtype == np.float32
        assert not any(c.op_type == "QuantizeLinear" for c in consumers.get(node.output[0], []))
    assert quantized == manifest["details"]["quantized_count"] > 0
    # nothing of the FP32 island reads Q/DQ data, and no graph output comes from Q/DQ
    for node in model.graph.node:
        if node.op_type in ISLAND_OPS:
            assert node.name in excluded
            for i in node.input:
                src = producers.get(i)
                assert src is None or src.op_type != "DequantizeLinear", node.name
    for out in model.graph.output:
        assert producers[out.name].op_type not in ("QuantizeLinear", "DequantizeLinear")
        assert out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_cpu_artifact_is_u8s8_and_separate(int8_run: dict[str, Any]) -> None:
    export = int8_run["export"]
    cpu = export / "analyze.int8.cpu.onnx"
    trt = export / "analyze.int8.trt.onnx"
    assert cpu.read_bytes() != trt.read_bytes()
    model, _, _ = _graph(cpu)
    inits = {i.name for i in model.graph.initializer}
    activation_zp, weight_zp = set(), set()
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        dtype = _const(model, node.input[2]).dtype
        if dtype != np.int32:  # int32 biases (ORT's CPU default) are neither
            (weight_zp if node.input[0] in inits else activation_zp).add(dtype)
    assert activation_zp == {np.dtype(np.uint8)}  # U8 activations on x86
    assert weight_zp == {np.dtype(np.int8)}  # S8 weights
    details = json.loads(cpu.with_name(cpu.name + ".manifest.json").read_text())["details"]
    assert details["quantization"]["scheme"] == "U8S8" and details["target"] == "cpu"


def test_manifests_record_what_was_used(int8_run: dict[str, Any]) -> None:
    export = int8_run["export"]
    src_manifest = json.loads((export / "analyze.onnx.manifest.json").read_text())
    for flavor in ("trt", "cpu"):
        path = export / f"analyze.int8.{flavor}.onnx"
        m = json.loads(path.with_name(path.name + ".manifest.json").read_text())
        d = m["details"]
        assert d["precision"] == "int8" and d["target"] == flavor
        assert d["recipe"]["name"] == "quick" and d["method"] == "minmax"
        assert d["excluded_nodes"] and d["calibration"]["samples"] == 64
        assert m["inputs"]["analyze.onnx"] == src_manifest["sha256"]
        verdict = m["checks"]["accuracy_gate"]["verdict"]
        assert verdict in ("passed", "failed")
        assert d["modalities"] == src_manifest["details"]["modalities"]
    report = json.loads((export / "quantize.int8.gate.json").read_text())
    assert len(report["artifacts"]) == 6


def test_range_cache_reused_then_invalidated(
    int8_run: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgevae.quant.int8 as int8_mod

    export, data = int8_run["export"], int8_run["data"]
    cache = export / "calibration" / "analyze.minmax.ranges.json"
    before = cache.read_bytes()
    assert json.loads(before)["key"]["samples"] == 64

    def no_calibration(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("calibration ran although the range cache matches")

    monkeypatch.setattr(int8_mod, "calibrate", no_calibration)
    base = ["quantize", export, "--precision", "int8", "--target", "trt", "--graphs", "analyze",
            "--data", data, "--recipe", "quick", "--overwrite", "--json", "--quiet"]  # fmt: skip
    res = invoke(capsys, *base)
    assert res.code in (0, 1), res.err
    doc = json.loads(res.out)
    assert doc["calibration"]["graphs"]["analyze"]["status"] == "hit"
    assert cache.read_bytes() == before
    monkeypatch.undo()
    res = invoke(capsys, *base, "--samples", "48")
    assert res.code in (0, 1), res.err
    status = json.loads(res.out)["calibration"]["graphs"]["analyze"]["status"]
    assert status == "calibrated (stale (samples changed))"
    assert json.loads(cache.read_text())["key"]["samples"] == 48
