import numpy as np
import pytest

from edgevae.errors import ConfigError, ExportError, MissingDependencyError, ShapeError
from edgevae.runtime.base import Runner, TensorInfo
from edgevae.runtime.ort_runner import OrtRunner, resolve_providers
from edgevae.runtime.registry import artifact_kind, backend_for, runner_for
from edgevae.runtime.torch_runner import TorchRunner
from tests.bench_util import INPUTS, OUTPUTS, export_tiny, tiny_module


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("tiny") / "tiny.onnx")


def feed(batch, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "cam0": rng.random((batch, 2, 8, 8), dtype=np.float32),
        "motion": rng.standard_normal((batch, 4, 3)).astype(np.float32),
        "mask": np.ones((batch, 2), np.float32),
    }


@pytest.mark.parametrize("batch", [1, 3])
def test_torch_and_ort_agree_on_a_dynamic_batch(tiny_onnx, batch):
    t = TorchRunner(tiny_module(), INPUTS, OUTPUTS, threads=1)
    o = OrtRunner(tiny_onnx, threads=1)
    a, b = t.run(feed(batch)), o.run(feed(batch))
    assert list(a) == list(b) == ["z_mu", "recon_cam0", "score"]
    for name in a:
        assert a[name].shape == b[name].shape and a[name].shape[0] == batch
        np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-5)
    assert isinstance(t, Runner) and isinstance(o, Runner)


def test_ort_reports_inputs_outputs_and_settings(tiny_onnx):
    o = OrtRunner(tiny_onnx, threads=1, graph_optimization="extended", allow_spinning=False)
    assert o.inputs["cam0"] == TensorInfo("cam0", ("batch", 2, 8, 8), np.dtype("float32"))
    assert list(o.outputs) == ["z_mu", "recon_cam0", "score"]
    assert o.settings["providers"] == ["CPUExecutionProvider"]
    assert o.settings["graph_optimization"] == "extended"
    assert o.settings["intra_op_threads"] == 1


def test_ort_from_bytes_and_optimized_model_dump(tiny_onnx, tmp_path):
    dump = tmp_path / "opt" / "tiny.opt.onnx"
    o = OrtRunner(tiny_onnx.read_bytes(), optimized_model_path=dump, execution_mode="parallel",
                  inter_op_threads=1)  # fmt: skip
    assert dump.is_file()
    assert o.run(feed(2))["score"].shape == (2,)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (lambda f: {k: v for k, v in f.items() if k != "mask"}, r"missing \['mask'\]"),
        (lambda f: {**f, "extra": f["mask"]}, r"unexpected \['extra'\]"),
        (lambda f: {**f, "cam0": f["cam0"][:, :1]}, r"input 'cam0' has shape \(2, 1, 8, 8\)"),
        (lambda f: {**f, "motion": f["motion"].astype(np.float64)}, "dtype float64"),
        (lambda f: {**f, "mask": f["mask"][0]}, "input 'mask' has shape"),
    ],
)
def test_bad_feeds_raise_shape_error_on_both_runners(tiny_onnx, bad, match):
    for runner in (OrtRunner(tiny_onnx), TorchRunner(tiny_module(), INPUTS, OUTPUTS)):
        with pytest.raises(ShapeError, match=match):
            runner.run(bad(feed(2)))


def test_ort_option_errors(tiny_onnx):
    with pytest.raises(ConfigError, match=r"Did you mean 'extended'"):
        OrtRunner(tiny_onnx, graph_optimization="extend")
    with pytest.raises(ConfigError, match=r"threads must be a positive integer"):
        OrtRunner(tiny_onnx, threads=0)
    with pytest.raises(ConfigError, match=r"execution mode"):
        OrtRunner(tiny_onnx, execution_mode="paralel")


def test_providers_are_never_silently_downgraded():
    avail = ["CPUExecutionProvider"]
    assert resolve_providers(None, "cpu", avail) == ["CPUExecutionProvider"]
    with pytest.raises(MissingDependencyError, match=r"CUDAExecutionProvider.*onnxruntime-gpu"):
        resolve_providers(None, "cuda", avail)
    with pytest.raises(MissingDependencyError, match=r"TensorrtExecutionProvider"):
        resolve_providers(["trt"], "cpu", avail)
    with pytest.raises(ConfigError, match=r"execution provider"):
        resolve_providers(["cdua"], "cpu", avail)
    full = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers(["tensorrt", "cuda"], "cuda", full) == full


