"""Version parsing and gates, Jetson probing on a fake filesystem, and EngineConfig validation."""

from __future__ import annotations

import pytest

from edgevae.errors import ConfigError, EngineBuildError
from edgevae.trt import probe
from edgevae.trt.config import EngineConfig, parse_batch
from edgevae.trt.versions import (
    ComputeCapability,
    CudaVersion,
    check_trt_supported,
    expected_trt_for_jetpack,
    jetpack_for_l4t,
    parse_jetpack_package,
    parse_l4t_release,
    parse_ptx_version,
    parse_trt_version,
    ptx_loadable,
    strongly_typed_is_default,
    supports_aot_plugins,
    trtexec_needs_explicit_inference_flags,
)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("10.3.0.30", (10, 3, 0, 30)),
        ("11.4.0.106", (11, 4, 0, 106)),
        ("10.13", (10, 13, 0, 0)),
        ("10.3.0.30-1+cuda12.5", (10, 3, 0, 30)),
    ],
)
def test_parse_trt_version(text, parts):
    v = parse_trt_version(text)
    assert (v.major, v.minor, v.patch, v.build) == parts


def test_trt_version_ordering_and_str():
    assert parse_trt_version("10.13.3.9") > parse_trt_version("10.9.0.34")
    assert parse_trt_version("10.3") < parse_trt_version("10.3.0.30")
    assert str(parse_trt_version("10.3.0.30")) == "10.3.0.30"
    assert str(parse_trt_version("10.13")) == "10.13.0"
    with pytest.raises(ValueError, match="not a TensorRT version"):
        parse_trt_version("latest")


@pytest.mark.parametrize(
    ("version", "aot", "typed_default", "explicit_trtexec"),
    [
        ("10.3.0.30", False, False, True),  # JetPack 6
        ("10.8.0.43", False, False, True),
        ("10.9.0.34", True, False, True),  # AOT QDPs arrive
        ("10.13.3.9", True, False, True),  # JetPack 7.0
        ("11.4.0.106", True, True, False),
    ],
)
def test_version_gates(version, aot, typed_default, explicit_trtexec):
    v = parse_trt_version(version)
    assert supports_aot_plugins(v) is aot
    assert strongly_typed_is_default(v) is typed_default
    assert trtexec_needs_explicit_inference_flags(v) is explicit_trtexec


def test_trt8_is_not_supported():
    check_trt_supported(parse_trt_version("10.0.1"))
    with pytest.raises(EngineBuildError, match=r"needs TensorRT >= 10\.0"):
        check_trt_supported(parse_trt_version("8.5.2.2"))


@pytest.mark.parametrize(
    ("text", "key", "arch", "name"),
    [
        ("8.7", "sm87", "sm_87", "Jetson Orin"),
        ("sm_72", "sm72", "sm_72", "Jetson Xavier"),
        ("sm110", "sm110", "sm_110", "Jetson Thor"),
        ("compute_90", "sm90", "sm_90", None),
        ("86", "sm86", "sm_86", None),
        ((10, 1), "sm101", "sm_101", "Jetson Thor (CUDA <= 12.9 numbering)"),
    ],
)
def test_compute_capability(text, key, arch, name):
    cc = ComputeCapability.parse(text)
    assert (cc.key, cc.arch, cc.jetson_name()) == (key, arch, name)
    assert ComputeCapability.parse(str(cc)) == cc


def test_compute_capability_rejects_garbage():
    with pytest.raises(ValueError, match="not a compute capability"):
        ComputeCapability.parse("orin")
    assert ComputeCapability(8, 7) < ComputeCapability(11, 0)


def test_cuda_versions_and_ptx_gate():
    assert str(CudaVersion.from_int(12060)) == "12.6"
    assert str(CudaVersion.from_int(13000)) == "13.0"
    assert str(CudaVersion.parse("Cuda compilation tools, release 12.6, V12.6.68")) == "12.6"
    assert str(CudaVersion.parse("| NVIDIA-SMI 580  CUDA Version: 13.0 |")) == "13.0"
    assert parse_ptx_version("//\n.version 8.8\n.target sm_87\n") == "8.8"
    assert parse_ptx_version("no ptx") is None
    # PTX from CUDA 12.9 (ISA 8.8) cannot be JIT-compiled by a JetPack 6 driver (CUDA 12.6)
    assert not ptx_loadable("8.8", CudaVersion(12, 6))
    assert ptx_loadable("8.5", CudaVersion(12, 6))
    assert ptx_loadable("9.0", CudaVersion(13, 0))
    assert ptx_loadable("8.8", CudaVersion(12, 10))  # unknown newer minor: newest known older


