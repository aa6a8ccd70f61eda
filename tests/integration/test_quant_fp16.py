"""`edgevae quantize --precision fp16` on a tiny trained export: FP32 islands, FP32 I/O, the
gate's ✅ and its ❎ on a deliberately broken model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests.cli_util import invoke
from tests.quant_util import tiny_export

FUSION_OPS = {"Exp", "Log", "ReduceSum", "ReduceMean", "Clip"}
FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


@pytest.fixture
def export(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> tuple[Path, Path]:
    return tiny_export(tmp_path_factory, tmp_path / "export")


def test_fp16_islands_and_io(export: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    exp, data = export
    res = invoke(capsys, "quantize", exp, "--precision", "fp16", "--data", data, "--quiet")
    assert res.code == 0, res.err
    assert "✅" in res.out and "analyze.fp16.onnx" in res.out
    from edgevae.quant.fp16 import island_violations

    for graph in ("analyze", "encode", "decode"):
        path = exp / f"{graph}.fp16.onnx"
        model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
        for value in [*model.graph.input, *model.graph.output]:
            assert value.type.tensor_type.elem_type == FLOAT, (graph, value.name)
        types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
        fusion = [n for n in model.graph.node if n.op_type in FUSION_OPS]
        assert bool(fusion) == (graph != "decode")  # decode has no fusion or scoring
        for node in fusion:  # exp/log/reduce/clamp compute and write FP32
            assert all(types.get(o, FLOAT) == FLOAT for o in node.output), node.name
        manifest = json.loads(path.with_name(path.name + ".manifest.json").read_text())
        island = set(manifest["details"]["excluded_nodes"])
        assert {n.name for n in fusion} <= island
        assert island_violations(model, island) == []
        # the conv/gemm weights really are FP16
        convs = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
        weights = {i.name: i.data_type for i in model.graph.initializer}
        assert convs and all(weights.get(n.input[1]) == FLOAT16 for n in convs)
        assert manifest["details"]["precision"] == "fp16"
        assert manifest["checks"]["accuracy_gate"]["verdict"] == "passed"
        assert manifest["inputs"][f"{graph}.onnx"]


def _break(data: bytes) -> bytes:
    """Scale the first conv's weights by 3: a model that still runs but is wrong."""
    model = onnx.load_from_string(data)
    inits = {i.name: i for i in model.graph.initializer}
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    src = inits.get(conv.input[1])
    if src is None:  # weights behind a Cast in the FP16 graph
        cast = next(n for n in model.graph.node if conv.input[1] in n.output)
        src = inits[cast.input[0]]
    w = numpy_helper.to_array(src)
    src.CopyFrom(numpy_helper.from_array((w * 3).astype(w.dtype), src.name))
    return model.SerializeToString()


def test_gate_fails_a_broken_model(
    export: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgevae.quant.fp16 as fp16

    exp, data = export
    real = fp16.convert
    monkeypatch.setattr(fp16, "convert", lambda d: (lambda r: (_break(r[0]), r[1]))(real(d)))
    res = invoke(capsys, "quantize", exp, "--precision", "fp16", "--data", data, "--graphs",
                 "decode", "--quiet")  # fmt: skip
    assert res.code == 1, res.err
    assert "❎ decode.fp16.onnx" in res.out and "FAILED | recon_" in res.out
    assert "built but failed the accuracy gate" in res.err
    path = exp / "decode.fp16.onnx"
    assert path.is_file()  # built (and marked), not silently dropped or replaced
    manifest = json.loads(path.with_name(path.name + ".manifest.json").read_text())
    gate = manifest["checks"]["accuracy_gate"]
    assert gate["verdict"] == "failed" and gate["task"]["psnr"]["passed"] is False
    assert manifest["details"]["precision"] == "fp16"
    report = json.loads((exp / "quantize.fp16.gate.json").read_text())
    assert report["verdict"] == "failed" and report["artifacts"][0]["symbol"] == "❎"


def test_gate_statistics_match_numpy(export: tuple[Path, Path]) -> None:
    """The streamed per-output statistics equal a direct computation."""
    from edgevae.export.tolerances import tolerance
    from edgevae.parity import compare_output
    from edgevae.quant.gate import _Stats

    rng = np.random.default_rng(0)
    ref = rng.standard_normal((10, 3))
    tgt = ref + rng.normal(0, 0.01, ref.shape)
    tol = tolerance("onnx-fp32", "ort", "int8", "score")
    acc = _Stats()
    for s in (slice(0, 4), slice(4, 10)):
        acc.add(ref[s], tgt[s], tol)
    streamed = acc.comparison("score", tol)
    direct = compare_output("score", ref, tgt, tol)
    assert streamed.max_abs == pytest.approx(direct.max_abs)
    assert streamed.sqnr_db == pytest.approx(direct.sqnr_db)
    assert streamed.cosine == pytest.approx(direct.cosine)
    assert streamed.worst_index == direct.worst_index
    del export
