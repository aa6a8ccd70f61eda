"""A ``trtexec`` wrapper whose flags make TensorRT 10.x and 11.x measure the same thing.

trtexec 11 changed its inference defaults: CUDA graphs on, data transfers excluded, spin wait on,
profiling in a separate run (reference/tensorrt.md §6). On 10.x edgevae therefore passes
``--useCudaGraph --noDataTransfers --useSpinWait`` (and ``--separateProfileRun`` when exporting a
per-layer profile); on 11.x it passes nothing, or the ``--no*``/``--include*`` opposites when a
measurement asks for the other behaviour. Building from ONNX: ``--stronglyTyped`` on 10.x only
(a deprecated no-op on 11.x), ``--noTF32`` unless asked, ``--memPoolSize=workspace:<MiB>``,
``--builderOptimizationLevel``, ``--timingCacheFile``, explicit min/opt/max shapes. Never
``--fp16/--int8/--best`` (gone in 11; precision comes from the ONNX).

Results come from trtexec's JSON exports (``--exportTimes``, ``--exportProfile``,
``--exportLayerInfo``), parsed here into nearest-rank percentiles on the raw per-iteration
samples (benchmarking.md: never sigma-clipped).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgevae.errors import ConfigError, EngineBuildError, MissingDependencyError
from edgevae.trt.build import summarize_layers
from edgevae.trt.profiles import ProfileShapes, shapes_flag
from edgevae.trt.versions import TrtVersion, trtexec_needs_explicit_inference_flags

#: Where JetPack puts trtexec (it is not on PATH there, and not in the pip wheels).
TRTEXEC_PATHS = ("/usr/src/tensorrt/bin/trtexec", "/usr/local/tensorrt/bin/trtexec")
PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class Measurement:
    """What to measure: the same meaning on every TensorRT version.

    Args:
        cuda_graph: replay the inference as a CUDA graph.
        data_transfers: include host<->device copies in the timed region.
        spin_wait: busy-wait for completion (lower, steadier latency than blocking sync).
        warmup_ms, duration_s, iterations: trtexec's warm-up time, minimum timed duration and
            minimum iteration count (both bounds apply).
        avg_runs: iterations averaged per reported sample (1 = raw samples).
        profile_layers: export a per-layer profile (measured in a separate run).
    """

    cuda_graph: bool = True
    data_transfers: bool = False
    spin_wait: bool = True
    warmup_ms: int = 500
    duration_s: int = 10
    iterations: int = 200
    avg_runs: int = 1
    profile_layers: bool = True

    def __post_init__(self) -> None:
        for name in ("warmup_ms", "duration_s", "iterations", "avg_runs"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (1 if name == "avg_runs" else 0):
                raise ConfigError(f"trtexec {name} must be a non-negative integer, got {value!r}.")


def find_trtexec(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Locate trtexec: the argument, ``$EDGEVAE_TRTEXEC``, PATH, then JetPack's location.

    Raises:
        MissingDependencyError: with where JetPack installs it.
    """
    for cand in (explicit, os.environ.get("EDGEVAE_TRTEXEC"), shutil.which("trtexec")):
        if cand and Path(cand).is_file():
            return Path(cand)
    for cand in TRTEXEC_PATHS:
        if Path(cand).is_file():
            return Path(cand)
    raise MissingDependencyError(
        "trtexec was not found (not on PATH, not in /usr/src/tensorrt/bin); on Jetson it comes "
        "with JetPack (`sudo apt install tensorrt` or `libnvinfer-bin`), elsewhere with the "
        "TensorRT SDK; or set EDGEVAE_TRTEXEC."
    )


def inference_flags(version: TrtVersion, m: Measurement) -> list[str]:
    """The flags that give ``m`` its meaning on this TensorRT version."""
    flags: list[str] = []
    if trtexec_needs_explicit_inference_flags(version):  # 10.x: opt in
        flags += ["--useCudaGraph"] if m.cuda_graph else []
        flags += [] if m.data_transfers else ["--noDataTransfers"]
        flags += ["--useSpinWait"] if m.spin_wait else []
        flags += ["--separateProfileRun"] if m.profile_layers else []
    else:  # 11.x: these are the defaults; opt out
        flags += [] if m.cuda_graph else ["--noCudaGraph"]
        flags += ["--includeDataTransfers"] if m.data_transfers else []
        flags += [] if m.spin_wait else ["--noSpinWait"]
    flags += [
        f"--warmUp={m.warmup_ms}",
        f"--duration={m.duration_s}",
        f"--iterations={m.iterations}",
        f"--avgRuns={m.avg_runs}",
        f"--percentile={','.join(str(p) for p in PERCENTILES)}",
    ]
    return flags


