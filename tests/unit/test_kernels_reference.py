"""The NumPy kernel references vs the PyTorch contract functions (fusion, scoring, interpolate).

Chain of trust: edgevae.model.fusion / scoring (contract) == edgevae.kernels.reference (NumPy)
== host math of the kernels' header (test_kernels_hostmath.py) == the CUDA kernels (tests/gpu).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgevae.data.transforms import Normalizer
from edgevae.errors import ShapeError
from edgevae.kernels import checks, eager
from edgevae.kernels import reference as ref
from edgevae.modalities import ModalitySet, ModalitySpec
from edgevae.model import fusion, scoring

T = torch.from_numpy


def _assert_close(got, want, tol=1e-5):
    err = checks.normalised_error(np.asarray(got), np.asarray(want))
    assert err <= tol, err


def test_constants_match_the_contract():
    assert (ref.LOGVAR_MIN, ref.LOGVAR_MAX) == (fusion.LOGVAR_MIN, fusion.LOGVAR_MAX)


@pytest.mark.parametrize("case", [name for name, _ in checks.poe_cases(0)])
def test_poe_fusion_ref_matches_torch_fusion(case):
    kw = dict(checks.poe_cases(0))[case]
    out = ref.poe_fusion_ref(**kw)
    mu, lv, mask = T(kw["mu"]), T(kw["logvar"]), T(kw["mask"])
    z_mu, z_lv = fusion.poe(mu, lv, mask)
    _assert_close(out.z_mu, z_mu)
    _assert_close(out.z_logvar, z_lv)
    _assert_close(out.kl_prior, fusion.kl_to_prior(z_mu, z_lv))
    _assert_close(out.cross_kl, fusion.cross_modal_kl(mu, lv, mask))
    z = z_mu if kw["eps"] is None else fusion.reparameterize(z_mu, z_lv, T(kw["eps"]))
    _assert_close(out.z, z)
    eager_out = eager.poe_fusion_eager(mu, lv, mask, None if kw["eps"] is None else T(kw["eps"]))
    for got, want in zip(eager_out, out, strict=True):
        _assert_close(got, want)


def test_all_masked_row_is_the_prior():
    out = ref.poe_fusion_ref(np.ones((2, 3, 5)), np.ones((2, 3, 5)), np.zeros((2, 3)))
    assert np.all(out.z_mu == 0) and np.all(out.z_logvar == 0)
    assert np.all(out.kl_prior == 0) and np.all(out.cross_kl == 0)


@pytest.mark.parametrize("case", [name for name, _ in checks.score_cases(0)])
def test_anomaly_score_ref_matches_torch_scoring(case):
    kw = dict(checks.score_cases(0))[case]
    out = ref.anomaly_score_ref(**kw)
    mask = T(kw["mask"])
    xs, rs = [T(x) for x in kw["inputs"]], [T(r) for r in kw["recons"]]
    stats = [T(kw[k]) for k in ("mean", "std", "weight")]
    combine = kw.get("combine", "sum")
    e = eager.anomaly_score_eager(
        xs, rs, mask, T(kw["kl_prior"]), T(kw["cross_kl"]), *stats, combine
    )
    for got, want in zip(e, out, strict=True):
        _assert_close(got, want)
    score, parts = scoring.standardize(T(out.raw), mask, *stats, combine)
    _assert_close(score, out.score)
    _assert_close(parts, out.parts)
    m = len(xs)
    assert np.all(out.parts[:, :m][kw["mask"] == 0] == 0)
    assert np.all(out.raw[:, :m][kw["mask"] == 0] == 0)


def test_score_from_experts_matches_raw_parts():
    """poe_fusion_ref -> anomaly_score_ref == scoring.raw_parts over the same experts."""
    rng = np.random.default_rng(5)
    b, m, d = 6, 3, 16
    mu = rng.normal(size=(b, m, d)).astype(np.float32)
    lv = rng.normal(size=(b, m, d)).astype(np.float32)
    mask = (rng.random((b, m)) < 0.6).astype(np.float32)
    xs = [rng.random((b, 4, 5), dtype=np.float32) for _ in range(m)]
    rs = [rng.random((b, 4, 5), dtype=np.float32) for _ in range(m)]
    fused = ref.poe_fusion_ref(mu, lv, mask)
    stats = ([0.0] * (m + 2), [1.0] * (m + 2), [1.0] * (m + 2))
    out = ref.anomaly_score_ref(xs, rs, mask, fused.kl_prior, fused.cross_kl, *stats)
    z_mu, z_lv = fusion.poe(T(mu), T(lv), T(mask))
    raw = scoring.raw_parts([T(x) for x in xs], [T(r) for r in rs], T(mask), z_mu, z_lv,
                            T(mu), T(lv))  # fmt: skip
    _assert_close(out.raw, raw)


@pytest.mark.parametrize("case", [name for name, _ in checks.preprocess_cases(0)])
def test_preprocess_ref_matches_torch_interpolate(case):
    kw = dict(checks.preprocess_cases(0))[case]
    want = eager.preprocess_eager(T(kw["frames"]), kw["size"], kw["channels"],
                                  bgr=kw.get("bgr", False))  # fmt: skip
    np.testing.assert_allclose(ref.preprocess_ref(**kw), want.numpy(), atol=2e-6, rtol=0)


def test_bilinear_is_plain_torch_interpolate():
    """Independent of eager.py: one gray channel through F.interpolate directly."""
    rng = np.random.default_rng(3)
    for (h, w), size in [((37, 53), (16, 20)), ((13, 17), (64, 48)), ((480, 640), (64, 64))]:
        frame = rng.integers(0, 256, size=(h, w), dtype=np.uint8)
        x = T(frame).float()[None, None]
        want = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)
        got = ref.preprocess_ref(frame[None, None, None, :, :, None], size, 1)[0, 0, 0]
        np.testing.assert_allclose(got * 255.0, want[0, 0].numpy(), atol=0, rtol=5e-6)  # /255 * 255


def test_frame_major_channel_order():
    frames = np.zeros((1, 1, 2, 4, 4, 3), np.uint8)
    frames[0, 0, 1, ..., 0] = 255  # frame t=1 is pure red
    out = ref.preprocess_ref(frames, (4, 4), 3)
    assert out.shape == (1, 1, 6, 4, 4)
    np.testing.assert_array_equal(out[0, 0, :, 0, 0], [0, 0, 0, 1, 0, 0])  # channel t*C + c
    bgr = ref.preprocess_ref(frames, (4, 4), 3, bgr=True)
    np.testing.assert_array_equal(bgr[0, 0, :, 0, 0], [0, 0, 0, 0, 0, 1])
    gray = ref.preprocess_ref(frames, (4, 4), 1)
    np.testing.assert_allclose(gray[0, 0, :, 0, 0], [0, 0.299], rtol=1e-6)


def test_same_size_gray_equals_the_normalizer():
    """No resize: the preprocess math is the Normalizer's uint8 video scaling, bit for bit."""
    spec = ModalitySpec("cam0", "video", (3, 8, 8), dtype="uint8")
    norm = Normalizer(ModalitySet([spec]), {"cam0": {"scale": 1.0 / 255.0}})
    clip = np.random.default_rng(1).integers(0, 256, size=(2, 3, 8, 8), dtype=np.uint8)
    frames = clip[:, None, :, :, :, None]  # (B, 1 cam, T, H, W, 1)
    np.testing.assert_array_equal(ref.preprocess_ref(frames, (8, 8), 1)[:, 0],
                                  norm.numpy("cam0", clip))  # fmt: skip


