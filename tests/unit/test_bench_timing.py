import itertools

import pytest

from edgevae.bench.timing import CpuProbe, TimingConfig, time_interleaved
from edgevae.errors import ConfigError


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class FakeProbe:
    """Machine busy time = own time + ``other`` cores x elapsed; ``other`` per slice from a list."""

    def __init__(self, clock: FakeClock, others: list[float] | None = None) -> None:
        self.clock = clock
        self.others = list(others or [])
        self.busy = 0.0
        self.last = 0.0
        self.calls = 0

    def sample(self):
        now = self.clock()
        # every second sample closes a slice: charge the disturbance of that slice
        if self.calls % 2 == 1:
            other = self.others.pop(0) if self.others else 0.0
            self.busy += other * (now - self.last)
        self.last = now
        self.calls += 1
        return self.busy, 0.0


def ticking(clock: FakeClock, dt: float, log: list | None = None, name: str = "", stages=None):
    def fn():
        clock.t += dt
        if log is not None:
            log.append(name)
        return stages

    return fn


FAST = {"warmup_s": 0.01, "warmup_iters": 3, "duration_s": 0.1, "min_iters": 20, "round_s": 0.02}


def test_runs_until_duration_and_min_iters_are_both_met():
    clock = FakeClock()
    [r] = time_interleaved([ticking(clock, 0.001)], TimingConfig(**FAST), probe=FakeProbe(clock),
                           clock=clock)  # fmt: skip
    assert len(r.samples_s) >= 100  # 0.1 s of 1 ms iterations beats the 20-iteration minimum
    assert sum(r.samples_s) >= 0.1
    assert r.warmup_iters >= 10  # 0.01 s of warm-up at 1 ms
    [slow] = time_interleaved(
        [ticking(clock, 0.05)], TimingConfig(**FAST), probe=FakeProbe(clock), clock=clock
    )
    assert len(slow.samples_s) >= 20  # the count rules for slow iterations
    assert slow.warmup_iters == 3


def test_configurations_are_interleaved_in_rotating_rounds():
    clock, log = FakeClock(), []
    fns = [ticking(clock, 0.001, log, "a"), ticking(clock, 0.001, log, "b")]
    cfg = TimingConfig(**{**FAST, "warmup_iters": 1, "warmup_s": 0.0})
    ra, rb = time_interleaved(fns, cfg, probe=FakeProbe(clock), clock=clock)
    timed = log[2:]  # after one warm-up call each
    switches = sum(1 for x, y in itertools.pairwise(timed) if x != y)
    assert switches >= 4  # many alternating slices, not a then b
    assert ra.slices >= 3 and rb.slices >= 3
    firsts = []  # who starts each round (a slice is 20 iterations of 1 ms here)
    i = 0
    while i < len(timed):
        firsts.append(timed[i])
        i += 40
    assert "a" in firsts and "b" in firsts  # the order rotates


def test_disturbed_slices_are_redone_and_counted():
    clock = FakeClock()
    probe = FakeProbe(clock, others=[1.5, 0.0])  # first slice disturbed, its redo clean
    cfg = TimingConfig(**{**FAST, "duration_s": 0.02, "min_iters": 5})
    [r] = time_interleaved([ticking(clock, 0.001)], cfg, probe=probe, clock=clock)
    assert r.redone == 1
    assert r.kept_disturbed == 0
    assert len(r.samples_s) == sum(n for *_, n in r.windows)  # the discarded samples are gone
    d = r.disturbance(cfg)
    assert d["redone"] == 1 and d["checked"] and d["threshold_cores"] == 0.25


def test_persistent_disturbance_is_kept_after_the_redo_limit():
    clock = FakeClock()
    probe = FakeProbe(clock, others=[2.0] * 100)
    cfg = TimingConfig(**{**FAST, "duration_s": 0.02, "min_iters": 5, "max_redos": 1})
    [r] = time_interleaved([ticking(clock, 0.001)], cfg, probe=probe, clock=clock)
    assert r.kept_disturbed == r.slices >= 1
    assert r.redone == r.slices  # one redo per kept slice
    assert r.disturbance(cfg)["other_cpu_mean_cores"] == pytest.approx(2.0)