def test_corrupt_and_missing_onnx(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x01garbage")
    with pytest.raises(ExportError, match=r"onnxruntime cannot load .*bad.onnx.*re-export"):
        OrtRunner(bad)
    with pytest.raises(ExportError, match=r"does not exist"):
        OrtRunner(tmp_path / "nope.onnx")


def test_torch_runner_threads_outputs_and_errors():
    import torch

    before = torch.get_num_threads()
    try:
        t = TorchRunner(tiny_module(), INPUTS, OUTPUTS, threads=1)
        t.run(feed(1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ShapeError, match=r"returned 3 outputs but 2 names"):
        TorchRunner(tiny_module(), INPUTS, OUTPUTS[:2]).run(feed(1))
    with pytest.raises(ConfigError, match=r"device"):
        TorchRunner(tiny_module(), INPUTS, OUTPUTS, device="tpu")
    with pytest.raises(ConfigError, match=r"duplicate input name"):
        TorchRunner(tiny_module(), INPUTS + INPUTS[:1], OUTPUTS)
    if not torch.cuda.is_available():
        with pytest.raises(MissingDependencyError, match=r"no CUDA GPU"):
            TorchRunner(tiny_module(), INPUTS, OUTPUTS, device="cuda")


def test_torch_runner_accepts_dict_results():
    import torch

    class Named(torch.nn.Module):
        def forward(self, cam0, motion, mask):
            return {"score": cam0.mean((1, 2, 3)), "unused": mask}

    out = TorchRunner(Named(), INPUTS, [OUTPUTS[2]]).run(feed(2))
    assert list(out) == ["score"] and out["score"].shape == (2,)
    with pytest.raises(ShapeError, match=r"no outputs"):
        TorchRunner(Named(), INPUTS, [OUTPUTS[0]]).run(feed(2))


def test_compiled_variant_matches_eager():
    eager = TorchRunner(tiny_module(), INPUTS, OUTPUTS)
    compiled = TorchRunner.compiled(tiny_module(), INPUTS, OUTPUTS, compile_backend="eager")
    assert compiled.name == "torch-compile"
    np.testing.assert_allclose(
        compiled.run(feed(2))["score"], eager.run(feed(2))["score"], rtol=1e-6
    )
    with pytest.raises(ConfigError, match=r"torch.compile mode"):
        TorchRunner.compiled(tiny_module(), INPUTS, OUTPUTS, mode="fastest")


def test_registry_kinds_and_backend_choice(tiny_onnx, tmp_path):
    assert artifact_kind(tiny_onnx) == "onnx"
    assert backend_for(tiny_onnx) == "ort"
    engine = tmp_path / "m.plan"
    engine.write_bytes(b"\0")
    assert artifact_kind(engine) == "engine"
    with pytest.raises(ConfigError, match=r"does not exist"):
        artifact_kind(tmp_path / "missing.onnx")
    other = tmp_path / "notes.txt"
    other.write_text("x")
    with pytest.raises(ConfigError, match=r"cannot tell how to run 'notes.txt'"):
        artifact_kind(other)
    with pytest.raises(ConfigError, match=r"without model.json"):
        artifact_kind(tmp_path)
    with pytest.raises(ConfigError, match=r"backend 'torch' cannot run 'tiny.onnx'.*training run"):
        backend_for(tiny_onnx, "torch")
    with pytest.raises(ConfigError, match=r"backend 'ort' cannot run 'm.plan'.*edgevae export"):
        backend_for(engine, "ort")
    with pytest.raises(ConfigError, match=r"Did you mean 'ort'"):
        backend_for(tiny_onnx, "ortt")
    assert isinstance(runner_for(tiny_onnx, threads=1), OrtRunner)
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['graph_opt'\] for backend 'ort'"):
        runner_for(tiny_onnx, graph_opt="all")


def test_engine_without_tensorrt_is_a_clear_missing_dependency(tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0")
    with pytest.raises(MissingDependencyError, match=r"tensorrt"):
        runner_for(engine)


def test_run_dir_runs_on_torch_and_matches_its_onnx_export(tmp_path):
    from tests.bench_util import export_run, make_run_dir

    run, _ = make_run_dir(tmp_path)
    torch_runner = runner_for(run, threads=1)
    onnx_runner = runner_for(export_run(run, tmp_path / "analyze.onnx"), threads=1)
    assert list(torch_runner.inputs) == list(onnx_runner.inputs)
    assert list(torch_runner.outputs) == list(onnx_runner.outputs)
    rng = np.random.default_rng(0)
    f = {n: rng.random((2, *i.shape[1:]), dtype=np.float32) for n, i in torch_runner.inputs.items()}
    f["mask"] = np.ones((2, 4), np.float32)
    a, b = torch_runner.run(f), onnx_runner.run(f)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-3, atol=1e-4)
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['mode'\] for backend 'torch'"):
        runner_for(run, "torch", mode="max-autotune")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['dynamc'\].*compile_backend"):
        runner_for(run, "torch-compile", dynamc=True)
