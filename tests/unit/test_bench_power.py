import time
from pathlib import Path

import pytest

from edgevae.bench.power import (
    Ina3221Source,
    PowerSampler,
    PowerTrace,
    energy_mj,
    find_ina3221_rails,
    open_source,
    parse_tegrastats,
    parse_tegrastats_line,
    power_summary,
    total_mw,
)
from edgevae.errors import ConfigError

FIXTURES = Path(__file__).parents[1] / "fixtures"
LOGS = FIXTURES / "tegrastats"
BOARDS = FIXTURES / "jetson"


def read_log(name):
    return parse_tegrastats((LOGS / name).read_text(errors="replace").splitlines())


@pytest.mark.parametrize(
    ("name", "rails", "first_total"),
    [
        ("orin-nano-jp6.txt", ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"], 5040.0),
        ("agx-orin-jp5.txt", ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"],
         2774.0 + 396.0 + 2314.0 + 302.0),
        ("xavier-nx-jp4.txt", ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"], 4619.0),
        ("nano-jp4.txt", ["POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"], 2394.0),
        ("agx-xavier-jp4.txt", ["GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"],
         0 + 463 + 1237 + 0 + 155 + 2012),
    ],
)  # fmt: skip
def test_tegrastats_logs_of_several_boards(name, rails, first_total):
    log = read_log(name)
    assert log.skipped == 0
    assert list(log.readings[0]) == rails
    total, used = total_mw(log.readings[0])
    assert total == first_total
    # a board total rail is used alone; otherwise every rail is summed and named
    assert used == (["VDD_IN"] if "VDD_IN" in rails else ["POM_5V_IN"] if "POM_5V_IN" in rails
                    else sorted(rails))  # fmt: skip


def test_current_not_average_is_taken():
    rails = parse_tegrastats_line((LOGS / "orin-nano-jp6.txt").read_text().splitlines()[1])
    assert rails == {"VDD_IN": 9872.0, "VDD_CPU_GPU_CV": 4210.0, "VDD_SOC": 2016.0}


def test_memory_fields_are_not_mistaken_for_rails():
    assert (
        parse_tegrastats_line("RAM 2406/7620MB (lfb 2x4MB) SWAP 0/3810MB IRAM 0/252kB(lfb 252kB)")
        is None
    )


def test_malformed_lines_are_skipped_and_counted_never_fatal():
    log = read_log("malformed.txt")
    assert len(log.readings) == 1
    assert log.readings[0]["VDD_IN"] == 9950.0
    assert log.skipped == 5  # the blank line is ignored, not counted


def test_ina3221_hwmon_orin_nano():
    src = Ina3221Source(BOARDS / "orin-nano")
    assert [r.name for r in src.rails] == ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]  # in7 skipped
    reading = src.read()
    assert reading["VDD_IN"] == pytest.approx(5040 * 1012 / 1000)
    assert total_mw(reading) == (pytest.approx(5040 * 1012 / 1000), ["VDD_IN"])


def test_ina3221_agx_orin_two_chips_and_nc_channels():
    rails = find_ina3221_rails(BOARDS / "agx-orin")
    assert [r.name for r in rails] == [
        "VDD_GPU_SOC",
        "VDD_CPU_CV",
        "VIN_SYS_5V0",
        "VDDQ_VDD2_1V8AO",
    ]
    reading = Ina3221Source(rails=rails).read()
    total, used = total_mw(reading, rails=["VDD_GPU_SOC", "VDD_CPU_CV"])  # compute rails only
    assert used == ["VDD_GPU_SOC", "VDD_CPU_CV"]
    assert total == pytest.approx((4992 * 556 + 4984 * 80) / 1000)


def test_ina3221_iio_layout_xavier_nx():
    src = Ina3221Source(BOARDS / "xavier-nx")
    assert src.read() == {"VDD_IN": 4619.0, "VDD_CPU_GPU_CV": 658.0, "VDD_SOC": 1275.0}


def test_unreadable_rails_are_counted(tmp_path):
    src = Ina3221Source(BOARDS / "orin-nano")
    src.rails = [
        r.__class__(r.name, volt_mv=tmp_path / "gone", curr_ma=r.curr_ma) for r in src.rails
    ]
    assert src.read() is None and src.unreadable == 1
    assert Ina3221Source(tmp_path).available() is False


def test_energy_integration_over_windows():
    trace = PowerTrace(times=[0.0, 0.5, 1.0, 1.5, 2.0], readings=[{"VDD_IN": 5000.0}] * 5)
    energy, covered, used = energy_mj(trace, [(0.0, 1.0)])
    assert energy == pytest.approx(5000.0)  # 5 W for 1 s = 5000 mJ
    assert (covered, used) == (1.0, 3)
    ramp = PowerTrace(times=[0.0, 1.0], readings=[{"VDD_IN": 0.0}, {"VDD_IN": 2000.0}])
    assert energy_mj(ramp, [(0.0, 1.0)])[0] == pytest.approx(1000.0)  # trapezoid


def test_power_summary_reports_delta_and_mj_per_inference():
    trace = PowerTrace(
        times=[0.0, 0.5, 1.0, 10.0], readings=[{"VDD_IN": 7000.0}] * 3 + [{"VDD_IN": 1.0}]
    )
    s = power_summary(trace, [(0.0, 1.0, 100)], idle_w=5.0, source="ina3221")
    assert s["mean_w"] == pytest.approx(7.0)
    assert s["delta_w"] == pytest.approx(2.0)
    assert s["mj_per_inference"] == pytest.approx(70.0)
    assert s["rails"] == ["VDD_IN"] and s["source"] == "ina3221"
    assert power_summary(PowerTrace(), [(0.0, 1.0, 1)], idle_w=None, source="x") is None


class FakeSource:
    name = "fake"

    def __init__(self):
        self.n = 0

    def read(self):
        self.n += 1
        return None if self.n % 4 == 0 else {"VDD_IN": 5000.0}


def test_sampler_runs_at_least_ten_hertz_and_counts_gaps():
    sampler = PowerSampler(FakeSource(), interval_s=0.01)
    sampler.start()
    time.sleep(0.3)
    trace = sampler.stop()
    assert len(trace.readings) >= 10
    assert trace.skipped >= 1
    assert trace.times == sorted(trace.times)


def test_sampler_refuses_slower_than_ten_hertz():
    with pytest.raises(ConfigError, match=">= 10 Hz"):
        PowerSampler(FakeSource(), interval_s=0.5)


def test_open_source_choices(tmp_path):
    assert isinstance(open_source("auto", BOARDS / "orin-nano"), Ina3221Source)
    assert open_source("off") is None
    with pytest.raises(ConfigError, match="no INA3221"):
        open_source("ina3221", tmp_path)
    with pytest.raises(ConfigError, match="power source"):
        open_source("ina3211", tmp_path)
