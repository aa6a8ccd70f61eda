"""The plugin kernels (the PTX that AOT plugins bake into engines) on a GPU, without TensorRT:
load the PTX with cuda-python, launch on PyTorch tensors, compare with the NumPy references.

Marked ``gpu``: auto-skipped without CUDA. Edge cases: B = 1, odd sizes, D not a multiple of 32,
all-masked rows, extreme log-variances.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from edgevae.kernels.reference import anomaly_score_ref, poe_fusion_ref

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def launch():
    import torch

    from edgevae.kernels.launch import CudaPythonBackend
    from edgevae.trt import plugin_kernels as pk
    from edgevae.trt.versions import ComputeCapability

    backend = CudaPythonBackend()
    major, minor = backend.compute_capability()
    ptx = pk.plugin_ptx(ComputeCapability(major, minor))
    module = backend.load(ptx.text.encode() + b"\0")
    fns = {e: backend.get_function(module, e) for e in (pk.POE_ENTRY, pk.SCORE_ENTRY)}

    def run(entry, grid, block, args):
        stream = torch.cuda.current_stream().cuda_stream
        backend.launch(fns[entry], (grid, 1, 1), (block, 1, 1), 0, stream, args)
        torch.cuda.synchronize()

    return run


def _p(t):
    return ctypes.c_void_p(t.data_ptr())


@pytest.mark.parametrize(("b", "m", "d"), [(1, 1, 1), (3, 2, 33), (7, 5, 32), (64, 8, 200)])
def test_plugin_poe_fusion_matches_the_reference(launch, b, m, d):
    import torch

    from edgevae.trt import plugin_kernels as pk

    rng = np.random.default_rng(b * 100 + d)
    mu = rng.normal(size=(b, m, d)).astype(np.float32)
    lv = rng.normal(scale=6.0, size=(b, m, d)).astype(np.float32)  # beyond the [-8, 8] clamp
    mask = (rng.random((b, m)) > 0.4).astype(np.float32)
    mask[0] = 0.0  # an all-masked row fuses to the prior
    t = {k: torch.from_numpy(v).cuda() for k, v in (("mu", mu), ("lv", lv), ("mask", mask))}
    out = {k: torch.empty(s, device="cuda") for k, s in
           (("z_mu", (b, d)), ("z_lv", (b, d)), ("kl", (b,)), ("cross", (b, m)))}  # fmt: skip
    i32 = ctypes.c_int32
    args = [_p(t["mu"]), _p(t["lv"]), _p(t["mask"]), i32(b), i32(m), i32(d),
            _p(out["z_mu"]), _p(out["z_lv"]), _p(out["kl"]), _p(out["cross"])]  # fmt: skip
    launch(pk.POE_ENTRY, b, pk.POE_THREADS, args)
    ref = poe_fusion_ref(mu, lv, mask)
    for name, want in (("z_mu", ref.z_mu), ("z_lv", ref.z_logvar), ("kl", ref.kl_prior),
                       ("cross", ref.cross_kl)):  # fmt: skip
        np.testing.assert_allclose(out[name].cpu().numpy(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("b", "sizes"), [(1, [1]), (5, [4, 6, 33]), (33, [4096, 17, 300])])
def test_plugin_anomaly_score_matches_the_reference(launch, b, sizes):
    import torch

    from edgevae.trt import plugin_kernels as pk

    rng = np.random.default_rng(b)
    m = len(sizes)
    xs = [rng.normal(size=(b, n)).astype(np.float32) for n in sizes]
    rs = [x + rng.normal(scale=0.3, size=x.shape).astype(np.float32) for x in xs]
    mask = (rng.random((b, m)) > 0.3).astype(np.float32)
    kl = rng.random(b).astype(np.float32)
    cross = (rng.random((b, m)) * mask).astype(np.float32)
    mean, std, weight = (rng.random(m + 2).astype(np.float32) + 0.5 for _ in range(3))
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
    cuda = lambda a: torch.from_numpy(np.ascontiguousarray(a)).cuda()  # noqa: E731
    ins = [cuda(np.concatenate(xs, 1)), cuda(np.concatenate(rs, 1)), cuda(mask), cuda(kl),
           cuda(cross), cuda(offsets), cuda(mean), cuda(std), cuda(weight)]  # fmt: skip
    score, parts = torch.empty(b, device="cuda"), torch.empty((b, m + 2), device="cuda")
    i32 = ctypes.c_int32
    args = [*(_p(t) for t in ins), i32(b), i32(m), i32(int(offsets[-1])), _p(score), _p(parts)]
    launch(pk.SCORE_ENTRY, b, pk.SCORE_THREADS, args)
    ref = anomaly_score_ref(xs, rs, mask, kl, cross, mean, std, weight)
    np.testing.assert_allclose(score.cpu().numpy(), ref.score, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(parts.cpu().numpy(), ref.parts, rtol=1e-5, atol=1e-5)