def test_reference_input_errors():
    with pytest.raises(ShapeError, match=r"\(B, M, D\)"):
        ref.poe_fusion_ref(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)), np.zeros((2, 4)))
    with pytest.raises(ShapeError, match="3 dimensions"):
        ref.poe_fusion_ref(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ShapeError, match="eps"):
        ref.poe_fusion_ref(np.zeros((1, 1, 2)), np.zeros((1, 1, 2)), np.ones((1, 1)), np.zeros(2))
    with pytest.raises(ShapeError, match="same number"):
        ref.anomaly_score_ref([np.zeros((1, 2))], [], np.ones((1, 1)), np.zeros(1),
                              np.zeros((1, 1)), np.zeros(3), np.ones(3), np.ones(3))  # fmt: skip
    one = (np.ones((1, 1)), np.zeros(1), np.zeros((1, 1)))  # mask, kl_prior, cross_kl
    with pytest.raises(ShapeError, match="modality 0"):
        ref.anomaly_score_ref([np.zeros((1, 2))], [np.zeros((1, 3))], *one, *np.ones((3, 3)))
    with pytest.raises(ShapeError, match="M \\+ 2 = 3"):
        ref.anomaly_score_ref([np.zeros((1, 2))], [np.zeros((1, 2))], *one, *np.ones((3, 2)))
    with pytest.raises(ShapeError, match="uint8"):
        ref.preprocess_ref(np.zeros((1, 1, 1, 4, 4, 2), np.uint8), (2, 2), 1)
    with pytest.raises(ShapeError, match="1 or 3"):
        ref.preprocess_ref(np.zeros((1, 1, 1, 4, 4, 3), np.uint8), (2, 2), 4)
    with pytest.raises(ShapeError, match="positive sizes"):
        ref.bilinear_taps_ref(0, 3)
    with pytest.raises(ShapeError, match="uint8"):
        eager.preprocess_eager(torch.zeros(1, 1, 1, 4, 4, 3), (2, 2), 1)
    with pytest.raises(ShapeError, match="1 or 3"):
        eager.preprocess_eager(torch.zeros(1, 1, 1, 4, 4, 3, dtype=torch.uint8), (2, 2), 2)
