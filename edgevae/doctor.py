"""``edgevae doctor``: what this machine has for training, export and TensorRT deployment.

:func:`diagnose` checks Python, PyTorch (+ CUDA), ONNX / ONNX Runtime and its execution
providers, TensorRT, cuda-python / pycuda, the CUDA driver and runtime, nvcc, the GPU and its
compute capability, Jetson model / JetPack / L4T, trtexec, and whether the edgevae CUDA kernels
are built for this GPU. Every check says what is missing and how to get it: on Jetson TensorRT
comes from JetPack's Debian packages, never from a pip install at run time.

``deployable`` (exit code 0 of the CLI) means an engine can be built and run here: TensorRT
>= 10.0 imports, a CUDA GPU is visible and cuda-python (or pycuda) can drive it. Everything else
is informative. Nothing here raises for a missing component: that is the answer.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import importlib.util
import platform
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from edgevae._version import __version__
from edgevae.trt.probe import GpuInfo, JetsonInfo, probe_gpu, probe_jetson, probe_nvcc
from edgevae.trt.versions import (
    ComputeCapability,
    check_trt_supported,
    expected_trt_for_jetpack,
    parse_trt_version,
    supports_aot_plugins,
)

OK, WARN, MISSING, INFO = "ok", "warn", "missing", "info"

_JETSON_TRT = (
    "install JetPack's TensorRT: `sudo apt install nvidia-tensorrt` (or at least "
    "`python3-libnvinfer libnvinfer-dev`), then use the system python3 or a venv created with "
    "--system-site-packages"
)
_DESKTOP_TRT = (
    "on a Jetson: `sudo apt install nvidia-tensorrt` (JetPack's python3-libnvinfer); on an "
    "NVIDIA GPU PC: TensorRT for your CUDA from NVIDIA (SDK deb/tar, or `pip install "
    "tensorrt-cu12`/`tensorrt-cu13` with access to NVIDIA's package index)"
)


@dataclass(frozen=True)
class Check:
    """One line of the report: a component, its status, what was found and how to fix it."""

    name: str
    status: str  # ok | warn | missing | info
    detail: str
    fix: str | None = None


@dataclass
class DoctorReport:
    """All checks plus the verdict on TensorRT deployment."""

    checks: list[Check] = field(default_factory=list)
    deployable: bool = False
    blockers: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "edgevae": __version__,
            "deployable": self.deployable,
            "blockers": self.blockers,
            "facts": self.facts,
            "checks": [asdict(c) for c in self.checks],
        }


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _check_python() -> Check:
    v = platform.python_version()
    ok = sys.version_info >= (3, 10)
    return Check("python", OK if ok else MISSING, f"{v} ({sys.executable})",
                 None if ok else "edgevae needs Python >= 3.10")  # fmt: skip


def _check_torch() -> tuple[Check, bool]:
    if importlib.util.find_spec("torch") is None:
        return Check("torch", MISSING, "not installed", "`scripts/install.sh` installs it"), False
    import torch

    cuda_build = torch.version.cuda
    available = bool(torch.cuda.is_available())
    if available:
        name = torch.cuda.get_device_name(0)
        return Check("torch", OK, f"{torch.__version__}, CUDA {cuda_build}, GPU {name}"), True
    detail = f"{torch.__version__}, " + (
        f"CUDA {cuda_build} build but no GPU visible" if cuda_build else "CPU-only build"
    )
    fix = "on Jetson use NVIDIA's Jetson PyTorch wheels for CUDA training/inference"
    return Check("torch", INFO, detail, fix if not cuda_build else None), False


def _check_onnx() -> list[Check]:
    checks = []
    v = _version("onnx")
    checks.append(Check("onnx", OK if v else MISSING, v or "not installed",
                        None if v else "`pip install onnx`"))  # fmt: skip
    if importlib.util.find_spec("onnxruntime") is None:
        checks.append(Check("onnxruntime", MISSING, "not installed", "`pip install onnxruntime`"))
        return checks
    import onnxruntime as ort

    providers = ort.get_available_providers()
    gpu = [p for p in providers if p in ("CUDAExecutionProvider", "TensorrtExecutionProvider")]
    checks.append(
        Check(
            "onnxruntime",
            OK,
            f"{ort.__version__}; providers: {', '.join(providers)}",
            None if gpu else "GPU providers need onnxruntime-gpu (on Jetson: the Jetson Zoo wheel)",
        )
    )
    return checks


def _check_tensorrt(jetson: JetsonInfo) -> tuple[Check, Any]:
    fix = _JETSON_TRT if jetson.is_jetson else _DESKTOP_TRT
    if importlib.util.find_spec("tensorrt") is None:
        return Check("tensorrt", MISSING, "not installed (No module named 'tensorrt')", fix), None
    try:
        trt = importlib.import_module("tensorrt")
    except Exception as exc:  # ImportError: libnvinfer.so.N missing, ABI mismatch, ...
        msg = f"installed but does not import: {type(exc).__name__}: {exc}"
        return Check("tensorrt", MISSING, msg, fix), None
    version = parse_trt_version(trt.__version__)
    try:
        check_trt_supported(version)
    except Exception as exc:  # EngineBuildError with the upgrade hint
        return Check("tensorrt", MISSING, f"{version}: {exc}", fix), None
    plugin = (
        "plugin mode with AOT plugins available"
        if supports_aot_plugins(version)
        else "plugin mode needs the C++ library (kernels/plugins); split mode works"
    )
    expected = expected_trt_for_jetpack(jetson.jetpack)
    detail = f"{version} ({trt.__file__}); {plugin}"
    status = OK
    if expected and not str(version).startswith(expected.rsplit(".", 1)[0]):
        status = WARN
        detail += f"; JetPack {jetson.jetpack} ships {expected}"
    return Check("tensorrt", status, detail), trt


def _check_cuda_python() -> tuple[Check, bool]:
    v = _version("cuda-python") or _version("cuda-bindings")
    if v:
        return Check("cuda-python", OK, v), True
    pycuda = _version("pycuda")
    if pycuda:
        return Check("cuda-python", WARN, f"not installed; pycuda {pycuda} will be used"), True
    fix = "`pip install 'edgevae[cuda]'` (cuda-python matching the device's CUDA major version)"
    return Check("cuda-python", MISSING, "not installed", fix), False


def _check_gpu(gpu: GpuInfo, jetson: JetsonInfo) -> Check:
    if gpu.compute_capability is None and not jetson.is_jetson:
        return Check(
            "gpu",
            MISSING,
            gpu.error or "no CUDA device",
            "TensorRT engines are built and run on the target device (a Jetson or an NVIDIA "
            "GPU machine); this machine can still export, quantize and test",
        )
    cc = gpu.compute_capability or "?"
    name = gpu.name or jetson.model or "?"
    mem = f", {gpu.free_mib} / {gpu.total_mib} MiB free" if gpu.total_mib else ""
    family = ComputeCapability.parse(cc).jetson_name() if cc != "?" else None
    extra = f" ({family})" if family else ""
    return Check("gpu", OK, f"{name}, compute capability {cc}{extra}{mem} [{gpu.source}]")


def _check_driver(gpu: GpuInfo) -> Check:
    if gpu.cuda_driver is None and gpu.cuda_runtime is None:
        return Check("cuda driver/runtime", MISSING, "no NVIDIA driver found",
                     "install the NVIDIA driver (part of JetPack on Jetson)")  # fmt: skip
    return Check(
        "cuda driver/runtime",
        OK,
        f"driver supports CUDA {gpu.cuda_driver or '?'}, runtime {gpu.cuda_runtime or '?'}",
    )


def _check_nvcc() -> Check:
    v = probe_nvcc()
    if v:
        return Check("nvcc", OK, f"CUDA {v}")
    return Check("nvcc", INFO, "not on PATH",
                 "needed to compile kernels / plugin PTX: the CUDA toolkit (JetPack: "
                 "/usr/local/cuda/bin) or `pip install nvidia-cuda-nvcc`")  # fmt: skip


def _check_jetson(jetson: JetsonInfo) -> Check:
    if not jetson.is_jetson:
        return Check("jetson", INFO, "not a Jetson (no /etc/nv_tegra_release)")
    return Check("jetson", OK, f"{jetson.model or 'Jetson'}, L4T {jetson.l4t}, JetPack "
                 f"{jetson.jetpack or '?'}")  # fmt: skip


def _check_trtexec() -> Check:
    from edgevae.trt.trtexec import find_trtexec

    try:
        return Check("trtexec", OK, str(find_trtexec()))
    except Exception as exc:  # MissingDependencyError carries the install hint
        return Check("trtexec", INFO, "not found", str(exc).split("; ", 1)[-1])


def _check_kernels(gpu: GpuInfo) -> Check:
    try:
        from edgevae.kernels.build import KERNELS, cache_root, read_manifest
        from edgevae.kernels.launch import select_image
    except ImportError as exc:  # kernels package not present in this install
        return Check("kernels", INFO, f"edgevae.kernels unavailable ({exc})")
    if gpu.compute_capability:
        arch = ComputeCapability.parse(gpu.compute_capability).arch
        found = {k: select_image(k, arch) for k in KERNELS}
        missing = [k for k, img in found.items() if img is None]
        if not missing:
            kinds = ", ".join(f"{k}: {img.kind} {img.arch}" for k, img in found.items() if img)
            return Check("kernels", OK, f"built for {arch} ({kinds})")
        return Check("kernels", WARN, f"not built for {arch}: {', '.join(missing)}",
                     f"`edgevae kernels build --arch {arch}`")  # fmt: skip
    dirs = [p.parent for p in (cache_root() / "kernels").glob("*/manifest.json")]
    archs = sorted({t for d in dirs for t in (read_manifest(d) or {}).get("targets", [])})
    detail = f"built for {', '.join(archs)}" if archs else "not built"
    return Check("kernels", INFO, f"{detail}; no GPU here to match",
                 None if archs else "`edgevae kernels build` (needs nvcc)")  # fmt: skip


def diagnose(root: str = "/") -> DoctorReport:
    """Run every check; never raises for a missing component.

    Args:
        root: filesystem root for the Jetson files (tests use a fake one).
    """
    report = DoctorReport()
    jetson = probe_jetson(root)
    gpu = probe_gpu()
    report.checks.append(Check("edgevae", OK, __version__))
    report.checks.append(_check_python())
    torch_check, _ = _check_torch()
    report.checks.append(torch_check)
    report.checks.extend(_check_onnx())
    trt_check, trt = _check_tensorrt(jetson)
    report.checks.append(trt_check)
    cuda_check, cuda_ok = _check_cuda_python()
    report.checks.append(cuda_check)
    report.checks.append(_check_driver(gpu))
    report.checks.append(_check_gpu(gpu, jetson))
    report.checks.append(_check_jetson(jetson))
    report.checks.append(_check_nvcc())
    report.checks.append(_check_trtexec())
    report.checks.append(_check_kernels(gpu))

    has_gpu = gpu.compute_capability is not None or jetson.is_jetson
    if trt is None:
        report.blockers.append("TensorRT is missing: " + (trt_check.fix or trt_check.detail))
    if not has_gpu:
        report.blockers.append("no CUDA GPU is visible")
    if not cuda_ok:
        report.blockers.append("cuda-python (or pycuda) is missing")
    report.deployable = not report.blockers
    report.facts = {
        "trt_version": getattr(trt, "__version__", None),
        "compute_capability": gpu.compute_capability,
        "gpu": gpu.name,
        "jetson": asdict(jetson) | {"is_jetson": jetson.is_jetson},
    }
    return report
