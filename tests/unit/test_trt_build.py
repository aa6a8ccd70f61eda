"""``build_engine`` call sequences against the FAKE TensorRT (tests/fakes/fake_tensorrt.py).

These prove what edgevae asks TensorRT to do (flags, profiles, workspace, TF32, timing cache,
error translation, files written), not what TensorRT does with it: the real-engine tests are
tests/trt/test_trt_engine.py (``trt`` marker).
"""

from __future__ import annotations

import json
import shutil

import pytest

from edgevae.errors import ConfigError, EngineBuildError, ExportError
from edgevae.trt import build as build_mod
from edgevae.trt.build import (
    build_engine,
    effective_workspace_mib,
    oom_message,
    summarize_layers,
    timing_cache_file,
)
from edgevae.trt.config import EngineConfig
from edgevae.trt.manifest import read_engine_manifest, read_split_bundle
from edgevae.trt.versions import ComputeCapability, parse_trt_version
from tests.fakes import tiny_export as tiny
from tests.fakes.fake_tensorrt import install, make_fake_tensorrt


@pytest.fixture
def export(tmp_path):
    return tiny.write_export(tmp_path / "export", ("fp32", "fp16", "int8"))


def _cfg(tmp_path, **kw) -> EngineConfig:
    kw.setdefault("timing_cache", str(tmp_path / "cache" / "timing.cache"))
    kw.setdefault("out_dir", str(tmp_path / "engines"))
    return EngineConfig(**kw)


def _fake(monkeypatch, version="10.13.3.9", target=None, **kw):
    trt = make_fake_tensorrt(version, **kw)
    install(monkeypatch, build_mod, trt, **(target or {}))
    return trt


def _calls(trt, name):
    return [c for c in trt.calls if c[0] == name]


def test_native_build_call_sequence_on_trt10(monkeypatch, tmp_path, export):
    trt = _fake(monkeypatch, "10.3.0.30")
    lines: list[str] = []
    plan = build_engine(export, _cfg(tmp_path, batch=(1, 4, 16)), progress=lines.append)

    assert plan == tmp_path / "engines" / "analyze.fp32.plan"
    assert _calls(trt, "parse_from_file") == [("parse_from_file", "analyze.onnx")]
    strongly_typed = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert _calls(trt, "create_network") == [("create_network", strongly_typed)]
    assert ("clear_flag", "TF32") in trt.calls and ("set_flag", "TF32") not in trt.calls
    assert ("set_memory_pool_limit", "WORKSPACE", 1024 << 20) in trt.calls
    shapes = {c[1]: c[2:] for c in _calls(trt, "profile.set_shape")}
    assert shapes == {
        "a": ((1, 4), (4, 4), (16, 4)),
        "b": ((1, 2, 3), (4, 2, 3), (16, 2, 3)),
        "mask": ((1, 2), (4, 2), (16, 2)),
    }
    # order: parse -> config -> profile -> timing cache -> build -> inspect
    order = [c[0] for c in trt.calls]
    assert order.index("parse_from_file") < order.index("add_optimization_profile")
    assert order.index("set_timing_cache") < order.index("build_serialized_network")
    assert order.index("build_serialized_network") < order.index("deserialize_cuda_engine")
    assert any("building analyze.fp32.plan" in ln for ln in lines)


def test_trt11_does_not_set_the_deprecated_strong_typing_flag(monkeypatch, tmp_path, export):
    trt = _fake(monkeypatch, "11.4.0.106")
    build_engine(export, _cfg(tmp_path, precision="fp16"))
    assert _calls(trt, "create_network") == [("create_network", 0)]  # always strongly typed
    assert not hasattr(trt.BuilderFlag, "FP16")  # the fake, like 11.x, has no weak-typing flags
    assert _calls(trt, "parse_from_file") == [("parse_from_file", "analyze.fp16.onnx")]


def test_manifest_records_versions_profiles_io_and_layer_precisions(monkeypatch, tmp_path, export):
    trt = _fake(monkeypatch)
    plan = build_engine(export, _cfg(tmp_path, precision="int8", batch=(2, 2, 8)))
    assert plan.name == "analyze.int8.plan"
    m = read_engine_manifest(plan)
    assert (m.role, m.mode, m.precision) == ("analyze", "native", "int8")
    assert m.target.trt_version == trt.__version__ and m.target.compute_capability == "8.7"
    assert m.target.l4t == "36.4.3" and m.target.jetpack == "6.1/6.2"
    assert m.profiles["mask"] == {"min": [2, 2], "opt": [2, 2], "max": [8, 2]}
    assert m.io["score_parts"] == {"mode": "output", "shape": [-1, 4], "dtype": "float32"}
    assert m.batch_range() == (2, 8)
    raw = m.raw
    assert raw["inputs"] == {"analyze.int8.trt.onnx": raw["inputs"]["analyze.int8.trt.onnx"]}
    assert raw["details"]["layers"]["precisions"]["fp32"] > 5
    assert raw["details"]["build"]["workspace_mib"] == 1024
    assert raw["config"]["tf32"] is False


