"""``TrtRunner`` call sequences against the FAKE TensorRT and a fake CUDA backend.

The fake execution context runs the plan's embedded ONNX with ONNX Runtime on fake device
memory, so these tests check the data path (shapes, addresses, copies, graph replay, the split
pipeline's wiring) with real numbers, but not TensorRT itself (see tests/trt/).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from edgevae.errors import ConfigError, EngineMismatchError, MissingDependencyError, ShapeError
from edgevae.kernels.reference import anomaly_score_ref, poe_fusion_ref
from edgevae.model.score_rules import COMBINE_RULES
from edgevae.runtime import trt_runner as runner_mod
from edgevae.runtime.base import Runner
from edgevae.runtime.trt_runner import TrtRunner
from edgevae.trt import build as build_mod
from edgevae.trt.build import build_engine
from edgevae.trt.config import EngineConfig
from edgevae.trt.manifest import manifest_path
from tests.fakes import tiny_export as tiny
from tests.fakes.fake_tensorrt import (
    FakeCudaBackend,
    FakeDevice,
    install,
    make_fake_tensorrt,
)

ANALYZE_OUTPUTS = ["z_mu", "z_logvar", "recon_a", "recon_b", "score", "score_parts"]


class FakeKernels:
    """Split-mode kernels on fake device memory, computed with the NumPy references."""

    def __init__(self, device: FakeDevice) -> None:
        self.device = device
        self.calls: list[str] = []

    def poe_fusion(self, mu, logvar, mask, z_mu, z_logvar, kl, cross, b, m, d, stream):
        self.calls.append("poe_fusion")
        v = self.device.view

        def op() -> None:
            out = poe_fusion_ref(
                v(mu, np.float32, (b, m, d)), v(logvar, np.float32, (b, m, d)),
                v(mask, np.float32, (b, m)),
            )  # fmt: skip
            for ptr, value in ((z_mu, out.z_mu), (z_logvar, out.z_logvar), (kl, out.kl_prior),
                               (cross, out.cross_kl)):  # fmt: skip
                self.device.buffers[ptr][: value.nbytes] = value.tobytes()

        self.device.run_or_capture(op)

    def anomaly_score(
        self, inputs, recons, numel, mask, kl, cross, mean, std, weight, parts, score, b, m,
        combine, stream,
    ):  # fmt: skip
        self.calls.append("anomaly_score")
        v = self.device.view

        def op() -> None:
            out = anomaly_score_ref(
                [v(p, np.float32, (b, n)) for p, n in zip(inputs, numel, strict=True)],
                [v(p, np.float32, (b, n)) for p, n in zip(recons, numel, strict=True)],
                v(mask, np.float32, (b, m)), v(kl, np.float32, (b,)),
                v(cross, np.float32, (b, m)), *(v(p, np.float32, (m + 2,)) for p in
                                                 (mean, std, weight)),
                COMBINE_RULES[combine],
            )  # fmt: skip
            for ptr, value in ((score, out.score), (parts, out.parts)):
                self.device.buffers[ptr][: value.nbytes] = value.tobytes()

        self.device.run_or_capture(op)


@pytest.fixture
def fake(monkeypatch):
    trt = make_fake_tensorrt("10.3.0.30")
    install(monkeypatch, build_mod, trt)
    install(monkeypatch, runner_mod, trt)
    return trt


def _build(tmp_path, **kw) -> object:
    export = tiny.write_export(tmp_path / "export")
    cfg = EngineConfig(
        out_dir=str(tmp_path / "engines"), timing_cache=str(tmp_path / "tc"), batch=(1, 4, 8), **kw
    )
    return build_engine(export, cfg)


def _runner(trt, path, **kw) -> TrtRunner:
    cuda = FakeCudaBackend(trt.device)
    return TrtRunner(path, cuda=cuda, kernels=FakeKernels(trt.device), **kw)


def _ort(name: str, feed, tmp_path):
    sess = ort.InferenceSession(str(tmp_path / "export" / name))
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feed), strict=True))


def test_native_run_matches_the_onnx_and_uses_name_based_io(fake, tmp_path):
    plan = _build(tmp_path)
    runner = _runner(fake, plan)
    assert isinstance(runner, Runner)
    assert runner.inputs["b"].shape == ("batch", 2, 3) and runner.batch_range == (1, 8)
    assert list(runner.outputs) == ANALYZE_OUTPUTS
    fake.calls.clear()
    feed = tiny.feed(3, seed=5)
    got = runner.run(feed)
    want = _ort("analyze.onnx", feed, tmp_path)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-6, err_msg=name)
    shapes = [c for c in fake.calls if c[0] == "set_input_shape"]
    assert shapes == [("set_input_shape", "a", (3, 4)), ("set_input_shape", "b", (3, 2, 3)),
                      ("set_input_shape", "mask", (3, 2))]  # fmt: skip
    assert len([c for c in fake.calls if c[0] == "set_tensor_address"]) == 9
    assert [c for c in fake.calls if c[0] == "execute_async_v3"] == [("execute_async_v3", 7)]
    assert runner.cuda.calls.count("synchronize") == 1


def test_shapes_are_set_again_only_when_the_batch_changes(fake, tmp_path):
    runner = _runner(fake, _build(tmp_path))
    runner.run(tiny.feed(2))
    fake.calls.clear()
    runner.run(tiny.feed(2, seed=1))
    assert not [c for c in fake.calls if c[0] == "set_input_shape"]
    out = runner.run(tiny.feed(5, seed=2))
    assert ("set_input_shape", "mask", (5, 2)) in fake.calls
    assert out["score"].shape == (5,)


def test_batch_outside_the_profile_is_a_shape_error_naming_it(fake, tmp_path):
    runner = _runner(fake, _build(tmp_path))
    with pytest.raises(ShapeError) as exc:
        runner.run(tiny.feed(9))
    msg = str(exc.value)
    assert "batch 9 is outside the optimization profile of analyze.fp32.plan (batch 1..8" in msg
    assert "built with --batch 1,4,8" in msg and "--batch 1,9,9" in msg


def test_feed_that_does_not_match_is_refused(fake, tmp_path):
    runner = _runner(fake, _build(tmp_path))
    feed = tiny.feed(2)
    del feed["mask"]
    with pytest.raises(ShapeError, match=r"missing \['mask'\]"):
        runner.run(feed)


def test_engine_from_another_tensorrt_is_refused_with_the_rebuild_command(
    monkeypatch, fake, tmp_path
):
    plan = _build(tmp_path, precision="fp32")
    newer = make_fake_tensorrt("10.13.3.9", device=fake.device)
    install(monkeypatch, runner_mod, newer)
    with pytest.raises(EngineMismatchError) as exc:
        _runner(newer, plan)
    msg = str(exc.value)
    assert "analyze.fp32.plan was built for TensorRT 10.3.0.30, compute capability 8.7" in msg
    assert "this machine has TensorRT 10.13.3.9" in msg
    assert "edgevae build" in msg and "--precision fp32 --mode native" in msg


def test_engine_for_another_gpu_is_refused(monkeypatch, fake, tmp_path):
    plan = _build(tmp_path)
    install(monkeypatch, runner_mod, fake, cc="11.0")
    with pytest.raises(EngineMismatchError, match=r"compute capability 8\.7 vs 11\.0 here"):
        _runner(fake, plan)


def test_unchecked_mismatched_engine_still_fails_cleanly(monkeypatch, fake, tmp_path):
    plan = _build(tmp_path)
    newer = make_fake_tensorrt("11.4.0.106", device=fake.device)
    install(monkeypatch, runner_mod, newer)
    with pytest.raises(EngineMismatchError, match=r"could not load.*Version tag does not match"):
        _runner(newer, plan, check=False)


def test_engine_without_manifest_is_refused(fake, tmp_path):
    plan = _build(tmp_path)
    manifest_path(plan).unlink()
    with pytest.raises(EngineMismatchError, match="has no manifest"):
        _runner(fake, plan)


def test_cuda_graph_captures_once_per_batch_and_replays(fake, tmp_path):
    runner = _runner(fake, _build(tmp_path), cuda_graph=True)
    want = _ort("analyze.onnx", tiny.feed(2, seed=1), tmp_path)
    first = runner.run(tiny.feed(2, seed=1))
    execs = [c for c in fake.calls if c[0] == "execute_async_v3"]
    assert len(execs) == 2  # warm-up outside capture + the captured enqueue
    assert runner.cuda.calls.count("begin_capture") == 1
    np.testing.assert_allclose(first["score"], want["score"], rtol=1e-6)
    fake.calls.clear()
    feed = tiny.feed(2, seed=2)
    second = runner.run(feed)
    assert not [c for c in fake.calls if c[0] == "execute_async_v3"]  # replay only
    assert runner.cuda.calls.count("launch_graph") == 2
    np.testing.assert_allclose(
        second["score"], _ort("analyze.onnx", feed, tmp_path)["score"], rtol=1e-6
    )
    runner.run(tiny.feed(3))
    assert runner.cuda.calls.count("begin_capture") == 2  # a new graph for a new batch size


def test_split_bundle_runs_encode_kernels_decode_with_analyze_outputs(fake, tmp_path):
    bundle = _build(tmp_path, mode="split")
    runner = _runner(fake, bundle, cuda_graph=True)
    assert list(runner.inputs) == ["a", "b", "mask"]
    assert list(runner.outputs) == ANALYZE_OUTPUTS
    mask = np.array([[1, 1], [0, 1], [1, 0], [0, 0]], np.float32)
    for seed in (0, 1):  # second run replays the captured graph with new inputs
        feed = tiny.feed(4, seed=seed, mask=mask)
        got = runner.run(feed)
        enc = _ort("encode.onnx", feed, tmp_path)
        dec = ort.InferenceSession(str(tmp_path / "export" / "decode.onnx"))
        recons = dec.run(["recon_a", "recon_b"], {"z": enc["z_mu"]})
        np.testing.assert_allclose(got["z_mu"], enc["z_mu"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got["recon_b"], recons[1], rtol=1e-5, atol=1e-6)
        poe = poe_fusion_ref(enc["expert_mu"], enc["expert_logvar"], mask)
        stats = [tiny.SCORE_STATS[k] for k in ("mean", "std", "weight")]
        want = anomaly_score_ref([feed["a"], feed["b"]], recons, mask, poe.kl_prior,
                                 poe.cross_kl, *stats)  # fmt: skip
        np.testing.assert_allclose(got["score"], want.score, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got["score_parts"], want.parts, rtol=1e-5, atol=1e-5)
    assert runner.kernels.calls == ["poe_fusion", "anomaly_score"] * 2  # warm-up + capture
    # decode reads z from the poe_fusion output buffer: no copy between the engines
    dec_ctx = runner._engines[1].context
    assert dec_ctx.addresses["z"] == runner._extra["z_mu"]


def test_close_frees_every_device_buffer(fake, tmp_path):
    runner = _runner(fake, _build(tmp_path, mode="split"))
    runner.run(tiny.feed(2))
    assert fake.device.buffers
    runner.close()
    assert not fake.device.buffers
    assert runner.cuda.calls[-1] == "destroy_stream"
    runner.close()  # idempotent


def test_bad_device_and_missing_file(fake, tmp_path):
    with pytest.raises(ConfigError, match="run on the GPU, not on 'cpu'"):
        TrtRunner(tmp_path / "x.plan", device="cpu")
    with pytest.raises(ConfigError, match="does not exist; build it with `edgevae build`"):
        TrtRunner(tmp_path / "x.plan")


def test_without_tensorrt_the_error_says_how_to_install_it(tmp_path):
    plan = tmp_path / "analyze.fp32.plan"
    plan.write_bytes(b"x")
    with pytest.raises(MissingDependencyError, match="sudo apt install python3-libnvinfer"):
        TrtRunner(plan)
