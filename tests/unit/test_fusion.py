"""The fusion contract math (DESIGN §4) against independent NumPy references."""

import numpy as np
import pytest
import torch

from edgevae.model.fusion import (
    LOGVAR_MAX,
    LOGVAR_MIN,
    cross_modal_kl,
    kl_to_prior,
    poe,
    reparameterize,
)


def np_poe(mu, logvar, mask):
    """Reference: Gaussian product of the present experts and N(0, I), variance form, float64."""
    mu, logvar, mask = (np.asarray(a, np.float64) for a in (mu, logvar, mask))
    b, m, d = mu.shape
    out_mu, out_lv = np.zeros((b, d)), np.zeros((b, d))
    for i in range(b):
        prec_sum = np.ones(d)  # prior expert
        weighted = np.zeros(d)
        for j in range(m):
            if mask[i, j] == 0:
                continue
            var = np.exp(np.clip(logvar[i, j], LOGVAR_MIN, LOGVAR_MAX))
            prec_sum += mask[i, j] / var
            weighted += mask[i, j] * mu[i, j] / var
        out_mu[i] = weighted / prec_sum
        out_lv[i] = np.log(1.0 / prec_sum)
    return out_mu, out_lv


def np_kl_gauss(mu_a, var_a, mu_b, var_b):
    """KL(N(mu_a, var_a) || N(mu_b, var_b)) summed over the last axis."""
    return 0.5 * np.sum(np.log(var_b / var_a) + (var_a + (mu_a - mu_b) ** 2) / var_b - 1.0, -1)


def np_cross_modal(mu, logvar, mask):
    """Reference: for each present m, KL(q_m || PoE(others present + prior)); 0 when absent."""
    mu, logvar, mask = (np.asarray(a, np.float64) for a in (mu, logvar, mask))
    b, m, _ = mu.shape
    out = np.zeros((b, m))
    for i in range(b):
        for j in range(m):
            if mask[i, j] == 0:
                continue
            others = mask[i].copy()
            others[j] = 0
            rest_mu, rest_lv = np_poe(mu[i : i + 1], logvar[i : i + 1], others[None])
            lv = np.clip(logvar[i, j], LOGVAR_MIN, LOGVAR_MAX)
            out[i, j] = np_kl_gauss(mu[i, j], np.exp(lv), rest_mu[0], np.exp(rest_lv[0]))
    return out


def _experts(b=6, m=4, d=5, seed=0):
    g = np.random.default_rng(seed)
    mu = g.normal(size=(b, m, d)).astype(np.float32) * 2
    logvar = g.normal(size=(b, m, d)).astype(np.float32) * 2
    mask = (g.random((b, m)) < 0.6).astype(np.float32)
    mask[0] = 0  # all masked -> prior
    mask[1] = 0
    mask[1, 2] = 1  # single expert
    mask[2] = 1  # all present
    return mu, logvar, mask


def test_poe_matches_numpy_reference():
    mu, logvar, mask = _experts()
    got_mu, got_lv = poe(torch.from_numpy(mu), torch.from_numpy(logvar), torch.from_numpy(mask))
    ref_mu, ref_lv = np_poe(mu, logvar, mask)
    np.testing.assert_allclose(got_mu.numpy(), ref_mu, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_lv.numpy(), ref_lv, rtol=1e-5, atol=1e-5)
    assert got_mu.dtype == torch.float32


def test_poe_all_masked_row_is_the_prior():
    mu, logvar, mask = _experts()
    got_mu, got_lv = poe(torch.from_numpy(mu), torch.from_numpy(logvar), torch.from_numpy(mask))
    assert torch.equal(got_mu[0], torch.zeros(5))
    assert torch.equal(got_lv[0], torch.zeros(5))


