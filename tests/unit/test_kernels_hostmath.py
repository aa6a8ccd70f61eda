"""The kernels' per-element math (kernels/common/edgevae_math.cuh built with g++) vs NumPy.

The same header is compiled into the CUDA kernels, so these tests check the kernels' math on the
CPU. Whole-kernel cases (random and edge shapes) come from edgevae.kernels.checks.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from edgevae.errors import KernelError, MissingDependencyError, ShapeError
from edgevae.kernels import checks, hostmath
from edgevae.kernels import reference as ref


@pytest.fixture(scope="module")
def hm(tmp_path_factory):
    try:
        root = tmp_path_factory.mktemp("cache")  # = EDGEVAE_CACHE_DIR in the checks test
        return hostmath.load_hostmath(out_dir=root / "hostmath")
    except MissingDependencyError as exc:
        pytest.skip(f"no C++ compiler for the host-math tests: {exc}")


RNG = np.random.default_rng(0)


def test_clamp_logvar_matches_clip_and_keeps_nan(hm):
    x = np.array(
        [-1e30, -8.5, -8.0, -1.0, 0.0, 7.9, 8.0, 100.0, np.inf, -np.inf, np.nan], np.float32
    )
    got = hm.clamp_logvar(x)
    want = np.clip(x, ref.LOGVAR_MIN, ref.LOGVAR_MAX)
    np.testing.assert_array_equal(got, want)  # NaN == NaN position-wise here
    assert np.isnan(got[-1])


def test_expert_precision_and_masking(hm):
    lv = RNG.normal(scale=6, size=1000).astype(np.float32)
    mask = (RNG.random(1000) < 0.5).astype(np.float32)
    got = hm.expert_precision(mask, lv)
    want = mask * np.exp(-np.clip(lv, -8, 8))
    np.testing.assert_allclose(got, want, rtol=2e-7)
    assert np.all(got[mask == 0] == 0.0)
    assert np.all(np.isfinite(hm.expert_precision(np.ones(2, np.float32), np.array([-1e9, 1e9]))))


def test_poe_combine_prior_and_formula(hm):
    prec = np.abs(RNG.normal(size=(4, 37))).astype(np.float32)
    mu = RNG.normal(size=(4, 37)).astype(np.float32)
    total, weighted, fmu, flv = hm.poe_combine(prec, mu)
    np.testing.assert_allclose(total, 1 + prec.sum(0), rtol=1e-6)
    np.testing.assert_allclose(weighted, (prec * mu).sum(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fmu, weighted / total, rtol=1e-6)
    np.testing.assert_allclose(flv, -np.log(total), rtol=1e-6)
    # no present expert: exactly the prior
    _, _, pmu, plv = hm.poe_combine(np.zeros((3, 5), np.float32), mu[:3, :5])
    assert np.all(pmu == 0.0)
    assert np.all(plv == 0.0)


def test_kl_reparameterize_and_cross_modal_terms(hm):
    mu = RNG.normal(size=500).astype(np.float32)
    lv = RNG.normal(scale=3, size=500).astype(np.float32)
    eps = RNG.normal(size=500).astype(np.float32)
    np.testing.assert_allclose(
        hm.kl_prior_term(mu, lv), 0.5 * (mu**2 + np.exp(lv) - 1 - lv), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(hm.reparameterize(mu, lv, eps), mu + np.exp(0.5 * lv) * eps,
                               rtol=1e-6, atol=1e-6)  # fmt: skip
    prec = np.exp(-np.clip(lv, -8, 8)).astype(np.float32)
    total = (1 + prec + np.abs(RNG.normal(size=500))).astype(np.float32)
    weighted = (prec * mu + RNG.normal(size=500)).astype(np.float32)
    p_rest = total - prec
    mu_rest = (weighted - prec * mu) / p_rest
    lvc = np.clip(lv, -8, 8)
    want = 0.5 * (-np.log(p_rest) - lvc + (np.exp(lvc) + (mu - mu_rest) ** 2) * p_rest - 1)
    np.testing.assert_allclose(hm.cross_modal_term(total, weighted, prec, mu, lv), want,
                               rtol=1e-5, atol=1e-5)  # fmt: skip


def test_scoring_terms(hm):
    x, r = RNG.normal(size=(2, 300)).astype(np.float32)
    np.testing.assert_array_equal(hm.squared_error(x, r), (x - r) ** 2)
    raw, mean = RNG.normal(size=(2, 50)).astype(np.float32)
    std = (RNG.random(50) + 0.1).astype(np.float32)
    keep = (RNG.random(50) < 0.5).astype(np.float32)
    np.testing.assert_array_equal(hm.standardize_part(raw, mean, std, keep),
                                  (raw - mean) / std * keep)  # fmt: skip
    sums = np.array([3.0, 3.0, 3.0], np.float32)
    np.testing.assert_array_equal(hm.cross_modal_mean(sums, np.array([0.0, 1.0, 3.0])),
                                  [3.0, 3.0, 1.0])  # fmt: skip


def test_luma_is_bt601(hm):
    rgb = RNG.random((3, 100)).astype(np.float32) * 255
    want = np.float32(0.299) * rgb[0] + np.float32(0.587) * rgb[1] + np.float32(0.114) * rgb[2]
    np.testing.assert_array_equal(hm.luma(*rgb), want)
    assert ref.LUMA_WEIGHTS == (0.299, 0.587, 0.114)


@pytest.mark.parametrize(
    ("in_size", "out_size"),
    [(1, 1), (1, 7), (5, 5), (480, 64), (720, 64), (13, 64), (75, 64), (64, 75), (3, 2), (2, 3)],
)
def test_bilinear_taps_match_reference(hm, in_size, out_size):
    got = hm.bilinear_taps(in_size, out_size)
    want = ref.bilinear_taps_ref(in_size, out_size)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    i0, i1, w0, w1 = got
    assert np.all((i0 >= 0) & (i0 <= i1) & (i1 < in_size))
    np.testing.assert_allclose(w0 + w1, 1.0, atol=1e-7)


def test_max_modalities_agree(hm):
    assert hm.max_modalities == ref.MAX_MODALITIES


def _case_ids(cases):
    return [name for name, _ in cases(0)]


@pytest.mark.parametrize("case", _case_ids(checks.poe_cases))
def test_poe_fusion_host_matches_reference(hm, case):
    kwargs = dict(checks.poe_cases(0))[case]
    for r in checks._compare("poe_fusion", case, hm.poe_fusion(**kwargs),
                             ref.poe_fusion_ref(**kwargs), checks.HOST_TOL):  # fmt: skip
        assert r.passed, r


@pytest.mark.parametrize("case", _case_ids(checks.score_cases))
def test_anomaly_score_host_matches_reference(hm, case):
    kwargs = dict(checks.score_cases(0))[case]
    for r in checks._compare("anomaly_score", case, hm.anomaly_score(**kwargs),
                             ref.anomaly_score_ref(**kwargs), checks.HOST_TOL):  # fmt: skip
        assert r.passed, r


@pytest.mark.parametrize("case", _case_ids(checks.preprocess_cases))
def test_preprocess_host_matches_reference(hm, case):
    kwargs = dict(checks.preprocess_cases(0))[case]
    got, want = hm.preprocess(**kwargs), ref.preprocess_ref(**kwargs)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
    assert got.min() >= 0.0
    assert got.max() <= 1.0


def test_all_masked_rows_are_exactly_the_prior(hm):
    mu = RNG.normal(size=(3, 4, 33)).astype(np.float32) * 50
    lv = RNG.normal(size=(3, 4, 33)).astype(np.float32) * 50
    mask = np.zeros((3, 4), np.float32)
    mask[1, 2] = 1.0
    out = hm.poe_fusion(mu, lv, mask)
    for row in (0, 2):
        assert np.all(out.z_mu[row] == 0.0)
        assert np.all(out.z_logvar[row] == 0.0)
        assert out.kl_prior[row] == 0.0
        assert np.all(out.cross_kl[row] == 0.0)
    assert np.all(out.cross_kl[1, [0, 1, 3]] == 0.0)
    assert out.cross_kl[1, 2] > 0.0
    np.testing.assert_array_equal(out.z, out.z_mu)  # no eps: z = mu


def test_run_host_checks_all_pass(hm, monkeypatch):
    monkeypatch.setenv("EDGEVAE_CACHE_DIR", str(hm.path.parents[2]))  # reuse the built library
    results = checks.run_host_checks()
    assert {r.kernel for r in results} == {"poe_fusion", "anomaly_score", "preprocess"}
    assert all(r.passed for r in results), [r for r in results if not r.passed]


def test_normalised_error_flags_shape_and_nan_mismatch():
    a = np.ones(3, np.float32)
    assert checks.normalised_error(a, a) == 0.0
    assert checks.normalised_error(a, np.ones(4)) == float("inf")
    assert checks.normalised_error(np.array([np.nan, 1, 1]), a) == float("inf")
    assert not checks.CheckResult("k", "c", "o", float("nan"), 1.0).passed


def test_host_wrappers_reject_bad_shapes(hm):
    with pytest.raises(ShapeError, match=r"\(B, M, D\)"):
        hm.poe_fusion(np.zeros((2, 3, 4)), np.zeros((2, 3, 5)), np.zeros((2, 3)))
    with pytest.raises(ShapeError, match="eps"):
        hm.poe_fusion(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)), np.zeros((2, 3)), np.zeros((2, 5)))
    with pytest.raises(ShapeError, match="uint8"):
        hm.preprocess(np.zeros((1, 1, 1, 4, 4, 3), np.float32), (2, 2), 1)
    with pytest.raises(ShapeError, match="1 or 3"):
        hm.preprocess(np.zeros((1, 1, 1, 4, 4, 3), np.uint8), (2, 2), 2)
    with pytest.raises(ShapeError, match="1 to 16"):
        hm.anomaly_score(
            [], [], np.zeros((1, 0)), np.zeros(1), np.zeros((1, 0)), *[np.zeros(2)] * 3
        )


def test_abi_mismatch_is_refused(hm, monkeypatch):
    monkeypatch.setattr(hostmath, "ABI_VERSION", 999)
    with pytest.raises(KernelError, match="ABI"):
        hostmath.HostMath(hm.path)


def test_build_failure_names_the_error(tmp_path, monkeypatch):
    if shutil.which("g++") is None:
        pytest.skip("no g++")
    src = tmp_path / "kernels"
    shutil.copytree(hostmath.kernel_source_dir(), src)
    (src / "common" / "hostmath.cpp").write_text("this is not C++;\n")
    monkeypatch.setenv("EDGEVAE_KERNELS_SRC", str(src))
    with pytest.raises(KernelError, match="host math failed"):
        hostmath.build_hostmath(out_dir=tmp_path / "out")


def test_missing_compiler_and_sources_are_clear(monkeypatch, tmp_path):
    monkeypatch.setattr(hostmath.shutil, "which", lambda name: None)
    with pytest.raises(MissingDependencyError, match="C\\+\\+ compiler"):
        hostmath.find_cxx()
    monkeypatch.setenv("EDGEVAE_KERNELS_SRC", str(tmp_path / "nowhere"))
    with pytest.raises(MissingDependencyError, match="EDGEVAE_KERNELS_SRC"):
        hostmath.kernel_source_dir()


def test_cli_kernels_test_runs_host_checks(hm, monkeypatch, capsys):
    import json

    from tests.cli_util import invoke

    monkeypatch.setenv("EDGEVAE_CACHE_DIR", str(hm.path.parents[2]))
    r = invoke(capsys, "kernels", "test", "--no-gpu", "--json")
    assert r.code == 0, r.err
    host = json.loads(r.out)["host"]
    assert host and all(c["passed"] for c in host)
    r = invoke(capsys, "kernels", "test", "--no-gpu")
    assert r.code == 0
    assert "the kernels did not run" in r.out


def test_cli_kernels_test_reports_failures(monkeypatch, capsys):
    from tests.cli_util import invoke

    bad = [checks.CheckResult("poe_fusion", "case", "z_mu", 1.0, 1e-5)]
    monkeypatch.setattr(checks, "run_host_checks", lambda: bad)
    r = invoke(capsys, "kernels", "test", "--no-gpu")
    assert r.code == 1
    assert "1 kernel check(s) failed" in r.err


def test_cli_kernels_test_gpu_without_gpu_is_exit_2(monkeypatch, capsys):
    import torch

    from tests.cli_util import invoke

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    monkeypatch.setattr(checks, "run_host_checks", lambda: [])
    r = invoke(capsys, "kernels", "test", "--gpu")
    assert r.code == 2
    assert "no CUDA GPU" in r.err
