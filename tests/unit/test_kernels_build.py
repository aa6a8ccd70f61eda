"""nvcc builds of every kernel for every target the toolkit supports (CI gate: a compile failure
fails this test). Skipped, with the reason, where nvcc is absent."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgevae.errors import ConfigError, KernelError, MissingDependencyError
from edgevae.kernels import build as kb
from tests.cli_util import invoke


def _toolkit_or_skip() -> kb.Toolkit:
    try:
        return kb.probe_toolkit()
    except MissingDependencyError as exc:
        pytest.skip(f"nvcc is not installed here, the kernels cannot be compiled: {exc}")


@pytest.fixture(scope="module")
def toolkit() -> kb.Toolkit:
    return _toolkit_or_skip()


@pytest.fixture(scope="module")
def built(toolkit, tmp_path_factory) -> tuple[Path, dict]:
    """Every kernel for every target nvcc lists (a superset of the supported default targets)."""
    out = tmp_path_factory.mktemp("kernels-build")
    path = kb.build_kernels(kb.BuildConfig(archs=("all",), out=out, jobs=2))
    return out, json.loads(path.read_text())


def test_every_kernel_builds_for_every_supported_target(toolkit, built):
    out, manifest = built
    expected = sorted((c for c in toolkit.gpu_codes if toolkit.supports(c)), key=kb.arch_number)
    assert expected, "nvcc lists no target"
    assert manifest["targets"] == expected
    defaults, _ = kb.plan_targets(toolkit)
    assert set(defaults) <= set(expected)
    assert set(manifest["kernels"]) == set(kb.KERNELS)
    for name, entry in manifest["kernels"].items():
        assert entry["entry"] == kb.KERNELS[name]
        assert entry["source_sha256"] == kb.source_digest(name)
        kinds = {(a["arch"], a["kind"]) for a in entry["artifacts"]}
        assert kinds == {(arch, kind) for arch in expected for kind in ("ptx", "cubin")}
        for a in entry["artifacts"]:
            data = (out / a["file"]).read_bytes()
            assert kb.sha256_file(out / a["file"]) == a["sha256"]
            assert len(data) == a["bytes"]
            if a["kind"] == "ptx":
                text = data.decode()
                assert f".target {a['arch']}" in text
                assert f".entry {kb.KERNELS[name]}(" in text
                assert a["ptx_version"]
            else:
                assert data[:4] == b"\x7fELF"


def test_manifest_records_toolkit_and_flags(toolkit, built):
    _, manifest = built
    assert manifest["format"] == kb.MANIFEST_FORMAT
    assert manifest["toolkit"]["version"] == toolkit.version
    assert manifest["flags"] == list(kb.NVCC_FLAGS)
    assert kb.read_manifest(built[0]) == manifest


def test_rebuild_one_target_keeps_the_others(built):
    out, before = built
    kb.build_kernels(kb.BuildConfig(archs=("sm_90",), kernels=("poe_fusion",), out=out))
    after = kb.read_manifest(out)
    assert after["targets"] == before["targets"]
    for name in kb.KERNELS:
        assert len(after["kernels"][name]["artifacts"]) == len(before["kernels"][name]["artifacts"])


def _broken_sources(tmp_path: Path, monkeypatch, kernel: str, code: str) -> None:
    src = tmp_path / "kernels"
    shutil.copytree(kb.kernel_source_dir(), src)
    path = src / kernel / f"{kernel}.cu"
    path.write_text(path.read_text() + code)
    monkeypatch.setenv("EDGEVAE_KERNELS_SRC", str(src))


def test_compile_error_fails_with_log(toolkit, tmp_path, monkeypatch):
    _broken_sources(tmp_path, monkeypatch, "poe_fusion", "\nthis does not compile;\n")
    config = kb.BuildConfig(archs=("sm_87",), kernels=("poe_fusion",), out=tmp_path / "out")
    with pytest.raises(KernelError, match=r"compiling poe_fusion for sm_87 failed.*full log"):
        kb.build_kernels(config)
    assert (tmp_path / "out" / "logs" / "poe_fusion.sm_87.log").is_file()


def test_warnings_are_errors(toolkit, tmp_path, monkeypatch):
    code = "\n__global__ void edgevae_unused_warning(float* x) { int unused = 3; x[0] = 1.0f; }\n"
    _broken_sources(tmp_path, monkeypatch, "preprocess", code)
    config = kb.BuildConfig(archs=("sm_87",), kernels=("preprocess",), out=tmp_path / "out")
    with pytest.raises(KernelError, match="preprocess for sm_87 failed"):
        kb.build_kernels(config)


def _fake_toolkit(release: str, *nums: int) -> kb.Toolkit:
    codes = tuple(f"sm_{n}" for n in nums)
    archs = tuple(f"compute_{n}" for n in nums)
    return kb.Toolkit(Path("nvcc"), f"{release}.0", release, codes, archs)


def test_unsupported_requested_target_is_an_error():
    fake = _fake_toolkit("13.0", 75, 87)
    with pytest.raises(ConfigError, match=r"cannot compile for sm_72.*sm_75, sm_87"):
        kb.plan_targets(fake, ["sm_72"])


def test_default_targets_skip_what_the_toolkit_lacks():
    fake = _fake_toolkit("13.0", 75, 80, 87, 90, 110)
    targets, skipped = kb.plan_targets(fake)
    assert targets == ["sm_80", "sm_87", "sm_90", "sm_110"]
    assert list(skipped) == ["sm_72"]
    assert "older CUDA toolkit" in skipped["sm_72"]
    old = kb.Toolkit(
        Path("nvcc"), "12.6.68", "12.6", ("sm_72", "sm_87"), ("compute_72", "compute_87")
    )
    targets, skipped = kb.plan_targets(old)
    assert targets == ["sm_72", "sm_87"]
    assert set(skipped) == {"sm_80", "sm_90", "sm_110"}
    assert kb.plan_targets(old, ["all"])[0] == ["sm_72", "sm_87"]
    unlisted = kb.Toolkit(Path("nvcc"), "11.4.0", "11.4", (), ())
    assert kb.plan_targets(unlisted)[0] == list(kb.DEFAULT_TARGETS)  # attempted, nvcc decides
    with pytest.raises(ConfigError, match="cannot list"):
        kb.plan_targets(unlisted, ["all"])


@pytest.mark.parametrize(
    ("given", "want"),
    [("sm_87", "sm_87"), ("compute_90", "sm_90"), ("87", "sm_87"), (110, "sm_110"),
     ("8.7", "sm_87"), ("ALL", "all")],
)  # fmt: skip
def test_normalize_arch(given, want):
    assert kb.normalize_arch(given) == want


@pytest.mark.parametrize("bad", ["sm87x", "foo", "", "sm_9"])
def test_normalize_arch_rejects_garbage(bad):
    with pytest.raises(ConfigError, match="invalid GPU architecture"):
        kb.normalize_arch(bad)


def test_build_config_validation_and_round_trip(tmp_path):
    cfg = kb.BuildConfig(archs=("87", "sm_90"), kernels=("preprocess",), out=tmp_path, jobs=3)
    assert cfg.archs == ("sm_87", "sm_90")
    assert kb.BuildConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="Did you mean 'poe_fusion'"):
        kb.BuildConfig(kernels=("poe",))
    with pytest.raises(ConfigError, match="jobs"):
        kb.BuildConfig(jobs=0)
    with pytest.raises(ConfigError, match="unknown kernel build options"):
        kb.BuildConfig.from_dict({"arch": ["sm_87"]})


def test_missing_nvcc_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(kb.shutil, "which", lambda name: None)
    monkeypatch.delenv("CUDA_HOME", raising=False)
    with pytest.raises(MissingDependencyError, match=r"nvcc .*not found"):
        kb.find_nvcc()
    with pytest.raises(MissingDependencyError, match="nvcc not found at /x/nvcc"):
        kb.find_nvcc("/x/nvcc")


def test_cli_build_and_info(toolkit, tmp_path, capsys):
    r = invoke(capsys, "kernels", "build", "--arch", "sm_87", "--kernel", "anomaly_score",
               "--out", tmp_path, "--json")  # fmt: skip
    assert r.code == 0, r.err
    manifest = json.loads(r.out)
    assert manifest["targets"] == ["sm_87"]
    r = invoke(capsys, "kernels", "info", "--build-dir", tmp_path, "--json")
    assert r.code == 0, r.err
    info = json.loads(r.out)
    assert info["build"]["targets"] == ["sm_87"]
    assert info["toolkit"]["version"] == toolkit.version
    r = invoke(capsys, "kernels", "info")
    assert r.code == 0
    assert "nvcc" in r.out


def test_cli_bad_arch_and_kernel_exit_2(capsys, tmp_path):
    r = invoke(capsys, "kernels", "build", "--arch", "sm87x", "--out", tmp_path)
    assert r.code == 2
    assert "invalid GPU architecture 'sm87x'" in r.err
    r = invoke(capsys, "kernels", "build", "--kernel", "poe", "--out", tmp_path)
    assert r.code == 2
    assert "Did you mean 'poe_fusion'" in r.err


def test_cli_unsupported_arch_exit_2(toolkit, capsys, tmp_path):
    if toolkit.supports("sm_72"):
        pytest.skip("this nvcc still supports sm_72")
    r = invoke(capsys, "kernels", "build", "--arch", "sm_72", "--out", tmp_path)
    assert r.code == 2
    assert "cannot compile for sm_72" in r.err


def test_cli_without_nvcc(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(kb.shutil, "which", lambda name: None)
    monkeypatch.delenv("CUDA_HOME", raising=False)
    r = invoke(capsys, "kernels", "build", "--out", tmp_path)
    assert r.code == 2
    assert "nvcc (the CUDA compiler) was not found" in r.err
    r = invoke(capsys, "kernels", "info", "--json")
    assert r.code == 0
    assert "not found" in json.loads(r.out)["toolkit_error"]
