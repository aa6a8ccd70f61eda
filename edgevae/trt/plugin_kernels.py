"""PTX of the plugin kernels (``kernels/plugins/common/edgevaePluginKernels.cu``) for AOT plugins.

AOT Quickly Deployable Plugins bake PTX into the engine ("presently, only PTX is supported",
reference/tensorrt.md §3.1). This module compiles the plugin kernels with the same nvcc toolkit
probing as :mod:`edgevae.kernels.build`, caches the PTX by source digest and architecture, and
checks that the device's CUDA driver can JIT that PTX version (a PTX ISA newer than the driver is
the classic "PTX was compiled with an unsupported toolchain" failure). No TensorRT needed: CI
compiles and checks the PTX.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgevae._util.artifacts import write_bytes_atomic
from edgevae.errors import KernelError
from edgevae.trt.versions import ComputeCapability, CudaVersion, parse_ptx_version, ptx_loadable

#: Entry points (extern "C") and launch constants; keep in step with edgevaePluginKernels.h.
POE_ENTRY = "edgevae_plugin_poe_fusion"
SCORE_ENTRY = "edgevae_plugin_anomaly_score"
POE_THREADS = 128
SCORE_THREADS = 256
MAX_LATENT = 1024
SOURCE = Path("plugins") / "common" / "edgevaePluginKernels.cu"


@dataclass(frozen=True)
class PluginPtx:
    """PTX text of the plugin kernels for one architecture."""

    text: str
    path: Path
    arch: str  # compute_XY
    ptx_version: str | None

    def has_entry(self, name: str) -> bool:
        return re.search(rf"\.entry\s+{re.escape(name)}\s*\(", self.text) is not None


def _sources(src_root: Path) -> list[Path]:
    return [
        src_root / SOURCE,
        src_root / "plugins" / "common" / "edgevaePluginKernels.h",
        *sorted((src_root / "common").glob("*.cuh")),
    ]


def source_digest(src_root: Path) -> str:
    """sha256 over the plugin kernel source and every header it includes."""
    h = hashlib.sha256()
    for f in _sources(src_root):
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def plugin_ptx(
    cc: ComputeCapability,
    *,
    driver_cuda: CudaVersion | None = None,
    nvcc: str | None = None,
    cache_dir: Path | None = None,
) -> PluginPtx:
    """Compile (or reuse cached) PTX of the plugin kernels for ``compute_<cc>``.

    Args:
        cc: the target's compute capability (engines are built on the target).
        driver_cuda: the device driver's CUDA version; when given, PTX newer than it can JIT is
            refused with the fix.
        nvcc: nvcc path (default: found like :func:`edgevae.kernels.build.find_nvcc`).
        cache_dir: where PTX is cached (default ``<cache>/trt-plugins``).

    Raises:
        MissingDependencyError: no nvcc or no kernel sources.
        KernelError: compilation failed, or the PTX is too new for the driver.
    """
    from edgevae.kernels.build import NVCC_FLAGS, cache_root, kernel_source_dir, probe_toolkit

    src_root = kernel_source_dir()
    toolkit = probe_toolkit(nvcc)
    arch = f"compute_{cc.major}{cc.minor}"
    digest = source_digest(src_root)[:16]
    cache = cache_dir or cache_root() / "trt-plugins"
    out = cache / f"cuda-{toolkit.release}" / f"edgevaePluginKernels.{digest}.{arch}.ptx"
    if not out.is_file():
        tmp = out.with_suffix(".tmp.ptx")
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(toolkit.nvcc), *NVCC_FLAGS,
            f"-I{src_root / 'common'}", f"-I{src_root / 'plugins' / 'common'}",
            f"-arch={arch}", "-ptx", str(src_root / SOURCE), "-o", str(tmp),
        ]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if res.returncode != 0:
            first = next(
                (ln for ln in (res.stderr + res.stdout).splitlines() if "error" in ln.lower()),
                (res.stderr or res.stdout).strip()[:200],
            )
            tmp.unlink(missing_ok=True)
            raise KernelError(
                f"compiling the plugin kernels for {arch} with nvcc {toolkit.release} failed: "
                f"{first.strip()}."
            )
        write_bytes_atomic(out, tmp.read_bytes())
        tmp.unlink(missing_ok=True)
    text = out.read_text()
    ptx = PluginPtx(text, out, arch, parse_ptx_version(text))
    for entry in (POE_ENTRY, SCORE_ENTRY):
        if not ptx.has_entry(entry):
            raise KernelError(f"{out.name} lacks the entry point {entry}; delete it and rebuild.")
    too_new = ptx.ptx_version and driver_cuda and not ptx_loadable(ptx.ptx_version, driver_cuda)
    if too_new:
        raise KernelError(
            f"nvcc {toolkit.release} made PTX ISA {ptx.ptx_version}, newer than this CUDA "
            f"{driver_cuda} driver can load; use an nvcc no newer than CUDA {driver_cuda} "
            "(set EDGEVAE_NVCC or CUDA_HOME), or update the driver."
        )
    return ptx
