"""GpuAnalyzePipeline wiring on the CPU: the kernel step (preprocess -> experts -> poe_fusion ->
decode -> anomaly_score) with torch_ops launches emulated by the kernels' host harness, against
the eager PyTorch pipeline (preprocess_eager + AnalyzeGraph). The real GPU run is in
tests/gpu/test_kernels_gpu.py."""

from __future__ import annotations

import types

import pytest
import torch

from edgevae.errors import ConfigError, ShapeError
from edgevae.kernels import checks, torch_ops
from edgevae.model.config import ModelConfig, default_modalities
from edgevae.model.scoring import ScoreStats
from edgevae.model.vae import build_model
from edgevae.runtime.gpu_pipeline import GpuAnalyzePipeline, eager_analyze
from tests.kernel_emulation import EmulatedLauncher, install_emulation


@pytest.fixture
def emulated_kernels(monkeypatch, tmp_path_factory) -> EmulatedLauncher:
    return install_emulation(monkeypatch, tmp_path_factory)


def _ops():  # the torch_ops functions, but not the module itself: allows a CPU model
    return types.SimpleNamespace(
        preprocess=torch_ops.preprocess,
        poe_fusion=torch_ops.poe_fusion,
        anomaly_score=torch_ops.anomaly_score,
    )


def _setup(kind="mvae", cameras=2, seed=0):
    torch.manual_seed(seed)
    mods = default_modalities(cameras=cameras, frames=3, size=16)
    model = build_model(mods, ModelConfig.from_preset("nano", kind=kind)).eval()
    b = 3
    frames = torch.randint(0, 256, (b, cameras, 3, 30, 41, 3), dtype=torch.uint8)
    others = {"audio": torch.randn(b, 1, 32, 32), "motion": torch.randn(b, 16, 18)}
    mask = torch.ones(b, cameras + 2)
    mask[1, 0] = 0.0
    mask[2, :] = 0.0  # all-masked row
    names = list(mods.names)
    p = len(names) + 2
    stats = ScoreStats(ScoreStats.identity(names).names, [0.1] * p, [2.0] * p, [0.5] * p)
    return model, stats, frames, others, mask


def _assert_outputs_close(got, want, tol=1e-4):
    assert list(got) == list(want)
    for name in want:
        err = checks.normalised_error(got[name].detach().numpy(), want[name].numpy())
        assert err <= tol, (name, err)


def test_kernel_pipeline_matches_eager(emulated_kernels):
    model, stats, frames, others, mask = _setup()
    want = eager_analyze(model, stats, frames, others, mask)
    got = GpuAnalyzePipeline(model, stats, ops=_ops()).run(frames, others, mask)
    _assert_outputs_close(got, want)
    kernels = [k for k, *_ in emulated_kernels.launches]
    assert kernels == ["preprocess", "poe_fusion", "anomaly_score"]  # stacked cams: one launch


def test_per_camera_frames_and_bgr(emulated_kernels):
    model, stats, frames, others, mask = _setup()
    per_cam = {"cam0": frames[:, 0], "cam1": frames[:, 1, :, :20, :25].contiguous()}
    want = eager_analyze(model, stats, per_cam, others, mask, bgr=True)
    got = GpuAnalyzePipeline(model, stats, bgr=True, ops=_ops()).run(per_cam, others, mask)
    _assert_outputs_close(got, want)
    assert [k for k, *_ in emulated_kernels.launches].count("preprocess") == 2


def test_unimodal_baseline_scores_only_cameras(emulated_kernels):
    model, stats, frames, others, mask = _setup(kind="unimodal")
    want = eager_analyze(model, stats, frames, others, mask)
    got = GpuAnalyzePipeline(model, stats, ops=_ops()).run(frames, others, mask)
    _assert_outputs_close(got, want)


def test_pipeline_refusals():
    model, stats, frames, others, mask = _setup()
    with pytest.raises(ConfigError, match="needs the model on a CUDA device"):
        GpuAnalyzePipeline(model, stats)
    concat, *_ = _setup(kind="concat-ae")
    with pytest.raises(ConfigError, match="'concat-ae' has none"):
        GpuAnalyzePipeline(concat, ops=_ops())
    wrong = ScoreStats(["a", "b"], [0, 0], [1, 1], [1, 1])
    with pytest.raises(ShapeError, match="refit"):
        GpuAnalyzePipeline(model, wrong, ops=_ops())
    pipe = GpuAnalyzePipeline(model, stats, backend="pycuda", ops=_ops())
    with pytest.raises(ConfigError, match="cuda-python"):
        pipe.capture(frames, others, mask)


def test_input_errors(emulated_kernels):
    model, stats, frames, others, mask = _setup()
    pipe = GpuAnalyzePipeline(model, stats, ops=_ops())
    with pytest.raises(ShapeError, match=r"\(B, 2, T, H, W, C\)"):
        pipe.run(frames[:, :1], others, mask)
    with pytest.raises(ShapeError, match="takes 3 frames per clip, got 2"):
        pipe.run(frames[:, :, :2], others, mask)
    with pytest.raises(ShapeError, match=r"frames lack cameras \['cam1'\]"):
        pipe.run({"cam0": frames[:, 0]}, others, mask)
    with pytest.raises(ShapeError, match="modality 'motion' is missing"):
        pipe.run(frames, {"audio": others["audio"]}, mask)
    with pytest.raises(ShapeError, match="mask has shape"):
        pipe.run(frames, others, mask[:, :3])
