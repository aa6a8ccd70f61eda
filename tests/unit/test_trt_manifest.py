"""Engine manifests and the compatibility check; optimization-profile shapes; export-dir reads."""

from __future__ import annotations

import json

import onnx
import pytest

from edgevae.errors import ConfigError, EngineMismatchError, ExportError
from edgevae.trt.export_dir import load_score_stats, modality_names, onnx_for
from edgevae.trt.manifest import (
    check_compatible,
    manifest_path,
    read_engine_manifest,
    read_split_bundle,
    write_engine_manifest,
)
from edgevae.trt.probe import TargetInfo
from edgevae.trt.profiles import onnx_input_dims, profile_shapes, shapes_flag
from tests.fakes import tiny_export as tiny

ORIN_JP6 = TargetInfo(
    trt_version="10.3.0.30",
    compute_capability="8.7",
    jetson_model="NVIDIA Jetson Orin Nano Developer Kit",
    jetpack="6.1/6.2",
    l4t="36.4.3",
)


def _engine(tmp_path, target=ORIN_JP6, **config):
    plan = tmp_path / "analyze.fp16.plan"
    plan.write_bytes(b"plan")
    cfg = {"precision": "fp16", "mode": "native", "batch": [1, 4, 16], **config}
    write_engine_manifest(
        plan,
        role="analyze",
        config=cfg,
        target=target,
        onnx_inputs={"analyze.fp16.onnx": "abc"},
        profiles={"mask": {"min": [1, 3], "opt": [4, 3], "max": [16, 3]}},
        io={"mask": {"mode": "input", "shape": [-1, 3], "dtype": "float32"}},
        export_dir="/data/export",
    )
    return plan


def test_manifest_round_trip(tmp_path):
    m = read_engine_manifest(_engine(tmp_path))
    assert (m.role, m.mode, m.precision) == ("analyze", "native", "fp16")
    assert m.target == ORIN_JP6 and m.batch_range() == (1, 16)
    assert m.raw["kind"] == "tensorrt-engine" and m.raw["sha256"]
    assert m.rebuild_hint() == "`edgevae build /data/export --precision fp16 --mode native`"


def test_same_machine_is_compatible(tmp_path):
    check_compatible(read_engine_manifest(_engine(tmp_path)), ORIN_JP6)
    same = TargetInfo(trt_version="10.3.0.30", compute_capability="sm_87")
    check_compatible(read_engine_manifest(_engine(tmp_path)), same)


def test_other_tensorrt_version_is_refused_with_both_sides_and_the_fix(tmp_path):
    m = read_engine_manifest(_engine(tmp_path))
    thor = TargetInfo(trt_version="10.13.3.9", compute_capability="11.0",
                      jetson_model="NVIDIA Jetson AGX Thor", jetpack="7.0")  # fmt: skip
    with pytest.raises(EngineMismatchError) as exc:
        check_compatible(m, thor)
    msg = str(exc.value)
    assert msg.startswith(
        "analyze.fp16.plan was built for TensorRT 10.3.0.30, compute capability 8.7 "
        "(NVIDIA Jetson Orin Nano Developer Kit), JetPack 6.1/6.2"
    )
    assert "this machine has TensorRT 10.13.3.9, compute capability 11.0" in msg
    assert "TensorRT 10.3.0.30 vs 10.13.3.9 here; compute capability 8.7 vs 11.0 here" in msg
    assert msg.endswith(
        "rebuild it here with `edgevae build /data/export --precision fp16 --mode native`."
    )


def test_other_gpu_only_is_refused(tmp_path):
    m = read_engine_manifest(_engine(tmp_path))
    with pytest.raises(EngineMismatchError, match=r"compute capability 8\.7 vs 8\.6 here\)"):
        check_compatible(m, TargetInfo(trt_version="10.3.0.30", compute_capability="8.6"))


def test_unknown_here_is_refused(tmp_path):
    m = read_engine_manifest(_engine(tmp_path))
    with pytest.raises(EngineMismatchError, match="vs None here"):
        check_compatible(m, TargetInfo(trt_version=None, compute_capability="8.7"))


def test_missing_or_broken_manifest(tmp_path):
    plan = _engine(tmp_path)
    path = manifest_path(plan)
    path.write_text(json.dumps({"kind": "onnx"}))
    with pytest.raises(EngineMismatchError, match="not a valid engine manifest"):
        read_engine_manifest(plan)
    path.write_text("{broken")
    with pytest.raises(EngineMismatchError, match="not a valid engine manifest"):
        read_engine_manifest(plan)
    path.unlink()
    with pytest.raises(EngineMismatchError, match="has no manifest"):
        read_engine_manifest(plan)


