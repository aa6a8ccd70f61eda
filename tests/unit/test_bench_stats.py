import math

import pytest

from edgevae.bench.stats import LatencyStats, nearest_rank, pool, speedup, summarize
from edgevae.errors import ConfigError


def test_nearest_rank_on_one_to_hundred():
    xs = [float(i) for i in range(1, 101)]
    assert [nearest_rank(xs, p) for p in (0, 1, 50, 90, 95, 99, 100)] == [1, 1, 50, 90, 95, 99, 100]


def test_nearest_rank_on_ten_samples_rounds_up():
    xs = [float(i) for i in range(1, 11)]
    # rank = ceil(p/100 * n): p50 -> 5th, p90 -> 9th, p95 -> ceil(9.5) = 10th, p99 -> 10th
    assert (nearest_rank(xs, 50), nearest_rank(xs, 90), nearest_rank(xs, 95)) == (5, 9, 10)
    assert nearest_rank(xs, 99) == 10
    assert nearest_rank(xs, 10) == 1  # exact rank 1: float noise must not push it to 2


def test_summarize_sorts_and_never_clips_outliers():
    samples = [1.0] * 99 + [1000.0]
    s = summarize(list(reversed(samples)), batch=1)
    assert (s.n, s.min, s.p50, s.p99, s.max) == (100, 1.0, 1.0, 1.0, 1000.0)
    assert s.mean == pytest.approx((99 + 1000) / 100)  # the outlier stays in the mean
    assert s.p99_9 is None  # fewer than 10 000 samples


def test_p99_9_from_ten_thousand_samples():
    s = summarize([float(i) for i in range(1, 10_001)])
    assert s.p99_9 == 9990.0
    assert s.p99 == 9900.0


def test_throughput_counts_samples_per_second_of_timed_work():
    s = summarize([10.0] * 10, batch=4)  # 10 iterations of 10 ms, 4 samples each
    assert s.throughput == pytest.approx(400.0)
    assert s.batch == 4


def test_speedup_is_baseline_over_this_and_throughput_ratio():
    base = summarize([10.0] * 10, batch=1)
    fast = summarize([5.0] * 10, batch=1)
    r = speedup(fast, base)
    assert r["p50"] == pytest.approx(2.0)
    assert r["p90"] == pytest.approx(2.0)
    assert r["throughput"] == pytest.approx(2.0)
    assert speedup(base, fast)["mean"] == pytest.approx(0.5)


def test_speedup_refuses_different_batches():
    with pytest.raises(ConfigError, match="same batch"):
        speedup(summarize([1.0], batch=8), summarize([1.0], batch=1))


@pytest.mark.parametrize(
    ("samples", "batch", "match"),
    [
        ([], 1, "no latency samples"),
        ([1.0, -2.0], 1, "finite and non-negative"),
        ([1.0, math.nan], 1, "finite and non-negative"),
        ([1.0], 0, "batch must be >= 1"),
    ],
)
def test_summarize_rejects_bad_input(samples, batch, match):
    with pytest.raises(ConfigError, match=match):
        summarize(samples, batch=batch)


def test_nearest_rank_rejects_bad_percentile_and_empty():
    with pytest.raises(ConfigError, match="within"):
        nearest_rank([1.0], 101)
    with pytest.raises(ConfigError, match="zero samples"):
        nearest_rank([], 50)


def test_pool_concatenates_instead_of_averaging_percentiles():
    a, b = [1.0] * 90, [100.0] * 10
    pooled = summarize(pool(a, b))
    assert pooled.p90 == 1.0 and pooled.p95 == 100.0
    # averaging each run's p95 would have given (1 + 100) / 2
    assert pooled.p95 != (summarize(a).p95 + summarize(b).p95) / 2


def test_stats_dict_round_trip():
    s = summarize([1.0, 2.0, 3.0], batch=2)
    assert LatencyStats.from_dict(s.to_dict()) == s
