"""Model shapes, share groups, masks, baselines, config, summary budgets and ONNX export."""

import io
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from edgevae.errors import ConfigError, ShapeError
from edgevae.modalities import ModalitySet, ModalitySpec
from edgevae.model.analyze import AnalyzeGraph, DecodeGraph, EncodeGraph
from edgevae.model.config import ModelConfig, default_modalities
from edgevae.model.scoring import ScoreStats
from edgevae.model.summary import summarize, summarize_preset
from edgevae.model.vae import AnalyzeOutput, build_model


def tiny_modalities() -> ModalitySet:
    """Every kind, an RGB share group of two views, odd sizes; small enough for fast tests."""
    return ModalitySet(
        [
            ModalitySpec("cam0", "video", (6, 16, 12), dtype="uint8", channels=3, share="cams"),
            ModalitySpec("cam1", "video", (6, 16, 12), dtype="uint8", channels=3, share="cams"),
            ModalitySpec("gray", "video", (4, 8, 8), dtype="uint8"),
            ModalitySpec("audio", "spectrogram", (1, 8, 9)),
            ModalitySpec("motion", "series", (7, 3)),
            ModalitySpec("feat", "vector", (5,)),
        ]
    )


def tiny_config(kind="mvae", **kw):
    base = {"latent_dim": 6, "width": 4, "max_width": 8, "decoder_width": 4, "mlp_hidden": 8}
    return ModelConfig.from_preset("nano", kind, **{**base, **kw})


def batch(mods, b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    inputs = {}
    for s in mods:
        x = torch.rand((b, *s.shape), generator=g)
        inputs[s.name] = x if s.kind.value == "video" else x * 4 - 2
    return inputs, torch.ones(b, len(mods))


@pytest.mark.parametrize("dense_max", [0, 2048], ids=["conv", "dense"])
@pytest.mark.parametrize("kind", ["mvae", "concat-ae", "unimodal"])
def test_output_shapes_for_every_modality_kind(kind, dense_max):
    mods = tiny_modalities()
    model = build_model(mods, tiny_config(kind, dense_max_elements=dense_max)).eval()
    inputs, mask = batch(mods)
    out = model(inputs, mask)
    assert isinstance(out, AnalyzeOutput)
    assert out.z_mu.shape == (3, 6) and out.z_logvar.shape == (3, 6)
    assert out.expert_mu.shape == (3, 6, 6) and out.expert_logvar.shape == (3, 6, 6)
    assert list(out.recon) == list(mods.names)
    for s in mods:
        assert out.recon[s.name].shape == (3, *s.shape)
        assert torch.isfinite(out.recon[s.name]).all()
    assert model.modalities is mods and model.config.kind == kind


def test_small_series_and_spectrograms_go_dense_and_large_ones_stay_convolutional():
    mods = tiny_modalities()  # audio 72 values, motion 21, cameras 288+
    dense = build_model(mods, tiny_config(dense_max_elements=72))
    conv_types = (nn.Conv1d, nn.Conv2d)
    for name in ("audio", "motion", "feat"):
        assert not any(isinstance(m, conv_types) for m in dense.encoders[name].modules())
        assert not any(isinstance(m, conv_types) for m in dense.decoders[name].modules())
    assert any(isinstance(m, nn.Conv2d) for m in dense.encoders["cams"].modules())
    # one value over the limit: the spectrogram keeps its conv stack, the series goes dense
    mixed = build_model(mods, tiny_config(dense_max_elements=71))
    assert any(isinstance(m, nn.Conv2d) for m in mixed.encoders["audio"].modules())
    assert not any(isinstance(m, nn.Conv1d) for m in mixed.encoders["motion"].modules())
    conv = build_model(mods, tiny_config(dense_max_elements=0))
    assert any(isinstance(m, nn.Conv1d) for m in conv.encoders["motion"].modules())
    assert any(isinstance(m, nn.Conv1d) for m in conv.decoders["motion"].modules())


def test_configs_saved_before_dense_decoders_load_as_convolutional():
    old = ModelConfig.from_preset("nano").to_dict()
    del old["dense_max_elements"]  # a model.json written before the knob existed
    assert ModelConfig.from_dict(old).dense_max_elements == 0
    assert ModelConfig.from_preset("nano").dense_max_elements == 2048
    assert ModelConfig.from_preset("nano").subsets_k == 0
    assert ModelConfig.from_preset("small").subsets_k == 2


def test_video_reconstructions_are_in_unit_range_and_others_linear():
    mods = tiny_modalities()
    model = build_model(mods, tiny_config())
    for p in model.parameters():  # large weights: a linear output would leave [0, 1]
        nn.init.normal_(p, std=1.0)
    out = model(*batch(mods))
    for name in ("cam0", "cam1", "gray"):
        assert out.recon[name].min() >= 0 and out.recon[name].max() <= 1
    assert out.recon["audio"].abs().max() > 1 or out.recon["audio"].min() < 0


def test_share_group_shares_the_trunk_but_keeps_views_distinct():
    mods = tiny_modalities()
    model = build_model(mods, tiny_config())
    assert set(model.encoders) == {"cams", "gray", "audio", "motion", "feat"}
    assert model.encoders["cams"].names == ("cam0", "cam1")
    assert len(model.encoders["cams"].heads) == 2  # one adapter head per view
    inputs, _ = batch(mods)
    inputs["cam1"] = inputs["cam0"].clone()  # identical pixels in both views
    mu, _ = model.experts(inputs)
    assert not torch.allclose(mu[:, 0], mu[:, 1])  # per-view heads tell the views apart
    # the shared trunk gives the same features for the same pixels
    h0, h1 = model.encoders["cams"].trunk_features([inputs["cam0"], inputs["cam1"]])
    assert torch.equal(h0, h1)
    r = model.decode(torch.randn(2, 6))
    assert not torch.allclose(r["cam0"], r["cam1"])


def test_decoders_use_upsample_and_conv_never_conv_transpose():
    model = build_model(tiny_modalities(), tiny_config())
    kinds = {type(m) for m in model.modules()}
    assert nn.ConvTranspose2d not in kinds and nn.ConvTranspose1d not in kinds
    assert not any(isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) for m in model.modules())
    group = build_model(tiny_modalities(), tiny_config(norm="group"))
    assert any(isinstance(m, nn.GroupNorm) for m in group.modules())


