"""The CUDA kernels on a real GPU (marker ``gpu``: auto-skipped without one).

Each kernel vs the NumPy reference on the random and edge cases of edgevae.kernels.checks, plus
large shapes, PyTorch stream ordering, CUDA-graph capture, the PTX (JIT) path, the pycuda
backend, and the GPU analyze pipeline vs the eager PyTorch pipeline.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from edgevae.kernels import build as kb
from edgevae.kernels import checks, launch, torch_ops
from edgevae.kernels import reference as ref

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", autouse=True)
def _cuda_python():
    pytest.importorskip("cuda.bindings.driver", reason="cuda-python is not installed")


def _err(got, want) -> float:
    return checks.normalised_error(np.asarray(got), np.asarray(want))


@pytest.mark.parametrize(
    ("kernel", "cases", "reference"),
    [("poe_fusion", checks.poe_cases, ref.poe_fusion_ref),
     ("anomaly_score", checks.score_cases, ref.anomaly_score_ref),
     ("preprocess", checks.preprocess_cases, ref.preprocess_ref)],
)  # fmt: skip
def test_kernel_matches_reference(kernel, cases, reference):
    impl = checks.gpu_impl()[kernel]
    failed = []
    for name, kwargs in cases(0):
        results = checks._compare(kernel, name, impl(**kwargs), reference(**kwargs), checks.GPU_TOL)
        failed += [r for r in results if not r.passed]
    assert not failed, failed


def test_large_batches():
    rng = np.random.default_rng(1)
    impl = checks.gpu_impl()
    b, m, d = 1024, 5, 32
    kw = {"mu": rng.normal(size=(b, m, d)).astype(np.float32),
          "logvar": rng.normal(scale=3, size=(b, m, d)).astype(np.float32),
          "mask": (rng.random((b, m)) < 0.7).astype(np.float32), "eps": None}  # fmt: skip
    for g, w in zip(impl["poe_fusion"](**kw), ref.poe_fusion_ref(**kw), strict=True):
        assert _err(g, w) <= checks.GPU_TOL
    frames = rng.integers(0, 256, size=(2, 3, 2, 720, 1280, 3), dtype=np.uint8)
    got = impl["preprocess"](frames=frames, size=(64, 64), channels=1)
    assert _err(got, ref.preprocess_ref(frames, (64, 64), 1)) <= checks.GPU_TOL
    many = rng.integers(0, 256, size=(1, 1, 70_000, 3, 2, 1), dtype=np.uint8)  # > 65535 frames
    got = impl["preprocess"](frames=many, size=(4, 4), channels=1)
    assert _err(got, ref.preprocess_ref(many, (4, 4), 1)) <= checks.GPU_TOL


def test_runs_in_pytorch_stream_order():
    """Input written on a side stream after a long sleep: the kernel must wait for it."""
    rng = np.random.default_rng(2)
    mu_np = rng.normal(size=(64, 4, 32)).astype(np.float32)
    lv_np = rng.normal(size=(64, 4, 32)).astype(np.float32)
    mask_np = np.ones((64, 4), np.float32)
    src = torch.from_numpy(mu_np).cuda()
    lv, mask = torch.from_numpy(lv_np).cuda(), torch.from_numpy(mask_np).cuda()
    mu = torch.zeros_like(src)
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        torch.cuda._sleep(100_000_000)  # ~50 ms of GPU time before the input exists
        mu.copy_(src)
        out = torch_ops.poe_fusion(mu, lv, mask)
    side.synchronize()
    want = ref.poe_fusion_ref(mu_np, lv_np, mask_np)
    assert _err(out.z_mu.cpu(), want.z_mu) <= checks.GPU_TOL
    assert _err(out.cross_kl.cpu(), want.cross_kl) <= checks.GPU_TOL


def test_cuda_graph_capture_and_replay():
    rng = np.random.default_rng(3)
    b, m, d = 8, 3, 32

    def draw():
        frames = rng.integers(0, 256, size=(b, m, 2, 48, 40, 3), dtype=np.uint8)
        mu = rng.normal(size=(b, m, d)).astype(np.float32)
        logvar = rng.normal(size=(b, m, d)).astype(np.float32)
        mask = (rng.random((b, m)) < 0.7).astype(np.float32)
        return {"mu": mu, "logvar": logvar, "mask": mask, "frames": frames}

    first = draw()
    static = {k: torch.from_numpy(v).cuda() for k, v in first.items()}
    stats = [torch.zeros(m + 2).cuda(), torch.ones(m + 2).cuda(), torch.ones(m + 2).cuda()]

    def step():
        x = torch_ops.preprocess(static["frames"], (16, 16), 1)  # (B, M, 2, 16, 16)
        fused = torch_ops.poe_fusion(static["mu"], static["logvar"], static["mask"])
        xs = [x[:, k] for k in range(m)]
        rs = [v * 0.5 for v in xs]
        return x, fused, torch_ops.anomaly_score(xs, rs, static["mask"], fused.kl_prior,
                                                 fused.cross_kl, *stats)  # fmt: skip

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()  # warm-up: loads the modules outside capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        x, fused, scored = step()
    for data in (first, draw()):
        for k, v in data.items():
            static[k].copy_(torch.from_numpy(v))
        graph.replay()
        torch.cuda.synchronize()
        want_x = ref.preprocess_ref(data["frames"], (16, 16), 1)
        want_f = ref.poe_fusion_ref(data["mu"], data["logvar"], data["mask"])
        assert _err(x.cpu(), want_x) <= checks.GPU_TOL
        for g, w in zip(fused, want_f, strict=True):
            assert _err(g.cpu(), w) <= checks.GPU_TOL
        xs = [want_x[:, k] for k in range(m)]
        want_s = ref.anomaly_score_ref(xs, [v * np.float32(0.5) for v in xs], data["mask"],
                                       want_f.kl_prior, want_f.cross_kl,
                                       *(s.cpu().numpy() for s in stats))  # fmt: skip
        for g, w in zip(scored, want_s, strict=True):
            assert _err(g.cpu(), w) <= checks.GPU_TOL


def test_ptx_jit_path(tmp_path):
    """Only PTX in the build directory: the driver JIT-compiles it."""
    major, minor = torch.cuda.get_device_capability()
    arch = f"sm_{major}{minor}"
    src = kb.build_kernels(
        kb.BuildConfig(archs=(arch,), kernels=("poe_fusion",), out=tmp_path / "b")
    )
    manifest = json.loads(src.read_text())
    for entry in manifest["kernels"].values():
        entry["artifacts"] = [a for a in entry["artifacts"] if a["kind"] == "ptx"]
    ptx_dir = tmp_path / "ptx-only"
    shutil.copytree(src.parent, ptx_dir)
    (ptx_dir / "manifest.json").write_text(json.dumps(manifest))
    launcher = launch.KernelLauncher("cuda-python", torch.cuda.current_device(), str(ptx_dir))
    assert launch.select_image("poe_fusion", arch, ptx_dir).kind == "ptx"
    launcher.function("poe_fusion")  # loads (JIT) without error


def test_pycuda_backend_on_the_default_stream():
    pytest.importorskip("pycuda.driver", reason="pycuda is not installed")
    kwargs = dict(checks.poe_cases(0))["odd B=7 M=5 D=33"]
    got = checks.gpu_impl("pycuda")["poe_fusion"](**kwargs)
    for g, w in zip(got, ref.poe_fusion_ref(**kwargs), strict=True):
        assert _err(g, w) <= checks.GPU_TOL


def test_gpu_pipeline_matches_eager_and_captures():
    from edgevae.model.config import ModelConfig, default_modalities
    from edgevae.model.scoring import ScoreStats
    from edgevae.model.vae import build_model
    from edgevae.runtime.gpu_pipeline import GpuAnalyzePipeline, eager_analyze

    torch.manual_seed(0)
    mods = default_modalities(cameras=3, frames=8, size=64)
    model = build_model(mods, ModelConfig.from_preset("nano")).cuda().eval()
    names = list(mods.names)
    p = len(names) + 2
    stats = ScoreStats(ScoreStats.identity(names).names, [0.1] * p, [2.0] * p, [0.5] * p)

    def inputs(b, seed):
        g = torch.Generator().manual_seed(seed)
        frames = torch.randint(0, 256, (b, 3, 8, 480, 640, 3), generator=g, dtype=torch.uint8)
        others = {"audio": torch.randn(b, 1, 32, 32, generator=g),
                  "motion": torch.randn(b, 16, 18, generator=g)}  # fmt: skip
        mask = (torch.rand(b, 5, generator=g) < 0.8).float()
        mask[0] = 0.0
        return frames.cuda(), {k: v.cuda() for k, v in others.items()}, mask.cuda()

    pipe = GpuAnalyzePipeline(model, stats)
    for b in (1, 4):
        frames, others, mask = inputs(b, b)
        got = pipe.run(frames, others, mask)
        want = eager_analyze(model, stats, frames, others, mask)
        for name in want:
            assert _err(got[name].cpu(), want[name].cpu()) <= 1e-4, name
    frames, others, mask = inputs(4, 10)
    captured = pipe.capture(frames, others, mask)
    frames, others, mask = inputs(4, 11)
    got = captured.replay(frames, others, mask)
    torch.cuda.synchronize()
    want = eager_analyze(model, stats, frames, others, mask)
    for name in want:
        assert _err(got[name].cpu(), want[name].cpu()) <= 1e-4, name