def test_poe_single_expert_row_combines_with_the_prior_only():
    mu, logvar, mask = _experts()
    got_mu, got_lv = poe(torch.from_numpy(mu), torch.from_numpy(logvar), torch.from_numpy(mask))
    prec = np.exp(-logvar[1, 2].astype(np.float64))
    np.testing.assert_allclose(got_mu[1].numpy(), prec * mu[1, 2] / (1 + prec), rtol=1e-5)
    np.testing.assert_allclose(got_lv[1].numpy(), -np.log1p(prec), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("extreme", [1e3, -1e3])
def test_poe_clamps_extreme_logvars_without_nan(extreme):
    mu, logvar, mask = _experts()
    logvar[:] = extreme
    got_mu, got_lv = poe(torch.from_numpy(mu), torch.from_numpy(logvar), torch.from_numpy(mask))
    assert torch.isfinite(got_mu).all() and torch.isfinite(got_lv).all()
    ref_mu, ref_lv = np_poe(mu, logvar, mask)
    np.testing.assert_allclose(got_mu.numpy(), ref_mu, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_lv.numpy(), ref_lv, rtol=1e-5, atol=1e-5)
    # clamped at -8 / 8: the fused variance is bounded away from 0 and from the prior
    assert got_lv.min() >= -np.log(1 + 4 * np.exp(8)) - 1e-4


def test_poe_is_fp32_from_half_inputs():
    mu, logvar, mask = _experts()
    got_mu, got_lv = poe(
        torch.from_numpy(mu).half(), torch.from_numpy(logvar).half(), torch.from_numpy(mask)
    )
    assert got_mu.dtype == torch.float32 and got_lv.dtype == torch.float32


def test_cross_modal_kl_matches_numpy_reference():
    mu, logvar, mask = _experts(seed=3)
    got = cross_modal_kl(torch.from_numpy(mu), torch.from_numpy(logvar), torch.from_numpy(mask))
    ref = np_cross_modal(mu, logvar, mask)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-4, atol=1e-4)
    assert (got.numpy()[mask == 0] == 0).all()
    assert (got.numpy() >= -1e-5).all()


def test_cross_modal_kl_extreme_logvars_are_finite():
    mu, logvar, mask = _experts(seed=4)
    logvar[:, ::2] = 1e3
    logvar[:, 1::2] = -1e3
    got = cross_modal_kl(torch.from_numpy(mu), torch.from_numpy(logvar), torch.from_numpy(mask))
    assert torch.isfinite(got).all()
    np.testing.assert_allclose(got.numpy(), np_cross_modal(mu, logvar, mask), rtol=1e-4, atol=1e-3)


def test_cross_modal_kl_grows_when_one_expert_disagrees():
    mu = torch.zeros(1, 3, 4)
    logvar = torch.full((1, 3, 4), -2.0)
    mask = torch.ones(1, 3)
    agree = cross_modal_kl(mu, logvar, mask)
    mu[0, 1] = 3.0
    disagree = cross_modal_kl(mu, logvar, mask)
    assert disagree[0, 1] > 10 * agree[0, 1] + 1.0


def test_kl_to_prior_matches_numpy():
    g = np.random.default_rng(1)
    mu, lv = g.normal(size=(3, 4)), g.normal(size=(3, 4))
    got = kl_to_prior(torch.from_numpy(mu), torch.from_numpy(lv)).numpy()
    ref = np_kl_gauss(mu, np.exp(lv), np.zeros_like(mu), np.ones_like(mu))
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    assert kl_to_prior(torch.zeros(2, 4), torch.zeros(2, 4)).abs().max() == 0


def test_reparameterize_uses_the_given_eps():
    mu, lv, eps = (
        torch.tensor([[1.0, -1.0]]),
        torch.tensor([[0.0, 2.0]]),
        torch.tensor([[2.0, 1.0]]),
    )
    np.testing.assert_allclose(reparameterize(mu, lv, eps).numpy(), [[3.0, -1.0 + np.e]], rtol=1e-6)
    assert torch.equal(reparameterize(mu, lv, torch.zeros_like(eps)), mu)