def test_masked_modality_does_not_change_the_posterior_and_empty_rows_give_the_prior():
    mods = tiny_modalities()
    model = build_model(mods, tiny_config()).eval()
    inputs, mask = batch(mods)
    mask[0, 3] = 0  # audio missing in row 0
    mask[1] = 0  # nothing present in row 1
    out = model(inputs, mask)
    inputs2 = dict(inputs, audio=torch.randn_like(inputs["audio"]) * 100)
    out2 = model(inputs2, mask)
    assert torch.equal(out.z_mu[0], out2.z_mu[0])
    assert torch.equal(out.z_mu[1], torch.zeros(6)) and torch.equal(out.z_logvar[1], torch.zeros(6))
    assert not torch.equal(out.z_mu[2], out2.z_mu[2])  # audio present there


def test_forward_is_deterministic_and_expert_logvars_within_clamp():
    mods = tiny_modalities()
    model = build_model(mods, tiny_config()).eval()
    inputs, mask = batch(mods)
    a, b = model(inputs, mask), model(inputs, mask)
    assert torch.equal(a.z_mu, b.z_mu) and torch.equal(a.recon["cam0"], b.recon["cam0"])
    for p in model.parameters():
        nn.init.normal_(p, std=3.0)
    lv = model(inputs, mask).expert_logvar
    assert lv.abs().max() <= 8.0 and torch.isfinite(lv).all()


def test_concat_ae_has_one_deterministic_latent_and_zero_experts():
    mods = tiny_modalities()
    model = build_model(mods, tiny_config("concat-ae")).eval()
    assert model.variational is False
    inputs, mask = batch(mods)
    mask[0, 0] = 0
    out = model(inputs, mask)
    assert torch.equal(out.z_logvar, torch.zeros_like(out.z_logvar))
    assert torch.equal(out.expert_mu, torch.zeros_like(out.expert_mu))
    assert torch.equal(out.expert_logvar, torch.zeros_like(out.expert_logvar))
    # a masked modality's features are zeroed: its data does not matter
    out2 = model(dict(inputs, cam0=torch.rand_like(inputs["cam0"])), mask)
    assert torch.equal(out.z_mu[0], out2.z_mu[0]) and not torch.equal(out.z_mu[1], out2.z_mu[1])


