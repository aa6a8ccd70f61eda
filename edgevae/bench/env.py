"""The environment a benchmark ran in, recorded into every result (benchmarking.md §4).

Everything is read through a ``root`` directory (default ``/``) so tests run on fake ``/proc`` and
``/sys`` trees; commands (``nvpmodel -q``) run only when ``root`` is ``/`` or a runner is injected.
The GPU is queried through torch only when asked (``gpu=True``), never at import.

On a Jetson it adds: module name (``/proc/device-tree/model``), L4T (``/etc/nv_tegra_release``),
JetPack derived from L4T, the power mode (``nvpmodel -q``, else ``/var/lib/nvpmodel/status`` +
``/etc/nvpmodel.conf``), whether ``jetson_clocks`` is on (inferred: CPU and GPU minimum clocks
pinned to their maximum), and the thermal zones.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgevae._util.artifacts import git_revision, tool_versions

CommandRunner = Callable[[list[str]], "str | None"]

LIBRARIES = ("numpy", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt", "rich")

# L4T release -> JetPack. 32.x-36.x from rbonghi/jetson_stats (jtop/core/jetson_variables.py,
# NVIDIA_JETPACK), 38.x from tensorrt.md §5.1; anything else reports only the major series.
L4T_TO_JETPACK = {
    "32.7.1": "4.6.1", "32.7.2": "4.6.2", "32.7.3": "4.6.3", "32.7.4": "4.6.4",
    "32.7.5": "4.6.5", "32.7.6": "4.6.6",
    "35.1.0": "5.0.2", "35.2.1": "5.1", "35.3.1": "5.1.1", "35.4.1": "5.1.2",
    "35.5.0": "5.1.3", "35.6.0": "5.1.4",
    "36.2.0": "6.0 DP", "36.3.0": "6.0", "36.4.0": "6.1", "36.4.3": "6.2",
    "38.2.0": "7.0", "38.4.0": "7.1",
}  # fmt: skip
_JETPACK_SERIES = {"32": "4.x", "34": "5.0 DP", "35": "5.x", "36": "6.x", "38": "7.x", "39": "7.x"}
_L4T_RE = re.compile(r"R(\d+)\s*\(release\),\s*REVISION:\s*(\d+(?:\.\d+)*)")
_MODE_RE = re.compile(r"NV Power Mode:\s*(\S+)")
_CONF_MODE_RE = re.compile(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+?)\s*>")
_CONF_DEFAULT_RE = re.compile(r"<\s*PM_CONFIG\s+DEFAULT=(\d+)\s*>")
_GPU_DEVFREQ_HINTS = ("gpu", "ga10b", "gv11b", "gp10b", "gb10b")


def _read(root: Path, rel: str) -> str | None:
    try:
        return (root / rel.lstrip("/")).read_text(errors="replace").strip("\x00\n\t ")
    except OSError:
        return None


def _default_runner(cmd: list[str]) -> str | None:
    if not shutil.which(cmd[0]):
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def capture_environment(
    root: str | os.PathLike[str] = "/",
    *,
    gpu: bool = False,
    run_command: CommandRunner | None = None,
) -> dict[str, Any]:
    """Describe this machine (or the fake tree under ``root``).

    Args:
        root: filesystem root to read ``/proc``, ``/sys`` and ``/etc`` under.
        gpu: also query the GPU through torch (imports torch).
        run_command: runs a command and returns its stdout or None; default: subprocess when
            ``root`` is ``/``, no commands otherwise.

    Returns:
        A JSON-ready dict: ``host``, ``cpu``, ``memory_mib``, ``gpu``, ``libraries``,
        ``git_revision`` and ``jetson`` (None off Jetson).
    """
    root = Path(root)
    live = root.resolve() == Path("/")
    if run_command is None and live:
        run_command = _default_runner
    env: dict[str, Any] = {
        "host": {
            "system": platform.system(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "executable": sys.executable,
        },
        "cpu": cpu_info(root, live=live),
        "memory_mib": memory_mib(root),
        "gpu": gpu_info() if gpu else None,
        "libraries": tool_versions(*LIBRARIES),
        "git_revision": git_revision(),
        "jetson": jetson_info(root, run_command),
    }
    return env


def cpu_info(root: Path, *, live: bool = False) -> dict[str, Any]:
    """CPU model, logical/physical core counts, usable CPUs and the frequency governor."""
    text = _read(root, "proc/cpuinfo") or ""
    model, logical, cores = None, 0, set()
    phys = core = None
    for line in text.splitlines():
        key, _, value = (s.strip() for s in line.partition(":"))
        if key == "processor":
            logical += 1
        elif key in ("model name", "Model", "Hardware") and model is None and value:
            model = value
        elif key == "physical id":
            phys = value
        elif key == "core id":
            core = value
            cores.add((phys, core))
    info: dict[str, Any] = {
        "model": model or platform.processor() or None,
        "logical_cpus": logical or (os.cpu_count() if live else None),
        "physical_cores": len(cores) or None,
        "usable_cpus": len(os.sched_getaffinity(0))
        if live and hasattr(os, "sched_getaffinity")
        else None,
        "governor": _read(root, "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
    }
    flags = next((ln for ln in text.splitlines() if ln.startswith(("flags", "Features"))), "")
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "sve")
           if f" {f}" in flags]  # fmt: skip
    info["isa"] = isa
    return info


def memory_mib(root: Path) -> int | None:
    """Total RAM from ``/proc/meminfo`` in MiB."""
    text = _read(root, "proc/meminfo") or ""
    m = re.search(r"MemTotal:\s+(\d+)\s*kB", text)
    return int(m.group(1)) // 1024 if m else None


def gpu_info() -> dict[str, Any] | None:
    """GPU name, compute capability, memory and CUDA/cuDNN versions via torch (None: no GPU)."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return {
        "name": props.name,
        "compute_capability": f"{props.major}.{props.minor}",
        "memory_mib": props.total_memory // (1 << 20),
        "count": torch.cuda.device_count(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }


def jetson_info(root: Path, run_command: CommandRunner | None = None) -> dict[str, Any] | None:
    """Jetson model, L4T/JetPack, power mode, jetson_clocks state and temperatures (None when
    ``root`` is not a Jetson, i.e. has no ``/etc/nv_tegra_release``)."""
    release = _read(root, "etc/nv_tegra_release")
    if release is None:
        return None
    l4t = None
    m = _L4T_RE.search(release)
    if m:
        parts = [m.group(1), *m.group(2).split(".")]
        while len(parts) < 3:
            parts.append("0")
        l4t = ".".join(parts[:3])
    model = _read(root, "proc/device-tree/model") or _read(
        root, "sys/firmware/devicetree/base/model"
    )
    return {
        "model": model,
        "l4t": l4t,
        "jetpack": jetpack_for_l4t(l4t),
        "power_mode": power_mode(root, run_command),
        "jetson_clocks": jetson_clocks_state(root),
        "temperatures_c": thermal_zones(root),
    }


def jetpack_for_l4t(l4t: str | None) -> str | None:
    """JetPack version for an L4T release (``"36.4.3"`` -> ``"6.2"``); unknown releases give the
    series (``"6.x"``) or None."""
    if not l4t:
        return None
    if l4t in L4T_TO_JETPACK:
        return L4T_TO_JETPACK[l4t]
    return _JETPACK_SERIES.get(l4t.split(".")[0])


def power_mode(root: Path, run_command: CommandRunner | None = None) -> dict[str, Any] | None:
    """The nvpmodel mode ``{"id", "name", "source"}`` from ``nvpmodel -q`` or the status file."""
    if run_command is not None:
        out = run_command(["nvpmodel", "-q"])
        if out:
            lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
            for i, line in enumerate(lines):
                m = _MODE_RE.search(line)
                if m:
                    mode_id = (
                        int(lines[i + 1]) if i + 1 < len(lines) and lines[i + 1].isdigit() else None
                    )
                    return {"id": mode_id, "name": m.group(1), "source": "nvpmodel -q"}
    conf = _read(root, "etc/nvpmodel.conf") or ""
    names = {int(i): n for i, n in _CONF_MODE_RE.findall(conf)}
    status = _read(root, "var/lib/nvpmodel/status")
    mode_id: int | None = None
    source = None
    if status:
        m = re.search(r"pmode:(\d+)", status)
        if m:
            mode_id, source = int(m.group(1)), "/var/lib/nvpmodel/status"
    if mode_id is None:
        m = _CONF_DEFAULT_RE.search(conf)
        if m:
            mode_id, source = int(m.group(1)), "/etc/nvpmodel.conf default"
    if mode_id is None:
        return None
    return {"id": mode_id, "name": names.get(mode_id), "source": source}