def build_flags(
    version: TrtVersion,
    profiles: Mapping[str, ProfileShapes],
    *,
    workspace_mib: int,
    opt_level: int,
    tf32: bool = False,
    timing_cache: str | os.PathLike[str] | None = None,
) -> list[str]:
    """Flags that build a strongly typed engine from ONNX like :func:`edgevae.trt.build_engine`."""
    flags = [] if version.major >= 11 else ["--stronglyTyped"]
    flags += [] if tf32 else ["--noTF32"]
    flags += [
        f"--memPoolSize=workspace:{workspace_mib}",
        f"--builderOptimizationLevel={opt_level}",
        "--profilingVerbosity=detailed",
        f"--minShapes={shapes_flag(profiles, 'min')}",
        f"--optShapes={shapes_flag(profiles, 'opt')}",
        f"--maxShapes={shapes_flag(profiles, 'max')}",
    ]
    if timing_cache:
        flags.append(f"--timingCacheFile={timing_cache}")
    return flags


def trtexec_command(
    version: TrtVersion,
    *,
    engine: str | os.PathLike[str] | None = None,
    onnx: str | os.PathLike[str] | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    export_dir: str | os.PathLike[str],
    measurement: Measurement = Measurement(),
    plugin_libraries: Sequence[str] = (),
    build: Sequence[str] = (),
    trtexec: str | os.PathLike[str] = "trtexec",
) -> list[str]:
    """The full command line for one measurement.

    Args:
        version: the TensorRT version trtexec belongs to.
        engine: a built ``.plan`` (``--loadEngine``); or ``onnx`` (+ ``build`` flags) to build.
        shapes: the input shapes to run, ``{name: (B, ...)}`` (dynamic-batch engines need them).
        export_dir: where times/profile/layer-info JSON go.
        measurement: what to measure (see :class:`Measurement`).
        plugin_libraries: IPluginV3 libraries (``--dynamicPlugins``).
        build: :func:`build_flags` output when building from ONNX.
        trtexec: the executable.

    Raises:
        ConfigError: neither or both of ``engine`` and ``onnx``.
    """
    if (engine is None) == (onnx is None):
        raise ConfigError("give trtexec either an engine (--loadEngine) or an ONNX (--onnx).")
    out = Path(export_dir)
    cmd = [str(trtexec)]
    cmd += [f"--loadEngine={engine}"] if engine is not None else [f"--onnx={onnx}", *build]
    if shapes:
        spec = ",".join(f"{n}:{'x'.join(str(d) for d in s)}" for n, s in shapes.items())
        cmd.append(f"--shapes={spec}")
    cmd += [f"--dynamicPlugins={lib}" for lib in plugin_libraries]
    cmd += inference_flags(version, measurement)
    cmd += [f"--exportTimes={out / 'times.json'}"]
    if measurement.profile_layers:
        cmd += [f"--exportProfile={out / 'profile.json'}"]
    cmd += [f"--exportLayerInfo={out / 'layers.json'}"]
    return cmd


@dataclass(frozen=True)
class TimeStats:
    """Nearest-rank statistics of one per-iteration quantity, in milliseconds."""

    n: int
    mean: float
    min: float
    max: float
    percentiles: dict[int, float]