def test_unimodal_uses_cameras_only():
    mods = tiny_modalities()
    model = build_model(mods, tiny_config("unimodal")).eval()
    assert model.active == (True, True, True, False, False, False)
    assert set(model.encoders) == {"cams", "gray"}
    inputs, mask = batch(mods)
    out = model(inputs, mask)
    out2 = model(dict(inputs, audio=inputs["audio"] + 5), mask)
    assert torch.equal(out.z_mu, out2.z_mu)  # audio never reaches the posterior
    for name in ("audio", "motion", "feat"):
        assert torch.equal(out.recon[name], torch.zeros_like(out.recon[name]))
        i = mods.index(name)
        assert torch.equal(out.expert_mu[:, i], torch.zeros(3, 6))
    assert model.effective_mask(mask)[:, 3:].abs().sum() == 0


def test_unimodal_without_cameras_is_a_config_error():
    mods = ModalitySet([ModalitySpec("audio", "spectrogram", (1, 8, 8))])
    with pytest.raises(ConfigError, match="unimodal baseline uses the camera"):
        build_model(mods, tiny_config("unimodal"))


def test_bad_inputs_are_shape_errors():
    mods = tiny_modalities()
    model = build_model(mods, tiny_config())
    inputs, mask = batch(mods)
    with pytest.raises(ShapeError, match=r"inputs lack modalities \['feat'\]"):
        model({k: v for k, v in inputs.items() if k != "feat"}, mask)
    with pytest.raises(ShapeError, match="modality 'audio' has shape"):
        model(dict(inputs, audio=torch.zeros(3, 1, 9, 8)), mask)
    with pytest.raises(ShapeError, match="mask has shape"):
        model(inputs, mask[:, :4])


# -- config ---------------------------------------------------------------------------------------


def test_config_presets_round_trip_and_overrides():
    cfg = ModelConfig.from_preset("small", "concat-ae", latent_dim=16, recon_weights={"video": 2})
    assert cfg.width == 32 and cfg.latent_dim == 16 and cfg.kind == "concat-ae"
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.recon_weight(default_modalities()["cam0"]) == 2.0
    assert cfg.recon_weight(default_modalities()["audio"]) == 1.0
    named = ModelConfig(recon_weights={"video": 2, "cam1": 3})
    assert named.recon_weight(default_modalities()["cam1"]) == 3.0
    # missing keys take the preset's values
    assert ModelConfig.from_dict({"preset": "base"}).width == 64


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"preset": "nanoo"}, "Did you mean 'nano'"),
        ({"kind": "mvea"}, "Did you mean 'mvae'"),
        ({"latent_dm": 3}, "Did you mean 'latent_dim'"),
        ({"latent_dim": 0}, "'latent_dim' must be an integer"),
        ({"beta": -1.0}, "'beta' must be >= 0"),
        ({"modality_dropout": 1.0}, "'modality_dropout' must be in"),
        ({"norm": "batch"}, "unknown norm 'batch'"),
        ({"max_width": 2}, "'max_width' .* must be >= 'width'"),
        ({"recon_weights": {"audio": -1}}, "must be >= 0"),
        ({"recon_scale": 0}, "'recon_scale' must be > 0"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    preset = kwargs.pop("preset", "nano")
    kind = kwargs.pop("kind", "mvae")
    with pytest.raises(ConfigError, match=message):
        ModelConfig.from_preset(preset, kind, **kwargs)


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ConfigError, match=r"unknown model config keys \['colour'\]"):
        ModelConfig.from_dict({"preset": "nano", "colour": 1})
    with pytest.raises(ConfigError, match="must be a JSON object"):
        ModelConfig.from_dict([1])  # type: ignore[arg-type]


def test_default_modalities():
    mods = default_modalities()
    assert mods.names == ("cam0", "cam1", "cam2", "audio", "motion")
    assert mods["cam0"].shape == (8, 64, 64) and mods["cam0"].share == "cams"
    assert default_modalities(cameras=1).names[0] == "cam0"
    with pytest.raises(ConfigError):
        default_modalities(cameras=0)


# -- summary --------------------------------------------------------------------------------------


def test_preset_parameter_budgets_on_default_modalities():
    sizes = {p: summarize_preset(p).params for p in ("nano", "small", "base")}
    assert sizes["nano"] <= 1_000_000
    assert sizes["small"] <= 5_000_000
    assert sizes["base"] > sizes["small"] > sizes["nano"]
    nano = summarize_preset("nano")
    assert nano.macs <= 40_000_000  # kept CPU-trainable (measured 31.8 M)
    assert nano.macs == nano.encode_macs + nano.decode_macs
    assert sum(r.params for r in nano.rows) == nano.params