def test_l4t_and_jetpack():
    text = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64"
    assert parse_l4t_release(text) == "36.4.3"
    assert parse_l4t_release("# R35 (release), REVISION: 5.0") == "35.5.0"
    assert parse_l4t_release("garbage") is None
    assert jetpack_for_l4t("36.4.3") == "6.1/6.2"
    assert jetpack_for_l4t("38.2.1") == "7.0"
    assert jetpack_for_l4t("99.1") is None and jetpack_for_l4t(None) is None
    assert parse_jetpack_package("nvidia-jetpack\t6.2+b77") == "6.2"
    assert expected_trt_for_jetpack("6.2") == "10.3.0"
    assert expected_trt_for_jetpack("7.0") == "10.13.3"
    assert expected_trt_for_jetpack(None) is None


def test_probe_jetson_on_a_fake_root(tmp_path):
    assert not probe.probe_jetson(tmp_path).is_jetson
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text("# R38 (release), REVISION: 2.1, GCID: x")
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_text("NVIDIA Jetson AGX Thor Developer Kit\x00")
    (tmp_path / "proc/meminfo").write_text("MemTotal: 131072000 kB\nMemAvailable: 65536000 kB\n")
    j = probe.probe_jetson(tmp_path)
    assert (j.model, j.l4t, j.jetpack) == ("NVIDIA Jetson AGX Thor Developer Kit", "38.2.1", "7.0")
    target = probe.probe_target(None, gpu=probe.GpuInfo(error="none"), root=str(tmp_path))
    assert target.compute_capability == "11.0"  # from the model: Thor is sm_110 on CUDA 13
    assert target.free_mib == 64000 and target.total_mib == 128000  # shared memory
    assert target.describe() == (
        "TensorRT ?, compute capability 11.0 (NVIDIA Jetson AGX Thor Developer Kit), JetPack 7.0"
    )


def test_probe_gpu_finds_a_gpu_or_says_why_not():
    gpu = probe.probe_gpu()  # never raises, with or without a driver
    assert gpu.compute_capability is not None or gpu.error


# ------------------------------------------------------------------ EngineConfig


def test_engine_config_defaults_and_round_trip():
    cfg = EngineConfig()
    assert (cfg.precision, cfg.mode, cfg.batch, cfg.workspace_mib, cfg.opt_level, cfg.tf32) == (
        "fp32",
        "native",
        (1, 4, 16),
        1024,
        3,
        False,
    )
    other = EngineConfig(precision="int8", mode="plugin", batch=[2, 2, 2], plugin_library="x.so")
    assert other.batch == (2, 2, 2)
    assert EngineConfig.from_dict(other.to_dict()) == other


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "fp8"}, "unknown precision 'fp8'"),
        ({"mode": "spilt"}, "Did you mean 'split'"),
        ({"batch": (0, 1, 2)}, "MIN must be >= 1"),
        ({"batch": (1, 2)}, "three integers"),
        ({"workspace_mib": 8}, "out of range"),
        ({"opt_level": -1}, "use 0..5"),
        ({"plugin_library": "x.so"}, "only applies to --mode plugin"),
    ],
)
def test_engine_config_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        EngineConfig(**kwargs)


def test_engine_config_from_dict_refuses_unknown_and_newer():
    with pytest.raises(ConfigError, match="unknown engine config keys"):
        EngineConfig.from_dict({"precision": "fp16", "fp16": True})
    with pytest.raises(ConfigError, match="newer than this edgevae"):
        EngineConfig.from_dict({"version": 99})


@pytest.mark.parametrize(
    ("text", "want"), [("1,4,16", (1, 4, 16)), ("8", (8, 8, 8)), (" 1, 1 ,2", (1, 1, 2))]
)
def test_parse_batch(text, want):
    assert parse_batch(text) == want


@pytest.mark.parametrize(
    ("text", "message"),
    [("1,2", "has 2 values"), ("a,b,c", "not MIN,OPT,MAX"), ("4,2,8", "not ordered")],
)
def test_parse_batch_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_batch(text)
