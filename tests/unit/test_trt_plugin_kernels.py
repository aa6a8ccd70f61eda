"""The plugin kernels compile to PTX with the argument order AOT plugins need (nvcc, no GPU)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from edgevae.errors import KernelError
from edgevae.trt import plugin_kernels as pk
from edgevae.trt.versions import ComputeCapability, CudaVersion

HEADER = (
    Path(__file__).resolve().parents[2] / "kernels/plugins/common/edgevaePluginKernels.h"
).read_text()
needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")


def test_python_launch_constants_match_the_header():
    def constant(name: str) -> int:
        return int(re.search(rf"{name}\s*=\s*(\d+);", HEADER).group(1))

    assert constant("kPluginMaxLatent") == pk.MAX_LATENT
    assert constant("kPluginPoeThreads") == pk.POE_THREADS
    assert constant("kPluginScoreThreads") == pk.SCORE_THREADS
    assert pk.POE_THREADS % 32 == 0 and pk.SCORE_THREADS % 32 == 0


def _params(ptx: str, entry: str) -> list[str]:
    block = re.search(rf"\.entry\s+{entry}\s*\((.*?)\)", ptx, re.S).group(1)
    return re.findall(r"\.param\s+\.(\w+)", block)


@needs_nvcc
def test_ptx_has_both_entries_in_aot_argument_order(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEVAE_CACHE_DIR", str(tmp_path))
    ptx = pk.plugin_ptx(ComputeCapability(8, 7))
    assert ptx.arch == "compute_87" and ".target sm_87" in ptx.text
    assert ptx.ptx_version is not None
    # inputs (pointers), then int32 scalars, then outputs (pointers)
    assert _params(ptx.text, pk.POE_ENTRY) == ["u64"] * 3 + ["u32"] * 3 + ["u64"] * 4
    assert _params(ptx.text, pk.SCORE_ENTRY) == ["u64"] * 9 + ["u32"] * 3 + ["u64"] * 2
    # no dynamic shared memory is declared (the AOT launch passes shared_mem = 0)
    assert ".extern .shared" not in ptx.text


@needs_nvcc
def test_ptx_is_cached_by_source_digest(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEVAE_CACHE_DIR", str(tmp_path))
    first = pk.plugin_ptx(ComputeCapability(9, 0))
    mtime = first.path.stat().st_mtime_ns
    second = pk.plugin_ptx(ComputeCapability(9, 0))
    assert second.path == first.path and second.path.stat().st_mtime_ns == mtime
    kernels_src = Path(__file__).resolve().parents[2] / "kernels"
    assert pk.source_digest(kernels_src)[:16] in first.path.name


@needs_nvcc
def test_ptx_too_new_for_the_driver_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEVAE_CACHE_DIR", str(tmp_path))
    ptx = pk.plugin_ptx(ComputeCapability(8, 7))
    old_driver = CudaVersion(11, 4)  # JetPack 5: cannot JIT PTX from CUDA 12/13
    with pytest.raises(KernelError, match=r"newer than this CUDA 11\.4 driver can load"):
        pk.plugin_ptx(ComputeCapability(8, 7), driver_cuda=old_driver)
    assert ptx.has_entry(pk.POE_ENTRY)


def test_missing_nvcc_is_a_missing_dependency(monkeypatch, tmp_path):
    from edgevae.errors import MissingDependencyError
    from edgevae.kernels import build as kernels_build

    monkeypatch.setattr(kernels_build.shutil, "which", lambda _name: None)  # no nvcc anywhere
    with pytest.raises(MissingDependencyError, match="nvcc"):
        pk.plugin_ptx(ComputeCapability(8, 7), cache_dir=tmp_path)