def test_summary_counts_macs_exactly_on_a_vector_model():
    mods = ModalitySet([ModalitySpec("feat", "vector", (5,))])
    cfg = ModelConfig.from_preset("nano", latent_dim=3, mlp_hidden=4, blocks_per_stage=1)
    s = summarize(build_model(mods, cfg))
    enc = 5 * 4 + 4 * 4 + 4 * 6  # Linear 5->4, 4->4, head 4->2D
    dec = 3 * 4 + 4 * 4 + 4 * 5  # input 3->4, 4->4, out 4->5
    assert (s.encode_macs, s.decode_macs) == (enc, dec)
    assert s.params == sum(p.numel() for p in build_model(mods, cfg).parameters())


def test_summary_counts_each_camera_view():
    one = summarize_preset("nano", modalities=default_modalities(cameras=1))
    three = summarize_preset("nano")
    cams1 = next(r for r in one.rows if r.name == "encoders.cams")
    cams3 = next(r for r in three.rows if r.name == "encoders.cams")
    assert cams3.macs == 3 * cams1.macs  # every view runs the shared trunk
    assert cams3.params < 3 * cams1.params  # but the trunk's weights are stored once


# -- export ---------------------------------------------------------------------------------------


def _export(graph, batch_size=2):
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            graph.example_inputs(batch_size),
            f,
            input_names=graph.input_names,
            output_names=graph.output_names,
            dynamic_axes=graph.dynamic_axes,
            opset_version=17,
            dynamo=False,
        )
    return f.getvalue()


@pytest.mark.parametrize(
    ("kind", "combine"),
    [("mvae", "sum"), ("mvae", "max"), ("unimodal", "max"), ("concat-ae", "sum")],
)
def test_analyze_graph_exports_with_dynamic_batch_and_matches_torch(kind, combine):
    ort = pytest.importorskip("onnxruntime")
    mods = tiny_modalities()
    model = build_model(mods, tiny_config(kind)).eval()
    stats = ScoreStats.identity(mods.names, combine)
    stats.mean[0], stats.std[0] = 0.1, 0.5
    graph = AnalyzeGraph(model, stats).eval()
    sess = ort.InferenceSession(_export(graph), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == [*mods.names, "mask"]
    assert [o.name for o in sess.get_outputs()] == [
        "z_mu",
        "z_logvar",
        *(f"recon_{n}" for n in mods.names),
        "score",
        "score_parts",
    ]
    inputs, mask = batch(mods, b=4, seed=1)  # exported at batch 2, run at batch 4
    mask[1, :3] = 0
    mask[2] = 0
    args = (*inputs.values(), mask)
    with torch.no_grad():
        ref = graph(*args)
    got = sess.run(None, {n: a.numpy() for n, a in zip(graph.input_names, args, strict=True)})
    for name, g, r in zip(graph.output_names, got, ref, strict=True):
        assert g.shape == tuple(r.shape), name
        np.testing.assert_allclose(g, r.numpy(), atol=3e-4, rtol=1e-4, err_msg=name)


def test_encode_and_decode_graphs_export_and_match():
    ort = pytest.importorskip("onnxruntime")
    mods = tiny_modalities()
    model = build_model(mods, tiny_config()).eval()
    enc, dec = EncodeGraph(model).eval(), DecodeGraph(model).eval()
    assert enc.output_names == ["z_mu", "z_logvar", "expert_mu", "expert_logvar"]
    assert dec.input_names == ["z"] and dec.output_names[0] == "recon_cam0"
    inputs, mask = batch(mods, b=3)
    for graph, args in ((enc, (*inputs.values(), mask)), (dec, (torch.randn(3, 6),))):
        sess = ort.InferenceSession(_export(graph), providers=["CPUExecutionProvider"])
        got = sess.run(None, {n: a.numpy() for n, a in zip(graph.input_names, args, strict=True)})
        with torch.no_grad():
            ref = graph(*args)
        for g, r in zip(got, ref, strict=True):
            np.testing.assert_allclose(g, r.numpy(), atol=3e-4, rtol=1e-4)


def test_analyze_graph_rejects_score_stats_of_other_modalities():
    model = build_model(tiny_modalities(), tiny_config())
    with pytest.raises(ShapeError, match="refit them"):
        AnalyzeGraph(model, ScoreStats.identity(["cam0", "audio"]))