def test_tf32_is_set_only_when_asked(monkeypatch, tmp_path, export):
    trt = _fake(monkeypatch)
    build_engine(export, _cfg(tmp_path, tf32=True))
    assert ("set_flag", "TF32") in trt.calls and ("clear_flag", "TF32") not in trt.calls


def test_workspace_is_capped_at_half_the_free_memory(monkeypatch, tmp_path, export):
    trt = _fake(monkeypatch, target={"free_mib": 600})
    lines: list[str] = []
    build_engine(export, _cfg(tmp_path), progress=lines.append)
    assert ("set_memory_pool_limit", "WORKSPACE", 300 << 20) in trt.calls
    assert any("workspace lowered to 300 MiB" in ln for ln in lines)


def test_timing_cache_is_keyed_saved_and_reused(monkeypatch, tmp_path, export):
    trt = _fake(monkeypatch)
    cfg = _cfg(tmp_path)
    build_engine(export, cfg)
    cache = tmp_path / "cache" / f"timing.trt{trt.__version__}.sm87.l4t36.4.3.cache"
    assert cache.is_file() and cache.read_bytes().startswith(b"FAKECACHE:")
    assert _calls(trt, "create_timing_cache") == [("create_timing_cache", 0)]
    saved = len(cache.read_bytes())
    trt.calls.clear()
    plan = build_engine(export, cfg)
    assert _calls(trt, "create_timing_cache") == [("create_timing_cache", saved)]
    assert _calls(trt, "set_timing_cache") == [("set_timing_cache", True, False)]
    note = read_engine_manifest(plan).raw["details"]["build"]["timing_cache_note"]
    assert note.startswith("loaded")


def test_incompatible_timing_cache_is_ignored_not_fatal(monkeypatch, tmp_path, export):
    trt = _fake(monkeypatch)
    cfg = _cfg(tmp_path)
    cache = timing_cache_file(
        cfg.timing_cache, parse_trt_version(trt.__version__), ComputeCapability(8, 7), "36.4.3"
    )
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"FAKECACHE:9.9.9:3")  # from another TensorRT
    plan = build_engine(export, cfg)
    note = read_engine_manifest(plan).raw["details"]["build"]["timing_cache_note"]
    assert note == "ignored an incompatible cache"
    assert cache.read_bytes().startswith(f"FAKECACHE:{trt.__version__}".encode())


def test_parser_errors_name_the_nodes(monkeypatch, tmp_path, export):
    _fake(monkeypatch, unsupported_ops=("Split",))
    with pytest.raises(EngineBuildError) as exc:
        build_engine(export, _cfg(tmp_path))
    msg = str(exc.value)
    assert "could not parse analyze.onnx" in msg
    assert "node '/analyze/Split_2' (Split): No importer registered for op: Split" in msg
    assert "--mode split" in msg
    assert not (tmp_path / "engines" / "analyze.fp32.plan").exists()


def test_out_of_memory_is_reported_as_such_with_numbers_and_fixes(monkeypatch, tmp_path, export):
    _fake(monkeypatch, oom=True, target={"free_mib": 3000})
    with pytest.raises(EngineBuildError) as exc:
        build_engine(export, _cfg(tmp_path, batch=(1, 8, 32), opt_level=3))
    msg = str(exc.value)
    assert msg.startswith("TensorRT ran out of memory while selecting tactics for analyze.onnx")
    assert "a tactic asked for 826 MiB with 186 MiB available" in msg
    assert "workspace 1024 MiB" in msg and "batch max 32" in msg and "3000 MiB free" in msg
    assert "--workspace 512" in msg and "--batch 1,8,16" in msg and "--opt-level 1" in msg
    assert "node /encoders.0/conv/Conv" in msg
    assert not list((tmp_path / "engines").glob("*.plan*"))


def test_other_build_failures_quote_tensorrt(monkeypatch, tmp_path, export):
    _fake(monkeypatch, build_error="Assertion failed: something internal")
    with pytest.raises(EngineBuildError, match=r"failed to build analyze.onnx: Assertion failed"):
        build_engine(export, _cfg(tmp_path))