@dataclass
class TrtexecResult:
    """Parsed trtexec exports (and the command that made them)."""

    command: list[str]
    latency: TimeStats | None = None  # host-observed per-inference latency
    compute: TimeStats | None = None  # GPU compute time per inference
    enqueue: TimeStats | None = None
    layers: list[dict[str, Any]] = field(default_factory=list)  # per-layer profile
    layer_info: dict[str, Any] | None = None  # precisions from --exportLayerInfo
    log_tail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def nearest_rank(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (p in (0, 100])."""
    if not sorted_values:
        raise ValueError("no samples")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def _stats(values: list[float]) -> TimeStats | None:
    if not values:
        return None
    s = sorted(values)
    return TimeStats(
        n=len(s),
        mean=sum(s) / len(s),
        min=s[0],
        max=s[-1],
        percentiles={p: nearest_rank(s, p) for p in PERCENTILES},
    )


def _interval(entry: dict[str, Any], key: str, start: str, end: str) -> float | None:
    if key in entry:
        return float(entry[key])
    if start in entry and end in entry:
        return float(entry[end]) - float(entry[start])
    return None


def parse_times(path: str | os.PathLike[str]) -> dict[str, TimeStats | None]:
    """``--exportTimes`` JSON (one object per iteration) -> latency/compute/enqueue statistics.

    Accepts the 10.x/11.x keys (``latencyMs``, ``computeMs``, ``enqueueMs``, ``start*/end*Ms``)
    and the older ``startInMs``/``endOutMs`` form.

    Raises:
        EngineBuildError: an unreadable or empty export (the measurement did not happen).
    """
    entries = _read_json_list(path, "times")
    latency, compute, enqueue = [], [], []
    for e in entries:
        if not isinstance(e, dict):
            continue
        lat = _interval(e, "latencyMs", "startInMs", "endOutMs")
        if lat is None:
            lat = _interval(e, "endToEndMs", "startH2dMs", "endD2hMs")
        comp = _interval(e, "computeMs", "startComputeMs", "endComputeMs")
        enq = _interval(e, "enqueueMs", "startEnqMs", "endEnqMs")
        for bucket, value in ((latency, lat), (compute, comp), (enqueue, enq)):
            if value is not None:
                bucket.append(value)
    if not (latency or compute):
        raise EngineBuildError(f"{path} holds no per-iteration times; re-run the measurement.")
    return {"latency": _stats(latency), "compute": _stats(compute), "enqueue": _stats(enqueue)}


def parse_profile(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """``--exportProfile`` JSON -> per-layer ``{name, time_ms, average_ms, median_ms, percent}``,
    slowest first (the leading ``{"count": N}`` entry is skipped)."""
    rows = []
    for e in _read_json_list(path, "profile"):
        if not isinstance(e, dict) or "name" not in e:
            continue
        rows.append(
            {
                "name": e["name"],
                "time_ms": float(e.get("timeMs", 0.0)),
                "average_ms": float(e.get("averageMs", 0.0)),
                "median_ms": float(e.get("medianMs", e.get("averageMs", 0.0))),
                "percent": float(e.get("percentage", 0.0)),
            }
        )
    return sorted(rows, key=lambda r: -r["average_ms"])


def parse_layer_info(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``--exportLayerInfo`` JSON (the engine inspector's) -> per-layer precisions."""
    try:
        return summarize_layers(Path(path).read_text())
    except OSError:
        return None


def run_trtexec(cmd: list[str], *, timeout_s: float = 1800.0) -> TrtexecResult:
    """Run trtexec and parse what it exported.

    Raises:
        MissingDependencyError: the executable is missing.
        EngineBuildError: trtexec failed (with the last lines of its log) or timed out.
    """
    export_dir = _export_dir(cmd)
    export_dir.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except FileNotFoundError:
        raise MissingDependencyError(f"{cmd[0]} does not exist; see `edgevae doctor`.") from None
    except subprocess.TimeoutExpired:
        raise EngineBuildError(
            f"trtexec did not finish within {timeout_s:.0f} s; lower --duration/--iterations."
        ) from None
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    if proc.returncode != 0:
        last = next(
            (ln for ln in reversed(tail.splitlines()) if "[E]" in ln or "error" in ln.lower()),
            tail.splitlines()[-1] if tail else "no output",
        )
        raise EngineBuildError(f"trtexec failed (exit {proc.returncode}): {last.strip()}")
    return parse_exports(cmd, export_dir, log_tail=tail)


def parse_exports(cmd: list[str], export_dir: Path, log_tail: str = "") -> TrtexecResult:
    """Parse the JSON files a trtexec run left in ``export_dir``."""
    times = parse_times(export_dir / "times.json")
    profile = export_dir / "profile.json"
    return TrtexecResult(
        command=cmd,
        latency=times["latency"],
        compute=times["compute"],
        enqueue=times["enqueue"],
        layers=parse_profile(profile) if profile.is_file() else [],
        layer_info=parse_layer_info(export_dir / "layers.json"),
        log_tail=log_tail,
    )


def _export_dir(cmd: list[str]) -> Path:
    for arg in cmd:
        if arg.startswith("--exportTimes="):
            return Path(arg.split("=", 1)[1]).parent
    raise ConfigError("the trtexec command has no --exportTimes; build it with trtexec_command().")


def _read_json_list(path: str | os.PathLike[str], what: str) -> list[Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise EngineBuildError(
            f"cannot read the trtexec {what} export {path} ({exc}); re-run the measurement."
        ) from None
    if not isinstance(data, list):
        raise EngineBuildError(f"the trtexec {what} export {path} is not a JSON list.")
    return data