def test_disturbance_check_can_be_disabled():
    clock = FakeClock()
    cfg = TimingConfig(**{**FAST, "disturbance_threshold": None})
    [r] = time_interleaved([ticking(clock, 0.001)], cfg, probe=FakeProbe(clock, [5.0] * 50),
                           clock=clock)  # fmt: skip
    assert r.redone == 0 and r.kept_disturbed == 0


def test_stage_times_are_recorded_and_trimmed_on_redo():
    clock = FakeClock()
    fn = ticking(clock, 0.001, stages={"pre": 0.0002, "infer": 0.0007, "post": 0.0001})
    cfg = TimingConfig(**{**FAST, "duration_s": 0.02, "min_iters": 5})
    [r] = time_interleaved([fn], cfg, probe=FakeProbe(clock, [3.0, 0.0]), clock=clock)
    assert set(r.stages_s) == {"pre", "infer", "post"}
    assert all(len(v) == len(r.samples_s) for v in r.stages_s.values())  # warm-up stages dropped


def test_a_failing_configuration_does_not_stop_the_others():
    clock = FakeClock()
    calls = {"n": 0}

    def flaky():
        clock.t += 0.001
        calls["n"] += 1
        if calls["n"] > 5:
            raise RuntimeError("device lost\nmore detail")

    ok, bad = time_interleaved([ticking(clock, 0.001), flaky], TimingConfig(**FAST),
                               probe=FakeProbe(clock), clock=clock)  # fmt: skip
    assert bad.error == "RuntimeError: device lost"
    assert ok.error is None and len(ok.samples_s) >= 20


def test_time_limit_truncates():
    clock = FakeClock()
    cfg = TimingConfig(**{**FAST, "duration_s": 100.0, "time_limit_s": 0.5})
    [r] = time_interleaved([ticking(clock, 0.01)], cfg, probe=FakeProbe(clock), clock=clock)
    assert r.truncated
    assert sum(r.samples_s) < 1.0


def test_progress_reports_warmup_and_rounds():
    clock, events = FakeClock(), []
    time_interleaved([ticking(clock, 0.001)], TimingConfig(**FAST), probe=FakeProbe(clock),
                     clock=clock, progress=lambda e, i: events.append((e, i)))  # fmt: skip
    assert events[0] == ("warmup", {"config": 0, "of": 1})
    assert events[-1][0] == "round" and events[-1][1]["fraction"] == 1.0


def test_real_clock_smoke():
    [r] = time_interleaved([lambda: None], TimingConfig(**FAST))
    assert len(r.samples_s) >= 20


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("min_iters", 0, "min_iters must be >= 1"),
        ("round_s", 0.0, "round_s must be > 0"),
        ("disturbance_threshold", -1.0, "disturbance_threshold must be > 0"),
        ("duration_s", -1.0, "duration_s must be >= 0"),
        ("warmup_iters", 1.5, "warmup_iters must be an integer"),
        ("time_limit_s", 0.0, "time_limit_s must be > 0"),
    ],
)
def test_timing_config_validation(field, value, match):
    with pytest.raises(ConfigError, match=match):
        TimingConfig(**{field: value})


def test_timing_config_round_trip_and_unknown_keys():
    cfg = TimingConfig(duration_s=1.0)
    assert TimingConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown timing options"):
        TimingConfig.from_dict({"durration_s": 1.0})


def test_cpu_probe_reads_proc_stat_and_self_stat(tmp_path):
    (tmp_path / "proc/self").mkdir(parents=True)
    # user nice system idle iowait irq softirq steal
    (tmp_path / "proc/stat").write_text(
        "cpu  100 0 50 900 10 5 5 40 0 0\ncpu0 50 0 25 450 5 2 3 20 0 0\n"
    )
    fields = ["S"] + ["0"] * 10 + ["30", "20"] + ["0"] * 30  # state, ..., utime=30, stime=20
    (tmp_path / "proc/self/stat").write_text("1234 (python (x)) " + " ".join(fields))
    probe = CpuProbe(tmp_path)
    busy, own = probe.sample()
    assert busy == pytest.approx((100 + 50 + 5 + 5 + 40) / probe.tick)  # idle and iowait excluded
    assert own == pytest.approx(50 / probe.tick)
    assert CpuProbe(tmp_path / "missing").sample() is None