def test_no_gpu_is_a_clear_build_error(monkeypatch, tmp_path, export):
    _fake(monkeypatch, gpu=False)
    with pytest.raises(EngineBuildError, match=r"could not create a builder.*edgevae doctor"):
        build_engine(export, _cfg(tmp_path))


def test_no_compute_capability_means_no_gpu(monkeypatch, tmp_path, export):
    _fake(monkeypatch, target={"cc": None})
    with pytest.raises(EngineBuildError, match="no CUDA GPU is visible"):
        build_engine(export, _cfg(tmp_path))


def test_tensorrt_8_is_refused(monkeypatch, tmp_path, export):
    _fake(monkeypatch, "8.5.2.2")
    with pytest.raises(EngineBuildError, match=r"TensorRT 8\.5\.2\.2 is too old.*JetPack 6"):
        build_engine(export, _cfg(tmp_path))


def test_missing_precision_onnx_names_the_command(monkeypatch, tmp_path):
    export = tiny.write_export(tmp_path / "export")
    _fake(monkeypatch)
    with pytest.raises(ExportError, match=r"no analyze\.fp16\.onnx.*edgevae quantize"):
        build_engine(export, _cfg(tmp_path, precision="fp16"))
    shutil.copy(export / "analyze.onnx", export / "analyze.int8.cpu.onnx")
    with pytest.raises(ExportError, match=r"CPU artifact and cannot be used for TensorRT"):
        build_engine(export, _cfg(tmp_path, precision="int8"))


def test_missing_export_dir(monkeypatch, tmp_path):
    _fake(monkeypatch)
    with pytest.raises(ConfigError, match="does not exist"):
        build_engine(tmp_path / "nope", _cfg(tmp_path))


def test_split_mode_builds_two_engines_and_a_bundle(monkeypatch, tmp_path, export):
    trt = _fake(monkeypatch)
    bundle_path = build_engine(export, _cfg(tmp_path, mode="split", precision="fp16"))
    assert bundle_path.name == "analyze.fp16.split.json"
    parsed = [c[1] for c in _calls(trt, "parse_from_file")]
    assert parsed == ["encode.fp16.experts.onnx", "decode.fp16.onnx"]
    bundle = read_split_bundle(bundle_path)
    assert bundle.modalities == ["a", "b"] and bundle.latent_dim == 3
    assert bundle.score_stats == {**tiny.SCORE_STATS, "combine": "sum"}  # rule carried along
    enc = read_engine_manifest(bundle.encode)
    assert enc.role == "encode"
    assert {n for n, t in enc.io.items() if t["mode"] == "output"} == {"expert_mu", "expert_logvar"}
    dec = read_engine_manifest(bundle.decode)
    assert dec.profiles == {"z": {"min": [1, 3], "opt": [4, 3], "max": [16, 3]}}
    assert (bundle_path.parent / "analyze.fp16.split.json.manifest.json").is_file()


def test_split_mode_needs_score_stats(monkeypatch, tmp_path):
    export = tiny.write_export(tmp_path / "export", stats=False)
    _fake(monkeypatch)
    with pytest.raises(ExportError, match=r"no anomaly-score statistics.*--mode native"):
        build_engine(export, _cfg(tmp_path, mode="split"))


def test_plugin_mode_on_trt_10_3_needs_the_cpp_library(monkeypatch, tmp_path, export):
    _fake(monkeypatch, "10.3.0.30")
    with pytest.raises(EngineBuildError, match=r"needs TensorRT >= 10\.9.*--plugin-lib"):
        build_engine(export, _cfg(tmp_path, mode="plugin"))


def test_plugin_mode_with_the_cpp_library(monkeypatch, tmp_path, export):
    trt = _fake(monkeypatch, "10.3.0.30")
    lib = tmp_path / "libedgevae_plugins.so"
    lib.write_bytes(b"\x7fELF fake")
    plan = build_engine(export, _cfg(tmp_path, mode="plugin", plugin_library=str(lib)))
    assert plan.name == "analyze.fp32.plugin.plan"
    assert ("load_library", lib.name) in trt.calls
    m = read_engine_manifest(plan)
    assert m.plugin_libraries == [str(lib.resolve())] and m.mode == "plugin"
    layers = m.raw["details"]["layers"]["layers"]
    assert [x["type"] for x in layers].count("PluginV3") == 2
    import onnx

    nodes = onnx.load(str(plan.with_name("analyze.fp32.plugin.onnx"))).graph.node
    custom = [n for n in nodes if n.domain == "edgevae"]
    assert [n.op_type for n in custom] == ["poe_fusion", "anomaly_score"]
    assert all("aot" not in {a.name for a in n.attribute} for n in custom)