def _freqs(d: Path) -> tuple[int, int, int | None] | None:
    def num(name: str) -> int | None:
        try:
            return int((d / name).read_text().strip())
        except (OSError, ValueError):
            return None

    lo = num("scaling_min_freq") or num("min_freq")
    hi = num("scaling_max_freq") or num("max_freq")
    top = num("cpuinfo_max_freq")
    if lo is None or hi is None:
        return None
    return lo, hi, top


def jetson_clocks_state(root: Path) -> dict[str, Any]:
    """Whether ``jetson_clocks`` appears on: every CPU's and the GPU's minimum clock equals its
    maximum (inferred from sysfs; ``state`` is ``"on"``, ``"off"`` or ``"unknown"``)."""
    cpu_pinned: list[bool] = []
    for d in sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq")):
        f = _freqs(d)
        if f is not None:
            lo, hi, top = f
            cpu_pinned.append(lo == hi and (top is None or hi == top))
    gpu_pinned: list[bool] = []
    for d in sorted((root / "sys/class/devfreq").glob("*")):
        if any(h in d.name.lower() for h in _GPU_DEVFREQ_HINTS):
            f = _freqs(d)
            if f is not None:
                gpu_pinned.append(f[0] == f[1])
    if not cpu_pinned and not gpu_pinned:
        state = "unknown"
    else:
        state = "on" if all(cpu_pinned + gpu_pinned) else "off"
    return {
        "state": state,
        "cpus_pinned": sum(cpu_pinned),
        "cpus_seen": len(cpu_pinned),
        "gpu_pinned": all(gpu_pinned) if gpu_pinned else None,
        "method": "inferred from sysfs min/max clocks",
    }


def thermal_zones(root: Path) -> dict[str, float]:
    """``{zone type: degrees C}`` from ``/sys/devices/virtual/thermal/thermal_zone*``; unreadable
    or invalid zones are left out."""
    out: dict[str, float] = {}
    base = root / "sys/devices/virtual/thermal"
    zones = sorted(base.glob("thermal_zone*"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0))
    for zone in zones:
        kind = _read(zone, "type")
        raw = _read(zone, "temp")
        if not kind or raw is None:
            continue
        try:
            milli = int(raw)
        except ValueError:
            continue
        if milli <= -40000:  # -256 C style "sensor off" readings
            continue
        name = kind if kind not in out else f"{kind}_{zone.name[len('thermal_zone') :]}"
        out[name] = milli / 1000.0
    return out


def summary_line(env: dict[str, Any]) -> str:
    """One human line: CPU, threads, GPU, Jetson mode; for report headers."""
    cpu = env.get("cpu") or {}
    n_cpus = cpu.get("usable_cpus") or cpu.get("logical_cpus")
    parts = [f"{cpu.get('model') or 'unknown CPU'} ({n_cpus} CPUs)"]
    gpu = env.get("gpu")
    if gpu:
        parts.append(f"{gpu['name']} (sm {gpu['compute_capability']})")
    jet = env.get("jetson")
    if jet:
        mode = (jet.get("power_mode") or {}).get("name")
        parts.append(
            f"{jet.get('model')} L4T {jet.get('l4t')} JetPack {jet.get('jetpack')}, "
            f"mode {mode}, jetson_clocks {jet['jetson_clocks']['state']}"
        )
    libs = env.get("libraries") or {}
    parts.append(
        ", ".join(f"{k} {v}" for k, v in libs.items() if k in ("torch", "onnxruntime", "tensorrt"))
    )
    return " | ".join(p for p in parts if p)
