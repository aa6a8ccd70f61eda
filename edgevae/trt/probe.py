"""Probing this machine: GPU, compute capability, CUDA driver/runtime, nvcc, Jetson, TensorRT.

The only place that asks the hardware. Every probe is guarded (a missing driver, library or tool
gives None, never an exception) and nothing is probed at import time. Jetson files are read under
a ``root`` so tests can point at a fake filesystem.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from edgevae.trt.versions import (
    ComputeCapability,
    CudaVersion,
    jetpack_for_l4t,
    parse_jetpack_package,
    parse_l4t_release,
)


@dataclass(frozen=True)
class GpuInfo:
    """The first CUDA device, as far as it could be probed."""

    name: str | None = None
    compute_capability: str | None = None
    total_mib: int | None = None
    free_mib: int | None = None
    cuda_driver: str | None = None
    cuda_runtime: str | None = None
    source: str | None = None  # "cuda-python", "nvidia-smi", "jetson"
    error: str | None = None  # why no GPU was found, when none was


@dataclass(frozen=True)
class JetsonInfo:
    """Jetson model and software release, or all None on other machines."""

    model: str | None = None
    l4t: str | None = None
    jetpack: str | None = None

    @property
    def is_jetson(self) -> bool:
        return self.l4t is not None


@dataclass(frozen=True)
class TargetInfo:
    """What an engine is tied to: recorded in engine manifests and compared before loading."""

    trt_version: str | None
    compute_capability: str | None
    gpu_name: str | None = None
    cuda_runtime: str | None = None
    cuda_driver: str | None = None
    jetpack: str | None = None
    l4t: str | None = None
    jetson_model: str | None = None
    free_mib: int | None = None
    total_mib: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """``TensorRT 10.3.0.30, compute capability 8.7 (Jetson AGX Orin), JetPack 6.1/6.2``."""
        parts = [f"TensorRT {self.trt_version or '?'}"]
        cc = f"compute capability {self.compute_capability or '?'}"
        name = self.jetson_model or self.gpu_name
        parts.append(f"{cc} ({name})" if name else cc)
        if self.jetpack:
            parts.append(f"JetPack {self.jetpack}")
        return ", ".join(parts)


def probe_jetson(root: str | os.PathLike[str] = "/") -> JetsonInfo:
    """Jetson model (device tree), L4T (``/etc/nv_tegra_release``) and JetPack (dpkg or L4T)."""
    root = Path(root)
    release = _read_text(root / "etc/nv_tegra_release")
    l4t = parse_l4t_release(release) if release else None
    if l4t is None:
        return JetsonInfo()
    model = _read_text(root / "proc/device-tree/model")
    model = model.replace("\x00", "").strip() if model else None
    jetpack = None
    if str(root) == "/" and shutil.which("dpkg-query"):
        out = _run(["dpkg-query", "-W", "nvidia-jetpack"])
        jetpack = parse_jetpack_package(out) if out else None
    return JetsonInfo(model=model or None, l4t=l4t, jetpack=jetpack or jetpack_for_l4t(l4t))


def probe_gpu() -> GpuInfo:
    """The first CUDA device via cuda-python, else nvidia-smi; GpuInfo(error=...) when none."""
    info = _probe_cuda_python()
    if info.compute_capability:
        return info
    smi = _probe_nvidia_smi()
    if smi.compute_capability or smi.name:
        return smi
    return GpuInfo(error=info.error or smi.error or "no CUDA device found")


def probe_nvcc() -> str | None:
    """``nvcc`` CUDA version on PATH (``"13.0"``), or None."""
    nvcc = shutil.which("nvcc")
    if not nvcc:
        return None
    out = _run([nvcc, "--version"])
    try:
        return str(CudaVersion.parse(out)) if out else None
    except ValueError:
        return None


def probe_target(
    trt: ModuleType | None = None, *, gpu: GpuInfo | None = None, root: str = "/"
) -> TargetInfo:
    """Everything an engine is keyed by: TensorRT version, compute capability, CUDA, JetPack/L4T.

    Args:
        trt: the imported ``tensorrt`` module (its ``__version__``), or None when absent.
        gpu: an already probed GPU (else probed now).
        root: filesystem root for Jetson files (tests use a fake one).
    """
    gpu = gpu if gpu is not None else probe_gpu()
    jetson = probe_jetson(root)
    cc = gpu.compute_capability
    if cc is None and jetson.is_jetson:
        cc = _jetson_cc(jetson.model)
    total, free = gpu.total_mib, gpu.free_mib
    if jetson.is_jetson and free is None:
        total, free = _meminfo(Path(root))  # shared memory: the GPU sees system RAM
    return TargetInfo(
        trt_version=getattr(trt, "__version__", None) if trt is not None else None,
        compute_capability=cc,
        gpu_name=gpu.name,
        cuda_runtime=gpu.cuda_runtime,
        cuda_driver=gpu.cuda_driver,
        jetpack=jetson.jetpack,
        l4t=jetson.l4t,
        jetson_model=jetson.model,
        free_mib=free,
        total_mib=total,
    )


def _jetson_cc(model: str | None) -> str | None:
    text = (model or "").lower()
    if "thor" in text:
        return "11.0"
    if "orin" in text:
        return "8.7"
    if "xavier" in text:
        return "7.2"
    return None


def _meminfo(root: Path) -> tuple[int | None, int | None]:
    text = _read_text(root / "proc/meminfo") or ""
    total = re.search(r"MemTotal:\s+(\d+)\s*kB", text)
    avail = re.search(r"MemAvailable:\s+(\d+)\s*kB", text)
    return (
        int(total.group(1)) // 1024 if total else None,
        int(avail.group(1)) // 1024 if avail else None,
    )


def _probe_cuda_python() -> GpuInfo:
    try:
        from cuda.bindings import runtime as cudart  # type: ignore[import-not-found]
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[import-not-found, no-redef]  # cuda-python < 12.8
        except ImportError:
            return GpuInfo(error="cuda-python is not installed")
    try:
        err, count = cudart.cudaGetDeviceCount()
        if int(err) != 0 or count < 1:
            return GpuInfo(error=f"no CUDA device (cudaGetDeviceCount: {_err_name(err)})")
        err, props = cudart.cudaGetDeviceProperties(0)
        if int(err) != 0:
            return GpuInfo(error=f"cudaGetDeviceProperties failed: {_err_name(err)}")
        _, free, total = cudart.cudaMemGetInfo()
        _, runtime = cudart.cudaRuntimeGetVersion()
        _, driver = cudart.cudaDriverGetVersion()
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else props.name
        return GpuInfo(
            name=str(name).strip("\x00 "),
            compute_capability=f"{props.major}.{props.minor}",
            total_mib=int(total) >> 20,
            free_mib=int(free) >> 20,
            cuda_runtime=str(CudaVersion.from_int(int(runtime))),
            cuda_driver=str(CudaVersion.from_int(int(driver))),
            source="cuda-python",
        )
    except Exception as exc:  # cuda-python raises (not returns) when libcuda is absent
        return GpuInfo(error=f"CUDA driver not usable ({type(exc).__name__}: {exc})")


def _probe_nvidia_smi() -> GpuInfo:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return GpuInfo(error="nvidia-smi not found (no NVIDIA driver)")
    fields = "name,compute_cap,memory.total,memory.free,driver_version"
    out = _run([smi, f"--query-gpu={fields}", "--format=csv,noheader,nounits"])
    if not out:
        return GpuInfo(error="nvidia-smi found no GPU")
    cols = [c.strip() for c in out.splitlines()[0].split(",")]
    if len(cols) < 5:
        return GpuInfo(error=f"unexpected nvidia-smi output: {out.strip()[:80]}")
    try:
        cc = str(ComputeCapability.parse(cols[1]))
    except ValueError:
        cc = None
    header = _run([smi]) or ""
    m = re.search(r"CUDA Version:\s*(\d+\.\d+)", header)
    return GpuInfo(
        name=cols[0],
        compute_capability=cc,
        total_mib=_int_or_none(cols[2]),
        free_mib=_int_or_none(cols[3]),
        cuda_driver=m.group(1) if m else None,
        source="nvidia-smi",
    )


def _err_name(err: Any) -> str:
    return getattr(err, "name", str(err))


def _int_or_none(text: str) -> int | None:
    try:
        return int(float(text))
    except ValueError:
        return None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def _run(cmd: list[str], timeout: float = 10.0) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None