def test_broken_split_bundle(tmp_path):
    bundle = tmp_path / "analyze.fp16.split.json"
    bundle.write_text(json.dumps({"kind": "tensorrt-split"}))
    with pytest.raises(EngineMismatchError, match="not a readable split-engine bundle"):
        read_split_bundle(bundle)


# ------------------------------------------------------------------ profiles


def test_profile_shapes_vary_only_the_batch():
    p = profile_shapes({"cam0": ("batch", 8, 64, 64), "z": (None, 32)}, (1, 4, 16))
    assert p["cam0"].to_dict() == {
        "min": [1, 8, 64, 64],
        "opt": [4, 8, 64, 64],
        "max": [16, 8, 64, 64],
    }
    assert p["z"].opt == (4, 32)
    assert shapes_flag(p, "max") == "cam0:16x8x64x64,z:16x32"


def test_profile_shapes_errors():
    with pytest.raises(ExportError, match=r"dynamic dimension\(s\) \[2\] besides the batch"):
        profile_shapes({"cam0": (-1, 8, "height", 64)}, (1, 4, 16))
    with pytest.raises(ExportError, match="is a scalar"):
        profile_shapes({"t": ()}, (1, 1, 1))
    with pytest.raises(ExportError, match="no inputs"):
        profile_shapes({}, (1, 1, 1))
    with pytest.raises(ConfigError, match="fixed batch of 8; build with --batch 8,8,8"):
        profile_shapes({"mask": (8, 3)}, (1, 4, 16))
    assert profile_shapes({"mask": (8, 3)}, (8, 8, 8))["mask"].min == (8, 3)


def test_onnx_input_dims(tmp_path):
    export = tiny.write_export(tmp_path)
    assert onnx_input_dims(export / "analyze.onnx") == {
        "a": ("batch", 4),
        "b": ("batch", 2, 3),
        "mask": ("batch", 2),
    }
    (tmp_path / "bad.onnx").write_bytes(b"junk")
    with pytest.raises(ExportError, match="not a readable ONNX model"):
        onnx_input_dims(tmp_path / "bad.onnx")


# ------------------------------------------------------------------ export directory


def test_onnx_for_names_the_precision_files(tmp_path):
    export = tiny.write_export(tmp_path, ("fp32", "fp16", "int8"))
    assert onnx_for(export, "encode", "fp16").name == "encode.fp16.onnx"
    assert onnx_for(export, "decode", "int8").name == "decode.int8.trt.onnx"


def test_score_stats_sources(tmp_path):
    export = tiny.write_export(tmp_path / "a")
    assert load_score_stats(export) == {**tiny.SCORE_STATS, "combine": "sum"}  # no rule: sum
    (export / "score_stats.json").write_text(json.dumps({**tiny.SCORE_STATS, "combine": "max"}))
    assert load_score_stats(export)["combine"] == "max"
    export = tiny.write_export(tmp_path / "b", stats=False)
    manifest = {"kind": "onnx", "details": {"score_stats": tiny.SCORE_STATS}}
    (export / "analyze.onnx.manifest.json").write_text(json.dumps(manifest))
    assert load_score_stats(export)["std"] == tiny.SCORE_STATS["std"]
    export = tiny.write_export(tmp_path / "c", stats=False)
    model = onnx.load(str(export / "analyze.onnx"))
    onnx.helper.set_model_props(model, {"score_stats": json.dumps(tiny.SCORE_STATS)})
    onnx.save(model, str(export / "analyze.onnx"))
    assert load_score_stats(export)["names"][-1] == "cross_modal"


def test_malformed_score_stats(tmp_path):
    export = tiny.write_export(tmp_path, stats=False)
    (export / "score_stats.json").write_text(json.dumps({"names": ["x"], "mean": []}))
    with pytest.raises(ExportError, match="malformed"):
        load_score_stats(export)
    (export / "score_stats.json").write_text(json.dumps({**tiny.SCORE_STATS, "combine": "mean"}))
    with pytest.raises(ExportError, match="combine rule of sum or max"):
        load_score_stats(export)
    (export / "score_stats.json").write_text("{nope")
    with pytest.raises(ExportError, match="not valid JSON"):
        load_score_stats(export)


def test_modality_names():
    assert modality_names(["cam0", "cam1", "audio", "mask"]) == ["cam0", "cam1", "audio"]
    with pytest.raises(ExportError, match="no 'mask'"):
        modality_names(["cam0"])
