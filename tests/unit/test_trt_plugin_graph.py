"""Plugin-mode ONNX surgery on a tiny export (onnx + ONNX's reference evaluator; no TensorRT)."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

from edgevae.errors import ExportError
from edgevae.model.fusion import cross_modal_kl, kl_to_prior, poe
from edgevae.model.scoring import raw_parts, standardize
from edgevae.trt import plugin_graph as pg
from tests.fakes import tiny_export as tiny


class PoeFusion(OpRun):
    """edgevae::poe_fusion semantics, from the torch reference (edgevae.model.fusion)."""

    op_domain = "edgevae"

    def _run(self, mu, logvar, mask, plugin_namespace=None, plugin_version=None, aot=None):
        mu_t, lv_t, m_t = (torch.from_numpy(x) for x in (mu, logvar, mask))
        z_mu, z_lv = poe(mu_t, lv_t, m_t)
        kl = kl_to_prior(z_mu, z_lv)
        cross = cross_modal_kl(mu_t, lv_t, m_t)
        return tuple(t.numpy() for t in (z_mu, z_lv, kl, cross))


class AnomalyScore(OpRun):
    """edgevae::anomaly_score semantics on the concatenated layout (offsets split modalities)."""

    op_domain = "edgevae"

    def _run(self, x, r, mask, kl, cross, offsets, mean, std, weight, **_attrs):
        m = mask.shape[1]
        errs = np.stack(
            [((x[:, a:b] - r[:, a:b]) ** 2).mean(1) for a, b in itertools.pairwise(offsets)],
            axis=1,
        )
        n_present = np.maximum(mask.sum(1), 1.0)
        raw = np.concatenate(
            [errs * mask, kl[:, None], (cross.sum(1) / n_present)[:, None]], axis=1
        ).astype(np.float32)
        assert raw.shape[1] == m + 2
        tensors = (torch.from_numpy(np.array(v)) for v in (raw, mask, mean, std, weight))
        score, parts = standardize(*tensors)
        return score.numpy(), parts.numpy()


# ReferenceEvaluator finds custom ops by (op_domain, class name) = the node's (domain, op_type).
CUSTOM_OPS = [type("poe_fusion", (PoeFusion,), {}), type("anomaly_score", (AnomalyScore,), {})]


def _expected(feed: dict[str, np.ndarray], combine: str = "sum") -> dict[str, np.ndarray]:
    """analyze outputs from the unmodified encode/decode graphs + the torch scoring reference."""
    enc = ort.InferenceSession(tiny.encode_model().SerializeToString())
    dec = ort.InferenceSession(tiny.decode_model().SerializeToString())
    z_mu, z_lv, e_mu, e_lv = enc.run(["z_mu", "z_logvar", "expert_mu", "expert_logvar"], feed)
    names = [f"recon_{m}" for m in tiny.MODALITIES]
    recons = dec.run(names, {"z": z_mu})
    t = torch.from_numpy
    raw = raw_parts(
        [t(feed[m]) for m in tiny.MODALITIES],
        [t(r) for r in recons],
        t(feed["mask"]),
        t(z_mu),
        t(z_lv),
        t(e_mu),
        t(e_lv),
    )
    stats = [torch.tensor(tiny.SCORE_STATS[k]) for k in ("mean", "std", "weight")]
    score, parts = standardize(raw, t(feed["mask"]), *stats, combine)
    return {
        "z_mu": z_mu,
        "z_logvar": z_lv,
        **dict(zip(names, recons, strict=True)),
        "score": score.numpy(),
        "score_parts": parts.numpy(),
    }


@pytest.fixture(scope="module")
def plugin_model() -> tuple[onnx.ModelProto, pg.PluginGraphInfo]:
    return pg.build_plugin_model(tiny.encode_model(), tiny.decode_model(), tiny.SCORE_STATS)


def test_structure_has_two_plugin_nodes_and_the_analyze_contract(plugin_model):
    model, info = plugin_model
    custom = pg.custom_nodes(model)
    assert [n.op_type for n in custom] == ["poe_fusion", "anomaly_score"]
    for node in custom:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        assert attrs == {"plugin_namespace": b"edgevae", "plugin_version": b"1", "aot": 1}
    outputs = [o.name for o in model.graph.output]
    assert outputs == ["z_mu", "z_logvar", "recon_a", "recon_b", "score", "score_parts"]
    assert [i.name for i in model.graph.input] == ["a", "b", "mask"]
    assert info.modalities == ["a", "b"] and info.elements == [4, 6] and info.latent_dim == 3
    assert {o.domain: o.version for o in model.opset_import} == {"": tiny.OPSET, "edgevae": 1}


def test_the_fusion_subgraph_is_removed_and_decode_names_are_prefixed(plugin_model):
    model, _ = plugin_model
    ops = [n.op_type for n in model.graph.node]
    # the tiny encoder's only Clip/Exp/Log/Div are the fusion's: all gone
    assert not {"Clip", "Exp", "Log", "Div"} & set(ops)
    decode_nodes = [n for n in model.graph.node if n.name.startswith(pg.DECODE_PREFIX)]
    assert len(decode_nodes) == 4
    assert all(i in ("z_mu",) or i.startswith("decode/") for n in decode_nodes for i in n.input)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    np.testing.assert_array_equal(inits[pg.OFFSETS], [0, 4, 10])
    np.testing.assert_allclose(inits[pg.STD], tiny.SCORE_STATS["std"])
    assert "decode/V_a" in inits and "V_a" not in inits
    assert "lo" not in inits  # fusion constants pruned with the fusion


@pytest.mark.parametrize(
    "mask",
    [
        [[1, 1], [1, 1], [1, 1]],
        [[0, 1], [1, 0], [1, 1]],
        [[1, 0], [0, 1], [0, 0]],
    ],
    ids=["all-present", "one-missing", "only-one-or-none"],
)
def test_plugin_graph_computes_the_analyze_outputs(plugin_model, mask):
    model, _ = plugin_model
    feed = tiny.feed(3, seed=1, mask=np.asarray(mask))
    got = ReferenceEvaluator(model, new_ops=CUSTOM_OPS).run(None, feed)
    names = [o.name for o in model.graph.output]
    want = _expected(feed)
    for name, value in zip(names, got, strict=True):
        np.testing.assert_allclose(value, want[name], rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize(
    "mask", [[[1, 1], [0, 1], [1, 0]], [[0, 0], [1, 1], [0, 1]]], ids=["mixed", "one-empty-row"]
)
def test_max_rule_scores_the_largest_part_after_the_plugin(mask):
    stats = dict(tiny.SCORE_STATS, combine="max")
    model, _ = pg.build_plugin_model(tiny.encode_model(), tiny.decode_model(), stats)
    onnx.checker.check_model(model)
    score_node = next(n for n in model.graph.node if n.op_type == "anomaly_score")
    assert list(score_node.output) == [pg.SCORE_SUM, "score_parts"]  # its sum is not the score
    feed = tiny.feed(3, seed=2, mask=np.asarray(mask))
    got = dict(
        zip(
            [o.name for o in model.graph.output],
            ReferenceEvaluator(model, new_ops=CUSTOM_OPS).run(None, feed),
            strict=True,
        )
    )
    want, summed = _expected(feed, "max"), _expected(feed, "sum")
    np.testing.assert_allclose(got["score"], want["score"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["score_parts"], want["score_parts"], rtol=1e-5, atol=1e-5)
    assert not np.allclose(want["score"], summed["score"])  # the two rules differ on this feed


@pytest.mark.parametrize("opset", [17, 18])
def test_max_score_nodes_run_in_onnxruntime_at_both_reducemax_forms(opset):
    nodes, inits = pg._max_score_nodes(opset)
    weight = np.array([1.0, 2.0, 0.5, 1.0], np.float32)
    inits.append(onnx.numpy_helper.from_array(weight, pg.WEIGHT))
    f32 = onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "max",
        [
            helper.make_tensor_value_info("mask", f32, ["B", 2]),
            helper.make_tensor_value_info("score_parts", f32, ["B", 4]),
        ],
        [helper.make_tensor_value_info("score", f32, ["B"])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    mask = np.array([[1, 1], [1, 0], [0, 0]], np.float32)
    parts = np.array([[3, 1, 0.5, -1], [1, 0, -2, -3], [0, 0, -4, -2]], np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (score,) = sess.run(None, {"mask": mask, "score_parts": parts})
    np.testing.assert_allclose(score, [3.0, 1.0, -2.0])


def test_cpp_plugin_route_has_no_aot_attribute():
    model, _ = pg.build_plugin_model(
        tiny.encode_model(), tiny.decode_model(), tiny.SCORE_STATS, aot=False
    )
    for node in pg.custom_nodes(model):
        assert "aot" not in {a.name for a in node.attribute}


def test_write_plugin_onnx_is_atomic_and_loadable(tmp_path):
    tiny.write_export(tmp_path)
    out, info = pg.write_plugin_onnx(
        tmp_path / "encode.onnx", tmp_path / "decode.onnx", tiny.SCORE_STATS, tmp_path / "p.onnx"
    )
    assert info.parts == tiny.SCORE_STATS["names"]
    onnx.checker.check_model(onnx.load(str(out)))
    assert not list(tmp_path.glob(".p.onnx.*"))


def _drop_output(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    keep = [o for o in model.graph.output if o.name != name]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    return model


def test_missing_contract_output_is_named():
    enc = _drop_output(tiny.encode_model(), "expert_logvar")
    with pytest.raises(ExportError, match=r"lacks output\(s\) \['expert_logvar'\].*edgevae export"):
        pg.build_plugin_model(enc, tiny.decode_model(), tiny.SCORE_STATS)


def test_stats_for_other_modalities_are_refused():
    stats = dict(tiny.SCORE_STATS, names=["recon_x", "recon_b", "kl_prior", "cross_modal"])
    with pytest.raises(ExportError, match="mixes two models"):
        pg.build_plugin_model(tiny.encode_model(), tiny.decode_model(), stats)


def test_decode_with_other_inputs_is_refused():
    dec = tiny.decode_model()
    dec.graph.input[0].name = "latent"
    with pytest.raises(ExportError, match=r"decode graph takes \['latent'\], expected exactly"):
        pg.build_plugin_model(tiny.encode_model(), dec, tiny.SCORE_STATS)


def test_opset_mismatch_is_refused():
    dec = tiny.decode_model()
    dec.opset_import[0].version = 13
    with pytest.raises(ExportError, match="different opsets"):
        pg.build_plugin_model(tiny.encode_model(), dec, tiny.SCORE_STATS)


def test_control_flow_is_refused():
    dec = tiny.decode_model()
    sub = helper.make_graph([], "g", [], [])
    dec.graph.node.append(helper.make_node("If", ["c"], ["o"], then_branch=sub, else_branch=sub))
    with pytest.raises(ExportError, match="control flow"):
        pg.build_plugin_model(tiny.encode_model(), dec, tiny.SCORE_STATS)


def test_unreadable_onnx_is_an_export_error(tmp_path):
    bad = tmp_path / "encode.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(ExportError, match="not a readable ONNX model"):
        pg.write_plugin_onnx(bad, bad, tiny.SCORE_STATS, tmp_path / "p.onnx")


def test_experts_only_encode_drops_the_fusion():
    model = pg.experts_only_model(tiny.encode_model())
    assert [o.name for o in model.graph.output] == ["expert_mu", "expert_logvar"]
    assert not {"Clip", "Exp", "Log", "Div"} & {n.op_type for n in model.graph.node}
    feed = tiny.feed(2, seed=3)
    got = ort.InferenceSession(model.SerializeToString()).run(None, feed)
    full = ort.InferenceSession(tiny.encode_model().SerializeToString())
    want = full.run(["expert_mu", "expert_logvar"], feed)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    with pytest.raises(ExportError, match="lacks output"):
        pg.experts_only_model(_drop_output(tiny.encode_model(), "expert_mu"))
