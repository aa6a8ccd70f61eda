"""Compile the CUDA kernels in ``kernels/`` to PTX and cubin with nvcc, with a manifest.

For each kernel and each target ``sm_XY``: ``nvcc -ptx -arch=compute_XY`` gives
``<kernel>/<kernel>.compute_XY.ptx`` (JIT-compiled by the driver, forward compatible) and
``ptxas -arch=sm_XY`` on that PTX gives ``<kernel>/<kernel>.sm_XY.cubin`` (loaded as is on that
exact architecture). ``manifest.json`` in the build directory lists every artifact with its
architecture, file, sha256, the PTX ISA version, the sources' digest and the nvcc version.

Default targets are the Jetson and desktop GPUs edgevae supports (``DEFAULT_TARGETS``); those the
toolkit does not list in ``nvcc --list-gpu-code`` are skipped with the reason (CUDA 13 dropped
sm_72 Xavier, for example). An explicitly requested unsupported target is an error.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgevae._util.artifacts import sha256_file, write_bytes_atomic, write_json_atomic
from edgevae._util.choices import check_choice
from edgevae._version import __version__
from edgevae.errors import ConfigError, KernelError, MissingDependencyError

# kernel name -> extern "C" entry point in kernels/<name>/<name>.cu
KERNELS: dict[str, str] = {
    "preprocess": "edgevae_preprocess_u8",
    "poe_fusion": "edgevae_poe_fusion",
    "anomaly_score": "edgevae_anomaly_score",
}
# Xavier, A100, Orin, H100, Thor (sm_110 needs CUDA >= 13.0; it was sm_101 before).
DEFAULT_TARGETS: tuple[str, ...] = ("sm_72", "sm_80", "sm_87", "sm_90", "sm_110")
NVCC_FLAGS: tuple[str, ...] = ("-std=c++17", "-O3", "-Werror", "all-warnings")
ALL_TARGETS = "all"  # every sm_XY the toolkit lists
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
_ARCH_RE = re.compile(r"^(?:sm_|compute_)?(\d{2,3})$")


def kernel_source_dir() -> Path:
    """The ``kernels/`` source folder: ``$EDGEVAE_KERNELS_SRC`` or the repository's ``kernels/``.

    Raises:
        MissingDependencyError: when the sources are not there (e.g. a wheel install).
    """
    env = os.environ.get("EDGEVAE_KERNELS_SRC")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "kernels"
    if not (path / "common" / "edgevae_math.cuh").is_file():
        raise MissingDependencyError(
            f"the CUDA kernel sources are not at {path}; set EDGEVAE_KERNELS_SRC to the edgevae "
            "repository's kernels/ folder (or use a source checkout)."
        )
    return path


def cache_root() -> Path:
    """Root of edgevae's caches: ``$EDGEVAE_CACHE_DIR``, else ``$XDG_CACHE_HOME/edgevae``."""
    env = os.environ.get("EDGEVAE_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "edgevae"


def normalize_arch(arch: str | int) -> str:
    """``"sm_87"``, ``"compute_87"``, ``"87"``, ``87`` or ``"8.7"`` -> ``"sm_87"``; ``"all"`` stays.

    Raises:
        ConfigError: when ``arch`` is not a compute capability.
    """
    text = str(arch).strip().lower().replace(".", "")
    if text == ALL_TARGETS:
        return ALL_TARGETS
    match = _ARCH_RE.match(text)
    if not match:
        raise ConfigError(
            f"invalid GPU architecture {arch!r}: use sm_XY (e.g. sm_87 for Orin, sm_110 for Thor)."
        )
    return f"sm_{match.group(1)}"


def arch_number(arch: str) -> int:
    """``"sm_87"`` -> 87 (``"sm_110"`` -> 110)."""
    return int(str(arch).split("_")[-1])


@dataclass(frozen=True)
class Toolkit:
    """An nvcc installation and the targets it can compile for."""

    nvcc: Path
    version: str  # e.g. "13.0.88"
    release: str  # e.g. "13.0"
    gpu_codes: tuple[str, ...]  # sm_XY it can emit cubin for (empty when it cannot list them)
    gpu_archs: tuple[str, ...]  # compute_XY it can emit PTX for

    @property
    def ptxas(self) -> Path:
        """ptxas of the same toolkit (next to nvcc or to the file nvcc links to)."""
        name = "ptxas" + self.nvcc.suffix
        for cand in (self.nvcc.with_name(name), self.nvcc.resolve().with_name(name)):
            if cand.is_file():
                return cand
        return Path(shutil.which("ptxas") or name)

    def supports(self, arch: str) -> bool:
        """Whether this toolkit lists ``arch`` (``sm_XY``) for both PTX and cubin."""
        arch = normalize_arch(arch)
        return arch in self.gpu_codes and f"compute_{arch[3:]}" in self.gpu_archs

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["nvcc"] = str(self.nvcc)
        d["gpu_codes"], d["gpu_archs"] = list(self.gpu_codes), list(self.gpu_archs)
        return d


def find_nvcc(nvcc: str | os.PathLike[str] | None = None) -> Path:
    """Locate nvcc: the argument, ``$EDGEVAE_NVCC``, ``$CUDA_HOME/bin/nvcc``, then ``PATH``.

    Raises:
        MissingDependencyError: when none is found.
    """
    candidates: list[str] = []
    if nvcc:
        candidates.append(str(nvcc))
    for env in ("EDGEVAE_NVCC",):
        if os.environ.get(env):
            candidates.append(os.environ[env])
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(env):
            candidates.append(str(Path(os.environ[env]) / "bin" / "nvcc"))
    candidates.append("nvcc")
    candidates.append("/usr/local/cuda/bin/nvcc")
    for cand in candidates:
        found = shutil.which(cand)
        if found:
            return Path(found)
    if nvcc:
        raise MissingDependencyError(f"nvcc not found at {nvcc}; give the path of a CUDA nvcc.")
    raise MissingDependencyError(
        "nvcc (the CUDA compiler) was not found: install the CUDA toolkit (on Jetson it comes "
        "with JetPack: /usr/local/cuda/bin), or pass --nvcc / set CUDA_HOME."
    )


def _run(cmd: Sequence[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)


def probe_toolkit(nvcc: str | os.PathLike[str] | None = None) -> Toolkit:
    """Run ``nvcc --version``, ``--list-gpu-arch`` and ``--list-gpu-code``.

    Raises:
        MissingDependencyError: without nvcc; KernelError when nvcc does not run.
    """
    path = find_nvcc(nvcc)
    res = _run([str(path), "--version"], timeout=60)
    match = re.search(r"release (\d+)\.(\d+), V([\d.]+)", res.stdout)
    if res.returncode != 0 or not match:
        raise KernelError(f"`{path} --version` failed: {(res.stderr or res.stdout).strip()[:200]}")

    def listing(flag: str) -> tuple[str, ...]:  # plain sm_XY / compute_XY (no sm_90a, lto_)
        out = _run([str(path), flag], timeout=60)
        names = out.stdout.split() if out.returncode == 0 else []
        return tuple(n for n in names if re.fullmatch(r"(sm|compute)_\d+", n))

    return Toolkit(
        nvcc=path,
        version=match.group(3),
        release=f"{match.group(1)}.{match.group(2)}",
        gpu_codes=listing("--list-gpu-code"),
        gpu_archs=listing("--list-gpu-arch"),
    )


def plan_targets(toolkit: Toolkit, requested: Sequence[str] = ()) -> tuple[list[str], dict]:
    """Targets to build and ``{arch: reason}`` for skipped defaults.

    Raises:
        ConfigError: when an explicitly requested target is not supported by the toolkit.
    """
    listed = bool(toolkit.gpu_codes and toolkit.gpu_archs)
    if requested:
        archs = list(dict.fromkeys(normalize_arch(a) for a in requested))
        if ALL_TARGETS in archs:
            if not listed:
                raise ConfigError(
                    f"nvcc {toolkit.release} cannot list its targets; name them with --arch."
                )
            every = [c for c in toolkit.gpu_codes if toolkit.supports(c)]
            archs = [a for a in archs if a != ALL_TARGETS] + every
            archs = sorted(dict.fromkeys(archs), key=arch_number)
        bad = [a for a in archs if listed and not toolkit.supports(a)]
        if bad:
            raise ConfigError(
                f"nvcc {toolkit.release} cannot compile for {', '.join(bad)}; it supports "
                f"{', '.join(toolkit.gpu_codes)}. Use a CUDA "
                "toolkit that has that target (sm_72 Xavier needs CUDA <= 12.x)."
            )
        return archs, {}
    targets, skipped = [], {}
    for arch in DEFAULT_TARGETS:
        if not listed or toolkit.supports(arch):
            targets.append(arch)
        else:
            skipped[arch] = (
                f"nvcc {toolkit.release} does not list {arch} in --list-gpu-code (its oldest "
                f"target is {min(toolkit.gpu_codes, key=arch_number)}); build it with an older "
                "CUDA toolkit (sm_72 Xavier: JetPack 5's CUDA 11.4, or CUDA 12.x)"
            )
    return targets, skipped


def source_digest(kernel: str, src_dir: Path | None = None) -> str:
    """sha256 over a kernel's .cu and the shared headers (what its binaries were built from)."""
    src_dir = src_dir or kernel_source_dir()
    h = hashlib.sha256()
    files = [src_dir / kernel / f"{kernel}.cu", *sorted((src_dir / "common").glob("*.cuh"))]
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


@dataclass(frozen=True)
class BuildConfig:
    """What to build.

    Args:
        archs: targets (``sm_XY``, or ``"all"`` for every target the toolkit lists);
            empty = every default target (``DEFAULT_TARGETS``) the toolkit supports.
        kernels: kernel names; empty = all of ``KERNELS``.
        out: build directory; None = ``<cache>/kernels/cuda-<release>/``.
        nvcc: nvcc path; None = search (see :func:`find_nvcc`).
        jobs: parallel compile jobs.
    """

    archs: tuple[str, ...] = ()
    kernels: tuple[str, ...] = ()
    out: Path | None = None
    nvcc: str | None = None
    jobs: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "archs", tuple(normalize_arch(a) for a in self.archs))
        for k in self.kernels:
            check_choice(k, list(KERNELS), "kernel")
        object.__setattr__(self, "kernels", tuple(self.kernels))
        if self.out is not None:
            object.__setattr__(self, "out", Path(self.out))
        if not isinstance(self.jobs, int) or self.jobs < 1:
            raise ConfigError(f"jobs must be a positive integer, got {self.jobs!r}.")

    def to_dict(self) -> dict[str, Any]:
        return {
            "archs": list(self.archs),
            "kernels": list(self.kernels),
            "out": None if self.out is None else str(self.out),
            "nvcc": self.nvcc,
            "jobs": self.jobs,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BuildConfig:
        unknown = set(d) - {"archs", "kernels", "out", "nvcc", "jobs"}
        if unknown:
            raise ConfigError(f"unknown kernel build options {sorted(unknown)}.")
        return cls(
            archs=tuple(d.get("archs", ())),
            kernels=tuple(d.get("kernels", ())),
            out=d.get("out"),
            nvcc=d.get("nvcc"),
            jobs=int(d.get("jobs", 2)),
        )


def default_build_dir(toolkit: Toolkit) -> Path:
    return cache_root() / "kernels" / f"cuda-{toolkit.release}"


def read_manifest(build_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The build manifest of ``build_dir``, or None when there is none (or it is unreadable)."""
    import json

    path = Path(build_dir) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT else None


@dataclass
class _Job:
    kernel: str
    arch: str
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def _compile(job: _Job, toolkit: Toolkit, src_dir: Path, out_dir: Path) -> _Job:
    """nvcc -ptx then ptxas -> cubin; on failure raise KernelError naming the log file."""
    num = job.arch[3:]
    src = src_dir / job.kernel / f"{job.kernel}.cu"
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgevae-nvcc-") as tmp:
        ptx = Path(tmp) / f"{job.kernel}.compute_{num}.ptx"
        cubin = Path(tmp) / f"{job.kernel}.{job.arch}.cubin"
        steps = [
            [str(toolkit.nvcc), *NVCC_FLAGS, f"-I{src_dir / 'common'}",
             f"-arch=compute_{num}", "-ptx", str(src), "-o", str(ptx)],
            [str(toolkit.ptxas), f"-arch={job.arch}", "-O3", str(ptx), "-o", str(cubin)],
        ]  # fmt: skip
        for cmd in steps:
            res = _run(cmd)
            if res.returncode != 0:
                log = out_dir / "logs" / f"{job.kernel}.{job.arch}.log"
                log.parent.mkdir(parents=True, exist_ok=True)
                log.write_text(" ".join(cmd) + "\n\n" + res.stdout + res.stderr)
                first = next(
                    (ln for ln in (res.stderr + res.stdout).splitlines() if "error" in ln.lower()),
                    (res.stderr or res.stdout).strip()[:200],
                )
                raise KernelError(
                    f"compiling {job.kernel} for {job.arch} failed: {first.strip()} "
                    f"(full log: {log})."
                )
        for kind, tmp_file in (("ptx", ptx), ("cubin", cubin)):
            rel = Path(job.kernel) / tmp_file.name
            data = tmp_file.read_bytes()
            write_bytes_atomic(out_dir / rel, data)
            entry: dict[str, Any] = {
                "arch": job.arch,
                "kind": kind,
                "file": rel.as_posix(),
                "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
            }
            if kind == "ptx":
                match = re.search(rb"^\.version\s+(\S+)", data, re.MULTILINE)
                entry["ptx_version"] = match.group(1).decode() if match else None
            job.artifacts.append(entry)
    job.seconds = round(time.perf_counter() - start, 3)
    return job


def build_kernels(
    config: BuildConfig, progress: Callable[[str, str, float], None] | None = None
) -> Path:
    """Compile the kernels for the configured targets and write ``manifest.json``.

    Artifacts of other targets already in the directory, from the same toolkit and the same
    sources, are kept in the manifest (so ``--arch`` builds add up).

    Args:
        config: what to build and where.
        progress: called as ``progress(kernel, arch, seconds)`` after each compiled target.

    Returns:
        Path of the manifest.

    Raises:
        MissingDependencyError: without nvcc; ConfigError: unsupported requested target;
        KernelError: a compile failure (the log file is named in the message).
    """
    toolkit = probe_toolkit(config.nvcc)
    src_dir = kernel_source_dir()
    targets, skipped = plan_targets(toolkit, config.archs)
    kernels = list(config.kernels or KERNELS)
    out_dir = Path(config.out) if config.out is not None else default_build_dir(toolkit)
    out_dir.mkdir(parents=True, exist_ok=True)
    digests = {k: source_digest(k, src_dir) for k in KERNELS}

    jobs = [_Job(k, a) for k in kernels for a in targets]
    with ThreadPoolExecutor(max_workers=config.jobs) as pool:
        futures = [pool.submit(_compile, j, toolkit, src_dir, out_dir) for j in jobs]
        for fut in futures:
            job = fut.result()  # re-raises KernelError from the worker
            if progress is not None:
                progress(job.kernel, job.arch, job.seconds)

    # Merge with what the directory already holds from the same toolkit and sources.
    previous = read_manifest(out_dir) or {}
    same_toolkit = previous.get("toolkit", {}).get("version") == toolkit.version
    entries: dict[str, dict[str, Any]] = {}
    for name in KERNELS:
        old = previous.get("kernels", {}).get(name, {}) if same_toolkit else {}
        keep = [
            a
            for a in old.get("artifacts", [])
            if old.get("source_sha256") == digests[name]
            and (name not in kernels or a["arch"] not in targets)
            and (out_dir / a["file"]).is_file()
            and sha256_file(out_dir / a["file"]) == a["sha256"]
        ]
        new = [a for j in jobs if j.kernel == name for a in j.artifacts]
        artifacts = sorted(keep + new, key=lambda a: (arch_number(a["arch"]), a["kind"]))
        if artifacts:
            entries[name] = {
                "entry": KERNELS[name],
                "source_sha256": digests[name],
                "artifacts": artifacts,
            }
    built = sorted({a["arch"] for e in entries.values() for a in e["artifacts"]}, key=arch_number)
    manifest = {
        "format": MANIFEST_FORMAT,
        "kind": "edgevae-kernels",
        "edgevae_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "toolkit": toolkit.to_dict(),
        "flags": list(NVCC_FLAGS),
        "targets": built,
        "skipped": skipped,
        "kernels": entries,
    }
    return write_json_atomic(out_dir / MANIFEST, manifest)
