"""Latency statistics on raw samples: nearest-rank percentiles, no outlier removal.

Rules (benchmarking.md §3): percentiles are read off the *sorted raw samples* with the nearest-rank
definition (``rank = ceil(p / 100 * n)``, 1-based); samples are pooled, never averaged across runs;
nothing is sigma-clipped, because the tail is what latency budgets care about. p99.9 is reported
only from 10 000 samples on (fewer cannot resolve it).

Example:
    >>> s = summarize([float(i) for i in range(1, 101)], batch=1)
    >>> s.p50, s.p90, s.p99, s.max
    (50.0, 90.0, 99.0, 100.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from edgevae.errors import ConfigError

P999_MIN_SAMPLES = 10_000


def nearest_rank(sorted_samples: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile of already sorted samples.

    Args:
        sorted_samples: ascending samples (at least one).
        p: percentile in [0, 100]; 0 gives the minimum, 100 the maximum.

    Raises:
        ConfigError: no samples or ``p`` outside [0, 100].
    """
    n = len(sorted_samples)
    if n == 0:
        raise ConfigError("cannot take a percentile of zero samples; run at least one iteration.")
    if not 0.0 <= p <= 100.0:
        raise ConfigError(f"percentile must be within [0, 100], got {p}.")
    rank = max(1, math.ceil(p / 100.0 * n - 1e-9))  # 1-based; the epsilon absorbs float noise
    return float(sorted_samples[min(rank, n) - 1])


@dataclass(frozen=True)
class LatencyStats:
    """Summary of one configuration's per-iteration latencies (milliseconds).

    ``throughput`` is samples per second over the timed iterations: ``batch * n / sum(latency)``.
    ``p99_9`` is None below :data:`P999_MIN_SAMPLES` samples.
    """

    n: int
    min: float
    p50: float
    p90: float
    p95: float
    p99: float
    p99_9: float | None
    max: float
    mean: float
    throughput: float
    batch: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LatencyStats:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def summarize(samples_ms: Sequence[float], batch: int = 1) -> LatencyStats:
    """Statistics of raw per-iteration latencies in milliseconds (one iteration = one batch).

    Raises:
        ConfigError: no samples, a non-positive batch, or a negative/non-finite sample.
    """
    if batch < 1:
        raise ConfigError(f"batch must be >= 1, got {batch}.")
    xs = sorted(float(x) for x in samples_ms)
    if not xs:
        raise ConfigError("no latency samples to summarize; run at least one iteration.")
    if not all(math.isfinite(x) and x >= 0 for x in xs):
        raise ConfigError("latency samples must be finite and non-negative.")
    n = len(xs)
    total_ms = math.fsum(xs)
    return LatencyStats(
        n=n,
        min=xs[0],
        p50=nearest_rank(xs, 50),
        p90=nearest_rank(xs, 90),
        p95=nearest_rank(xs, 95),
        p99=nearest_rank(xs, 99),
        p99_9=nearest_rank(xs, 99.9) if n >= P999_MIN_SAMPLES else None,
        max=xs[-1],
        mean=total_ms / n,
        throughput=batch * n / (total_ms / 1000.0) if total_ms > 0 else float("inf"),
        batch=batch,
    )


def speedup(stats: LatencyStats, baseline: LatencyStats) -> dict[str, float]:
    """How many times faster ``stats`` is than ``baseline`` (> 1: faster), measured in one run.

    Latency ratios are ``baseline / this`` (p50, p90, mean); the throughput ratio is
    ``this / baseline``. Both runs must use the same batch.

    Raises:
        ConfigError: different batch sizes (a ratio across batches compares different work).
    """
    if stats.batch != baseline.batch:
        raise ConfigError(
            f"cannot compare batch {stats.batch} with a baseline at batch {baseline.batch}; "
            "measure the baseline at the same batch."
        )

    def ratio(num: float, den: float) -> float:
        return num / den if den > 0 else float("inf")

    return {
        "p50": ratio(baseline.p50, stats.p50),
        "p90": ratio(baseline.p90, stats.p90),
        "mean": ratio(baseline.mean, stats.mean),
        "throughput": ratio(stats.throughput, baseline.throughput),
    }


def pool(*sample_lists: Sequence[float]) -> list[float]:
    """Concatenate the raw samples of several runs (the only valid way to combine them)."""
    return [float(x) for samples in sample_lists for x in samples]