def test_plugin_mode_with_a_missing_library(monkeypatch, tmp_path, export):
    _fake(monkeypatch, "10.3.0.30")
    with pytest.raises(ConfigError, match=r"does not exist.*cmake -S kernels/plugins"):
        build_engine(export, _cfg(tmp_path, mode="plugin", plugin_library=str(tmp_path / "x.so")))


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc to compile the plugin PTX")
def test_plugin_mode_registers_aot_plugins_with_ptx(monkeypatch, tmp_path, export):
    monkeypatch.setenv("EDGEVAE_CACHE_DIR", str(tmp_path / "cache-root"))
    trt = _fake(monkeypatch, "10.13.3.9", target={"cuda": "13.0"})  # JetPack 7
    plan = build_engine(export, _cfg(tmp_path, mode="plugin", precision="fp16"))
    flags = _calls(trt, "create_network")[0][1]
    assert flags & (1 << int(trt.NetworkDefinitionCreationFlag.PREFER_AOT_PYTHON_PLUGINS))
    registry = trt.get_plugin_registry()
    assert set(registry.qdp) == {"edgevae::poe_fusion", "edgevae::anomaly_score"}
    name, ptx, params, extra = registry.aot_results["edgevae::poe_fusion"]
    assert name == "edgevae_plugin_poe_fusion"
    assert b".entry edgevae_plugin_poe_fusion(" in ptx and b".target sm_87" in ptx
    assert (params.block_x, params.shared_mem, params.grid_x) == (128, 0, ("i32", "B"))
    assert [e[1] for e in extra] == ["B", 2, 3]  # B, M, D (int32 scalars after the inputs)
    name, _, params, extra = registry.aot_results["edgevae::anomaly_score"]
    assert name == "edgevae_plugin_anomaly_score" and params.block_x == 256
    assert [e[1] for e in extra] == ["B", 2, 10]  # B, M, N (x_cat columns)
    assert read_engine_manifest(plan).plugin_libraries == []


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc to compile the plugin PTX")
def test_plugin_ptx_too_new_for_the_driver_is_refused(monkeypatch, tmp_path, export):
    from edgevae.errors import KernelError

    monkeypatch.setenv("EDGEVAE_CACHE_DIR", str(tmp_path / "cache-root"))
    _fake(monkeypatch, "10.13.3.9", target={"cuda": "11.4"})
    with pytest.raises(KernelError, match=r"newer than this CUDA 11\.4 driver can load"):
        build_engine(export, _cfg(tmp_path, mode="plugin"))


# ------------------------------------------------------------------ pure helpers


def test_timing_cache_file_is_keyed():
    v, cc = parse_trt_version("10.3.0.30"), ComputeCapability(8, 7)
    assert timing_cache_file("/c/t.cache", v, cc).name == "t.trt10.3.0.30.sm87.cache"
    assert timing_cache_file("/c/t", v, cc, "36.4.3").name == "t.trt10.3.0.30.sm87.l4t36.4.3.cache"
    assert "trt" in str(timing_cache_file(None, v, cc).parent)


@pytest.mark.parametrize(
    ("requested", "free", "want"), [(1024, None, 1024), (1024, 4096, 1024), (1024, 600, 300)]
)
def test_effective_workspace(requested, free, want):
    assert effective_workspace_mib(requested, free) == want


def test_oom_message_is_none_for_other_errors(tmp_path):
    job = build_mod._Job("analyze", tmp_path / "a.onnx", tmp_path / "a.plan")
    assert oom_message(["Network has dynamic inputs"], job, EngineConfig(), 1024, None) is None
    msg = oom_message(["cudaErrorMemoryAllocation"], job, EngineConfig(), 1024, None)
    assert msg is not None and "ran out of memory" in msg and "free at start" not in msg


def test_summarize_layers_detailed_and_names_only():
    detailed = {
        "Layers": [
            {"Name": "conv", "LayerType": "CaskConvolution",
             "Outputs": [{"Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}]},
            {"Name": "q", "LayerType": "Scale", "Outputs": [{"Format/Datatype": "Int8"}]},
            {"Name": "fuse", "LayerType": "PluginV3",
             "Outputs": [{"Format/Datatype": "Row major linear FP32"}]},
        ]
    }  # fmt: skip
    s = summarize_layers(json.dumps(detailed))
    assert s["precisions"] == {"fp16": 1, "int8": 1, "fp32": 1}
    assert s["layers"][0] == {"name": "conv", "type": "CaskConvolution", "precision": "fp16"}
    names_only = summarize_layers(json.dumps({"Layers": ["a", "b"]}))
    assert names_only["layers"][1] == {"name": "b", "type": None, "precision": None}
    assert summarize_layers("") is None and summarize_layers("{not json") is None
