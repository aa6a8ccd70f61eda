"""Real TensorRT: build engines from the tiny export, run them, compare with ONNX Runtime.

Marked ``trt``: auto-skipped where TensorRT or a CUDA GPU is missing (tests/conftest.py). These
are the only tests that exercise TensorRT itself; the call sequences are covered on CPU by
tests/unit/test_trt_build.py and test_trt_runner.py against a fake. Tolerances follow the
project table (reference/style.md §5): TRT FP32 with TF32 cleared vs ORT FP32: atol 1e-3,
rtol 1e-3.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from edgevae.errors import EngineMismatchError, ShapeError
from edgevae.kernels.reference import anomaly_score_ref, poe_fusion_ref
from edgevae.trt.build import build_engine
from edgevae.trt.config import EngineConfig
from edgevae.trt.manifest import manifest_path, read_engine_manifest
from tests.fakes import tiny_export as tiny

pytestmark = pytest.mark.trt
ATOL = RTOL = 1e-3
MASKS = np.array([[1, 1], [0, 1], [1, 0], [0, 0]], np.float32)  # every mask-pattern class


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return tiny.write_export(tmp_path_factory.mktemp("export"), ("fp32",))


def _cfg(tmp_path, **kw) -> EngineConfig:
    return EngineConfig(
        out_dir=str(tmp_path / "engines"),
        timing_cache=str(tmp_path / "timing.cache"),
        batch=(1, 4, 8),
        workspace_mib=256,
        **kw,
    )


def _reference(export, feed) -> dict[str, np.ndarray]:
    """analyze outputs with the fusion and scoring of the kernel references (split/plugin)."""
    enc = ort.InferenceSession(str(export / "encode.onnx"))
    dec = ort.InferenceSession(str(export / "decode.onnx"))
    z_mu, z_lv, e_mu, e_lv = enc.run(["z_mu", "z_logvar", "expert_mu", "expert_logvar"], feed)
    recons = dec.run(["recon_a", "recon_b"], {"z": z_mu})
    poe = poe_fusion_ref(e_mu, e_lv, feed["mask"])
    stats = [tiny.SCORE_STATS[k] for k in ("mean", "std", "weight")]
    score = anomaly_score_ref(
        [feed["a"], feed["b"]], recons, feed["mask"], poe.kl_prior, poe.cross_kl, *stats
    )
    return {
        "z_mu": z_mu,
        "z_logvar": z_lv,
        "recon_a": recons[0],
        "recon_b": recons[1],
        "score": score.score,
        "score_parts": score.parts,
    }


def _close(got, want, names=None):
    for name in names or want:
        np.testing.assert_allclose(got[name], want[name], atol=ATOL, rtol=RTOL, err_msg=name)


def test_native_fp32_engine_matches_onnxruntime(export, tmp_path):
    from edgevae.runtime.trt_runner import TrtRunner

    plan = build_engine(export, _cfg(tmp_path))
    m = read_engine_manifest(plan)
    assert m.raw["config"]["tf32"] is False and m.target.compute_capability
    sess = ort.InferenceSession(str(export / "analyze.onnx"))
    names = [o.name for o in sess.get_outputs()]
    with TrtRunner(plan) as runner:
        for batch in (1, 4, 8):
            feed = tiny.feed(batch, seed=batch, mask=MASKS[np.arange(batch) % 4])
            want = dict(zip(names, sess.run(None, feed), strict=True))
            _close(runner.run(feed), want)
        with pytest.raises(ShapeError, match="outside the optimization profile"):
            runner.run(tiny.feed(9))


def test_cuda_graph_replay_matches_direct_execution(export, tmp_path):
    from edgevae.runtime.trt_runner import TrtRunner

    plan = build_engine(export, _cfg(tmp_path))
    feeds = [tiny.feed(4, seed=s, mask=MASKS) for s in range(3)]
    with TrtRunner(plan) as direct, TrtRunner(plan, cuda_graph=True) as graphed:
        for feed in feeds:
            a, b = direct.run(feed), graphed.run(feed)
            for name in a:
                np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_split_engines_with_kernels_match_the_reference(export, tmp_path):
    from edgevae.runtime.trt_runner import TrtRunner

    bundle = build_engine(export, _cfg(tmp_path, mode="split"))
    with TrtRunner(bundle, cuda_graph=True) as runner:
        for seed in (0, 1):
            feed = tiny.feed(4, seed=seed, mask=MASKS)
            _close(runner.run(feed), _reference(export, feed))


def test_plugin_engine_matches_the_reference(export, tmp_path):
    import tensorrt as trt

    from edgevae.runtime.trt_runner import TrtRunner
    from edgevae.trt.versions import parse_trt_version, supports_aot_plugins

    if not supports_aot_plugins(parse_trt_version(trt.__version__)):
        pytest.skip("AOT plugins need TensorRT >= 10.9 (use the C++ library on older versions)")
    plan = build_engine(export, _cfg(tmp_path, mode="plugin"))
    layers = read_engine_manifest(plan).raw["details"]["layers"]
    assert layers is None or any("poe_fusion" in (x["name"] or "") for x in layers["layers"])
    with TrtRunner(plan) as runner:
        feed = tiny.feed(4, seed=3, mask=MASKS)
        _close(runner.run(feed), _reference(export, feed))


def test_engine_for_another_tensorrt_is_refused(export, tmp_path):
    from edgevae.runtime.trt_runner import TrtRunner

    plan = build_engine(export, _cfg(tmp_path))
    path = manifest_path(plan)
    manifest = json.loads(path.read_text())
    manifest["details"]["target"]["trt_version"] = "9.9.9.9"
    path.write_text(json.dumps(manifest))
    with pytest.raises(EngineMismatchError, match=r"built for TensorRT 9\.9\.9\.9"):
        TrtRunner(plan)
