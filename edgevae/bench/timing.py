"""Timing loop: warm-up, then every configuration interleaved in short rounds until each has run for
a fixed duration **and** a minimum number of iterations (MLPerf's rule).

Why interleave: on a shared machine the speed drifts by 5-15 % within minutes and another job can
slow one configuration 100x (DESIGN §8). Running configurations in alternating short slices gives
every one the same drift, so ratios from one run are fair. Each slice also measures how much CPU
*other* processes used while it ran (``/proc/stat`` busy time minus this process's own time from
``/proc/self/stat``, steal time included); a slice above the threshold is thrown away and redone
(up to ``max_redos`` times, then kept and counted as disturbed), and the counts go into the result.

Example:
    >>> cfg = TimingConfig(warmup_s=0.01, warmup_iters=1, duration_s=0.02, min_iters=5,
    ...                    round_s=0.01)
    >>> [r] = time_interleaved([lambda: None], cfg)
    >>> len(r.samples_s) >= 5
    True
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgevae.errors import ConfigError

StageTimes = dict[str, float]
Timed = Callable[[], Any]  # returns None or {stage: seconds}
Progress = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class TimingConfig:
    """How long and how carefully to time.

    Args:
        warmup_s: minimum warm-up time per configuration (s).
        warmup_iters: minimum warm-up iterations per configuration (both minimums must be met).
        duration_s: minimum timed time per configuration (sum of its iteration latencies, s).
        min_iters: minimum timed iterations per configuration.
        round_s: length of one configuration's slice in a round (s).
        disturbance_threshold: other processes' CPU use, in cores (1.0 = one core fully busy),
            above which a slice is redone; None disables the check.
        max_redos: how often one slice may be redone before it is kept (and counted as disturbed).
        time_limit_s: stop timing after this many seconds even if the minimums are not met (the
            result is marked truncated); None: no limit.
    """

    warmup_s: float = 2.0
    warmup_iters: int = 10
    duration_s: float = 10.0
    min_iters: int = 1000
    round_s: float = 0.5
    disturbance_threshold: float | None = 0.25
    max_redos: int = 3
    time_limit_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("warmup_s", "duration_s"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0 seconds, got {getattr(self, name)}.")
        for name in ("warmup_iters", "min_iters", "max_redos"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be an integer >= 0, got {value!r}.")
        if self.min_iters < 1:
            raise ConfigError("min_iters must be >= 1 (at least one timed iteration).")
        if not self.round_s > 0:
            raise ConfigError(f"round_s must be > 0 seconds, got {self.round_s}.")
        if self.disturbance_threshold is not None and not self.disturbance_threshold > 0:
            raise ConfigError(
                "disturbance_threshold must be > 0 cores (or None to disable the check), got "
                f"{self.disturbance_threshold}."
            )
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise ConfigError(f"time_limit_s must be > 0 seconds, got {self.time_limit_s}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TimingConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown timing options {sorted(unknown)}.")
        return cls(**d)


class CpuProbe:
    """CPU time of the whole machine and of this process, from ``<root>/proc``.

    ``sample()`` returns ``(busy_s, own_s)``: machine-wide busy CPU-seconds (user, nice, system,
    irq, softirq, steal) and this process's user+system CPU-seconds, or None where ``/proc`` is not
    readable (then no disturbance check is made).
    """

    def __init__(self, root: str | os.PathLike[str] = "/") -> None:
        self.root = Path(root)
        try:
            self.tick = float(os.sysconf("SC_CLK_TCK"))
        except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
            self.tick = 100.0

    def sample(self) -> tuple[float, float] | None:
        try:
            first = (self.root / "proc/stat").read_text().splitlines()[0].split()
            own = (self.root / "proc/self/stat").read_text()
        except (OSError, IndexError):
            return None
        if first[0] != "cpu":
            return None
        vals = [int(v) for v in first[1:]]
        # user nice system idle iowait irq softirq steal [guest guest_nice]; guest is in user
        busy = sum(vals[i] for i in (0, 1, 2, 5, 6, 7) if i < len(vals))
        fields = own[own.rindex(")") + 2 :].split()  # after "pid (comm) "; field 3 is fields[0]
        utime, stime = int(fields[11]), int(fields[12])
        return busy / self.tick, (utime + stime) / self.tick


@dataclass
class TimingResult:
    """Raw timings of one configuration (seconds) and how the run went."""

    samples_s: list[float] = field(default_factory=list)
    stages_s: dict[str, list[float]] = field(default_factory=dict)
    warmup_iters: int = 0
    warmup_s: float = 0.0
    slices: int = 0
    redone: int = 0
    kept_disturbed: int = 0
    other_cpu: list[float] = field(default_factory=list)
    windows: list[tuple[float, float, int]] = field(default_factory=list)
    truncated: bool = False
    error: str | None = None

    def disturbance(self, config: TimingConfig) -> dict[str, Any]:
        """What the result JSON records about disturbance (see module docstring)."""
        other = self.other_cpu
        return {
            "threshold_cores": config.disturbance_threshold,
            "checked": bool(other),
            "slices": self.slices,
            "redone": self.redone,
            "kept_disturbed": self.kept_disturbed,
            "other_cpu_mean_cores": sum(other) / len(other) if other else None,
            "other_cpu_max_cores": max(other) if other else None,
        }


def _done(r: TimingResult, cfg: TimingConfig) -> bool:
    return r.error is not None or (
        len(r.samples_s) >= cfg.min_iters and sum(r.samples_s) >= cfg.duration_s
    )


def _call(fn: Timed, r: TimingResult, clock: Callable[[], float]) -> float:
    a = clock()
    out = fn()
    dt = clock() - a
    if isinstance(out, dict):
        for k, v in out.items():
            r.stages_s.setdefault(k, []).append(float(v))
    return dt


def time_interleaved(
    fns: Sequence[Timed],
    config: TimingConfig,
    *,
    probe: CpuProbe | None = None,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> list[TimingResult]:
    """Warm up each callable, then time them interleaved (see module docstring).

    Args:
        fns: one callable per configuration, each running one iteration to completion (results
            synchronised). It may return ``{stage: seconds}`` to record a stage breakdown.
        config: durations, counts and the disturbance threshold.
        probe: CPU-time source (default: this machine's ``/proc``).
        progress: called as ``progress(event, info)`` with ``"warmup"`` and ``"round"`` events.
        clock: monotonic clock in seconds (tests inject a fake one).

    Returns:
        One :class:`TimingResult` per callable, in order. A callable that raises gets ``error``
        set (one line) and drops out; the others continue.
    """
    probe = probe if probe is not None else CpuProbe()
    results = [TimingResult() for _ in fns]
    start = clock()

    def over_time() -> bool:
        return config.time_limit_s is not None and clock() - start > config.time_limit_s

    for i, fn in enumerate(fns):
        r = results[i]
        if progress:
            progress("warmup", {"config": i, "of": len(fns)})
        t0 = clock()
        try:
            while True:
                fn()
                r.warmup_iters += 1
                elapsed = clock() - t0
                if elapsed >= config.warmup_s and r.warmup_iters >= config.warmup_iters:
                    break
                if over_time():
                    break
        except Exception as exc:  # the configuration failed; keep timing the others
            r.error = _one_line(exc)
        r.warmup_s = clock() - t0
        r.stages_s.clear()  # warm-up stage times are not samples

    rnd = 0
    while True:
        active = [i for i, r in enumerate(results) if not _done(r, config)]
        if not active:
            break
        if over_time():
            for i in active:
                results[i].truncated = True
            break
        shift = rnd % len(active)  # rotate the order so no configuration always goes first
        for i in active[shift:] + active[:shift]:
            _timed_slice(fns[i], results[i], config, probe, clock)
        rnd += 1
        if progress:
            progress("round", {"round": rnd, "fraction": _fraction(results, config)})
    return results


def _timed_slice(
    fn: Timed, r: TimingResult, cfg: TimingConfig, probe: CpuProbe, clock: Callable[[], float]
) -> None:
    for attempt in range(cfg.max_redos + 1):
        before_samples, before_stages = len(r.samples_s), {k: len(v) for k, v in r.stages_s.items()}
        p0, t0 = probe.sample(), clock()
        try:
            while True:
                r.samples_s.append(_call(fn, r, clock))
                if clock() - t0 >= cfg.round_s:
                    break
        except Exception as exc:
            r.error = _one_line(exc)
            return
        t1, p1 = clock(), probe.sample()
        other = None
        if p0 is not None and p1 is not None and t1 > t0:
            other = max(0.0, ((p1[0] - p0[0]) - (p1[1] - p0[1])) / (t1 - t0))
        disturbed = (
            other is not None
            and cfg.disturbance_threshold is not None
            and other > cfg.disturbance_threshold
        )
        if disturbed and attempt < cfg.max_redos:
            r.redone += 1
            del r.samples_s[before_samples:]
            for k, v in r.stages_s.items():
                del v[before_stages.get(k, 0) :]
            continue
        r.slices += 1
        r.kept_disturbed += int(disturbed)
        if other is not None:
            r.other_cpu.append(other)
        r.windows.append((t0, t1, len(r.samples_s) - before_samples))
        return


def _fraction(results: list[TimingResult], cfg: TimingConfig) -> float:
    def one(r: TimingResult) -> float:
        if r.error is not None:
            return 1.0
        by_time = sum(r.samples_s) / cfg.duration_s if cfg.duration_s > 0 else 1.0
        return min(1.0, by_time, len(r.samples_s) / cfg.min_iters)

    return min(one(r) for r in results) if results else 1.0


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__
