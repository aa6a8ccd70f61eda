"""trtexec flag sets for TensorRT 10.x vs 11.x and parsing of its JSON exports (fixture files
shaped like trtexec's; no trtexec runs here)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgevae.errors import ConfigError, EngineBuildError, MissingDependencyError
from edgevae.trt import trtexec as tx
from edgevae.trt.profiles import profile_shapes
from edgevae.trt.versions import parse_trt_version

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "trtexec"
V10, V11 = parse_trt_version("10.3.0.30"), parse_trt_version("11.4.0.106")


def test_trt10_opts_in_to_what_trt11_does_by_default():
    m = tx.Measurement()
    f10, f11 = tx.inference_flags(V10, m), tx.inference_flags(V11, m)
    assert {"--useCudaGraph", "--noDataTransfers", "--useSpinWait", "--separateProfileRun"} <= set(
        f10
    )
    assert not [f for f in f11 if f.startswith(("--use", "--no", "--include", "--separate"))]
    common = ["--warmUp=500", "--duration=10", "--iterations=200", "--avgRuns=1",
              "--percentile=50,90,95,99"]  # fmt: skip
    assert f10[-5:] == common and f11 == common


def test_opposite_measurements_use_the_opt_out_flags_on_trt11():
    m = tx.Measurement(cuda_graph=False, data_transfers=True, spin_wait=False, profile_layers=False)
    assert tx.inference_flags(V11, m)[:3] == ["--noCudaGraph", "--includeDataTransfers",
                                              "--noSpinWait"]  # fmt: skip
    f10 = tx.inference_flags(V10, m)
    assert not [f for f in f10 if f.startswith(("--use", "--no", "--separate"))]


def test_build_flags_are_strongly_typed_without_precision_flags():
    profiles = profile_shapes({"cam0": (-1, 8, 64, 64), "mask": (-1, 3)}, (1, 4, 16))
    f10 = tx.build_flags(V10, profiles, workspace_mib=1024, opt_level=3, timing_cache="/t.cache")
    f11 = tx.build_flags(V11, profiles, workspace_mib=512, opt_level=1, tf32=True)
    assert f10[:2] == ["--stronglyTyped", "--noTF32"]
    assert "--stronglyTyped" not in f11 and "--noTF32" not in f11
    assert "--minShapes=cam0:1x8x64x64,mask:1x3" in f10
    assert "--maxShapes=cam0:16x8x64x64,mask:16x3" in f10
    assert "--memPoolSize=workspace:1024" in f10 and "--timingCacheFile=/t.cache" in f10
    assert "--builderOptimizationLevel=1" in f11
    for flags in (f10, f11):
        assert not {"--fp16", "--int8", "--best"} & set(flags)


def test_command_for_an_engine_with_plugins_and_exports(tmp_path):
    cmd = tx.trtexec_command(
        V10,
        engine="analyze.fp16.plugin.plan",
        shapes={"cam0": (4, 8, 64, 64), "mask": (4, 3)},
        export_dir=tmp_path,
        plugin_libraries=["/opt/libedgevae_plugins.so"],
        trtexec="/usr/src/tensorrt/bin/trtexec",
    )
    assert cmd[:4] == [
        "/usr/src/tensorrt/bin/trtexec",
        "--loadEngine=analyze.fp16.plugin.plan",
        "--shapes=cam0:4x8x64x64,mask:4x3",
        "--dynamicPlugins=/opt/libedgevae_plugins.so",
    ]
    assert f"--exportTimes={tmp_path / 'times.json'}" in cmd
    assert f"--exportProfile={tmp_path / 'profile.json'}" in cmd
    assert f"--exportLayerInfo={tmp_path / 'layers.json'}" in cmd


def test_command_needs_exactly_one_model(tmp_path):
    with pytest.raises(ConfigError, match="either an engine"):
        tx.trtexec_command(V11, export_dir=tmp_path)
    with pytest.raises(ConfigError, match="either an engine"):
        tx.trtexec_command(V11, engine="a.plan", onnx="a.onnx", export_dir=tmp_path)
    cmd = tx.trtexec_command(V11, onnx="a.onnx", build=["--noTF32"], export_dir=tmp_path)
    assert cmd[1:3] == ["--onnx=a.onnx", "--noTF32"]


def test_parse_times_nearest_rank_on_raw_samples():
    t = tx.parse_times(FIXTURES / "times.json")
    lat = t["latency"]
    assert lat.n == 20 and lat.max == pytest.approx(0.95) and lat.min == pytest.approx(0.39)
    # nearest rank on 20 sorted samples: p50 -> 10th, p95 -> 19th, p99 -> 20th (the outlier)
    assert lat.percentiles[50] == pytest.approx(0.40)
    assert lat.percentiles[95] == pytest.approx(0.44)
    assert lat.percentiles[99] == pytest.approx(0.95)  # never clipped
    assert t["compute"].percentiles[50] == pytest.approx(0.37)
    assert t["enqueue"].mean == pytest.approx(0.02)


def test_parse_times_old_format():
    t = tx.parse_times(FIXTURES / "times_old.json")
    assert t["latency"].n == 2 and t["latency"].max == pytest.approx(1.7)
    assert t["compute"].percentiles[50] == pytest.approx(1.0)
    assert t["enqueue"] is None


def test_parse_profile_and_layer_info():
    rows = tx.parse_profile(FIXTURES / "profile.json")
    assert [r["name"] for r in rows][:2] == [
        "/encoders.0/conv/Conv + /encoders.0/Relu",
        "/decoders.0/Resize",
    ]
    assert rows[-1] == {"name": "edgevae/anomaly_score", "time_ms": 9.9, "average_ms": 0.0099,
                        "median_ms": 0.0098, "percent": 3.6}  # fmt: skip
    info = tx.parse_layer_info(FIXTURES / "layers.json")
    assert info["precisions"] == {"fp16": 2, "fp32": 2}
    assert [x["type"] for x in info["layers"]].count("PluginV3") == 2


def test_parse_exports_reads_a_whole_run(tmp_path):
    for name in ("times.json", "profile.json", "layers.json"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    result = tx.parse_exports(["trtexec"], tmp_path, log_tail="&&&& PASSED")
    d = result.to_dict()
    assert d["latency"]["n"] == 20 and len(d["layers"]) == 4
    assert d["layer_info"]["precisions"]["fp16"] == 2


def test_bad_exports_are_errors(tmp_path):
    (tmp_path / "times.json").write_text("{}")
    with pytest.raises(EngineBuildError, match="not a JSON list"):
        tx.parse_times(tmp_path / "times.json")
    (tmp_path / "times.json").write_text("[{}]")
    with pytest.raises(EngineBuildError, match="no per-iteration times"):
        tx.parse_times(tmp_path / "times.json")
    with pytest.raises(EngineBuildError, match="cannot read the trtexec times export"):
        tx.parse_times(tmp_path / "missing.json")


def test_run_trtexec_reports_failures_and_missing_binary(tmp_path):
    fake = tmp_path / "trtexec"
    fake.write_text("#!/bin/sh\necho '[E] Error[4]: engine plan file is incompatible'\nexit 1\n")
    fake.chmod(0o755)
    cmd = tx.trtexec_command(V10, engine="x.plan", export_dir=tmp_path / "out", trtexec=fake)
    with pytest.raises(EngineBuildError, match=r"exit 1\): \[E\] Error\[4\]: engine plan"):
        tx.run_trtexec(cmd)
    cmd[0] = str(tmp_path / "nope")
    with pytest.raises(MissingDependencyError, match="does not exist"):
        tx.run_trtexec(cmd)


def test_run_trtexec_parses_what_a_run_exported(tmp_path):
    fake = tmp_path / "trtexec"
    fake.write_text(
        '#!/bin/sh\nfor a in "$@"; do case $a in --exportTimes=*) '
        f'cp {FIXTURES / "times.json"} "${{a#--exportTimes=}}";; esac; done\n'
        "echo '&&&& PASSED TensorRT.trtexec'\n"
    )
    fake.chmod(0o755)
    m = tx.Measurement(profile_layers=False)
    cmd = tx.trtexec_command(
        V11, engine="x.plan", export_dir=tmp_path / "out", measurement=m, trtexec=fake
    )
    result = tx.run_trtexec(cmd)
    assert result.latency.n == 20 and result.layers == [] and "PASSED" in result.log_tail


def test_find_trtexec(monkeypatch, tmp_path):
    monkeypatch.setattr(tx, "TRTEXEC_PATHS", ())
    monkeypatch.delenv("EDGEVAE_TRTEXEC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingDependencyError, match="/usr/src/tensorrt/bin"):
        tx.find_trtexec()
    exe = tmp_path / "trtexec"
    exe.write_text("")
    monkeypatch.setenv("EDGEVAE_TRTEXEC", str(exe))
    assert tx.find_trtexec() == exe


def test_measurement_validation():
    with pytest.raises(ConfigError, match="avg_runs"):
        tx.Measurement(avg_runs=0)
