"""Power on Jetson: INA3221 sysfs and tegrastats readers, a background sampler, mJ per inference.

Sources (tensorrt.md §5.5, benchmarking.md §5):

* **INA3221 hwmon** (JetPack 5+): ``/sys/bus/i2c/devices/*/name == ina3221``, then
  ``hwmon/hwmon*/in{N}_label`` (rail), ``in{N}_input`` (mV) and ``curr{N}_input`` (mA). Channel 7
  (sum of shunt voltages) and ``NC`` labels are skipped. The older iio layout (JetPack 4:
  ``iio:device*/rail_name_{N}``, ``in_power{N}_input`` mW) is read too.
* **tegrastats** lines: ``VDD_IN 5000mW/5100mW`` (JetPack 5+), ``VDD_IN 4619/4619`` and
  ``POM_5V_IN 2394/2394`` (JetPack 4; AGX Xavier prints ``GPU 0/0 CPU 463/463 ...``),
  current/average in mW. A line without any rail reading is
  skipped and counted, never fatal.

The board total is ``VDD_IN`` / ``POM_5V_IN`` when present, else the sum of the rails; which rails
were used is always recorded (a module-rail figure and a board figure must never be mixed).
On-module rails exclude the carrier board. Energy is integrated over the samples of the timed
window (trapezoids), then divided by the inferences run in it.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevae.errors import ConfigError

TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")
# "NAME cur/avg" with optional mW units; "RAM 2406/7620MB"-style memory fields do not match
_RAIL_RE = re.compile(r"\b([A-Z][A-Z0-9_]*)\s+(\d+)(mW)?/(\d+)(mW)?(?=\s|$)")
_TIMESTAMP_RE = re.compile(r"^\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2}\s+")


# --------------------------------------------------------------------------- tegrastats


def parse_tegrastats_line(line: str) -> dict[str, float] | None:
    """``{rail: current mW}`` from one tegrastats line, or None when it holds no rail readings."""
    text = _TIMESTAMP_RE.sub("", line.strip())
    rails = {name: float(cur) for name, cur, _u1, _avg, _u2 in _RAIL_RE.findall(text)}
    return rails or None


@dataclass
class ParsedLog:
    """Rail readings of a tegrastats log plus how many lines could not be used."""

    readings: list[dict[str, float]] = field(default_factory=list)
    skipped: int = 0


def parse_tegrastats(lines: Iterable[str]) -> ParsedLog:
    """Parse many tegrastats lines; blank lines are ignored, unparseable ones counted."""
    log = ParsedLog()
    for line in lines:
        if not line.strip():
            continue
        rails = parse_tegrastats_line(line)
        if rails is None:
            log.skipped += 1
        else:
            log.readings.append(rails)
    return log


# --------------------------------------------------------------------------- INA3221 sysfs


@dataclass(frozen=True)
class Rail:
    """One INA3221 channel: its name and the files to read."""

    name: str
    volt_mv: Path | None = None
    curr_ma: Path | None = None
    power_mw: Path | None = None


def find_ina3221_rails(root: str | os.PathLike[str] = "/") -> list[Rail]:
    """Every INA3221 rail under ``<root>/sys/bus/i2c/devices`` (hwmon and iio layouts)."""
    base = Path(root) / "sys/bus/i2c/devices"
    rails: list[Rail] = []
    for dev in sorted(base.glob("*")):
        try:
            if "ina3221" not in (dev / "name").read_text():
                continue
        except OSError:
            continue
        for hw in sorted(dev.glob("hwmon/hwmon*")):
            for label in sorted(hw.glob("in*_label")):
                m = re.fullmatch(r"in(\d+)_label", label.name)
                name = _read_text(label)
                if not m or not name or int(m.group(1)) == 7 or "NC" in name.split():
                    continue
                if "sum of shunt" in name.lower():
                    continue
                n = m.group(1)
                rails.append(Rail(name, volt_mv=hw / f"in{n}_input", curr_ma=hw / f"curr{n}_input"))
        for iio in sorted(dev.glob("iio:device*")):
            for label in sorted(iio.glob("rail_name_*")):
                n = label.name.rsplit("_", 1)[1]
                name = _read_text(label)
                if name:
                    rails.append(Rail(name, power_mw=iio / f"in_power{n}_input"))
    return rails


def _read_text(p: Path) -> str | None:
    try:
        return p.read_text().strip()
    except OSError:
        return None


def _read_number(p: Path | None) -> float | None:
    if p is None:
        return None
    text = _read_text(p)
    try:
        return float(text.split()[0]) if text else None
    except ValueError:
        return None


class Ina3221Source:
    """Reads the INA3221 rails (mW) directly from sysfs; the preferred source (finer time
    resolution than tegrastats)."""

    name = "ina3221"

    def __init__(self, root: str | os.PathLike[str] = "/", rails: Sequence[Rail] | None = None):
        self.rails = list(rails) if rails is not None else find_ina3221_rails(root)
        self.unreadable = 0

    def available(self) -> bool:
        return bool(self.rails)

    def read(self) -> dict[str, float] | None:
        """``{rail: mW}`` now, or None when no rail could be read (counted in ``unreadable``)."""
        out: dict[str, float] = {}
        for rail in self.rails:
            if rail.power_mw is not None:
                p = _read_number(rail.power_mw)
            else:
                v, c = _read_number(rail.volt_mv), _read_number(rail.curr_ma)
                p = v * c / 1000.0 if v is not None and c is not None else None
            if p is not None:
                out[rail.name] = p
        if not out:
            self.unreadable += 1
            return None
        return out


class TegrastatsSource:
    """Runs ``tegrastats --interval MS`` and hands out its latest parsed line.

    Lines that carry no rail reading are counted in ``skipped``.
    """

    name = "tegrastats"

    def __init__(self, interval_ms: int = 100, command: Sequence[str] | None = None):
        self.command = list(command or ["tegrastats", "--interval", str(interval_ms)])
        self.skipped = 0
        self._latest: dict[str, float] | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None  # set in start()
        for line in self._proc.stdout:
            rails = parse_tegrastats_line(line)
            if rails is None:
                self.skipped += int(bool(line.strip()))
            else:
                self._latest = rails

    def read(self) -> dict[str, float] | None:
        return self._latest

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._proc = None


# --------------------------------------------------------------------------- sampling


@dataclass
class PowerTrace:
    """Timestamped rail readings (``times`` from the sampler's clock, seconds; values mW)."""

    times: list[float] = field(default_factory=list)
    readings: list[dict[str, float]] = field(default_factory=list)
    skipped: int = 0


def total_mw(
    reading: dict[str, float], rails: Sequence[str] | None = None
) -> tuple[float, list[str]]:
    """The board/module total of one reading and the rails it used (see module docstring)."""
    if rails:
        used = [r for r in rails if r in reading]
        return sum(reading[r] for r in used), used
    for name in TOTAL_RAILS:
        if name in reading:
            return reading[name], [name]
    used = sorted(reading)
    return sum(reading.values()), used


class PowerSampler:
    """Samples a source at a fixed interval in a background thread.

    Example:
        >>> sampler = PowerSampler(Ina3221Source(), interval_s=0.05)   # doctest: +SKIP
        >>> sampler.start(); run_benchmark(); trace = sampler.stop()    # doctest: +SKIP
    """

    def __init__(
        self,
        source: Any,
        interval_s: float = 0.05,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not 0 < interval_s <= 0.1:
            raise ConfigError(
                f"power sampling interval must be in (0, 0.1] s (>= 10 Hz), got {interval_s}."
            )
        self.source = source
        self.interval_s = interval_s
        self.clock = clock
        self.trace = PowerTrace()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if hasattr(self.source, "start"):
            self.source.start()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        next_t = self.clock()
        while not self._stop.is_set():
            reading = self.source.read()
            if reading is None:
                self.trace.skipped += 1
            else:
                self.trace.times.append(self.clock())
                self.trace.readings.append(dict(reading))
            next_t += self.interval_s
            self._stop.wait(max(0.0, next_t - self.clock()))

    def stop(self) -> PowerTrace:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if hasattr(self.source, "stop"):
            self.source.stop()
        self.trace.skipped += int(getattr(self.source, "skipped", 0))
        return self.trace


def energy_mj(
    trace: PowerTrace,
    windows: Sequence[tuple[float, float]],
    rails: Sequence[str] | None = None,
) -> tuple[float, float, int]:
    """Energy (mJ) and covered time (s) of ``trace`` inside ``windows``; also the sample count.

    Each window's power is integrated with the trapezoid rule over the samples inside it, the
    edges held at the nearest sample (a window with no sample inside uses the nearest one).
    """
    if not trace.times:
        return 0.0, 0.0, 0
    totals = [total_mw(r, rails)[0] for r in trace.readings]
    energy, covered, used = 0.0, 0.0, 0
    for t0, t1 in windows:
        if t1 <= t0:
            continue
        idx = [i for i, t in enumerate(trace.times) if t0 <= t <= t1]
        used += len(idx)
        if not idx:
            nearest = min(
                range(len(trace.times)), key=lambda i: abs(trace.times[i] - (t0 + t1) / 2)
            )
            energy += totals[nearest] * (t1 - t0)
            covered += t1 - t0
            continue
        pts = (
            [(t0, totals[idx[0]])]
            + [(trace.times[i], totals[i]) for i in idx]
            + [(t1, totals[idx[-1]])]
        )
        for (ta, pa), (tb, pb) in itertools.pairwise(pts):
            energy += (pa + pb) / 2 * (tb - ta)
        covered += t1 - t0
    return energy, covered, used


def power_summary(
    trace: PowerTrace,
    windows: Sequence[tuple[float, float, int]],
    *,
    idle_w: float | None,
    source: str,
    rails: Sequence[str] | None = None,
) -> dict[str, Any] | None:
    """Mean W, idle-subtracted W and mJ per inference of one configuration.

    Args:
        trace: the sampled readings of the whole run.
        windows: this configuration's timed slices ``(t0, t1, inferences)``.
        idle_w: idle power measured before the run (None: not measured).
        source: ``"ina3221"`` or ``"tegrastats"``.
        rails: rails to sum (default: the board total, see module docstring).

    Returns:
        The JSON ``power`` block, or None when the trace is empty.
    """
    if not trace.readings:
        return None
    energy, covered, used = energy_mj(trace, [(a, b) for a, b, _ in windows], rails)
    n = sum(k for *_, k in windows)
    mean_w = energy / covered / 1000.0 if covered > 0 else None
    _, rail_names = total_mw(trace.readings[0], rails)
    return {
        "source": source,
        "rails": rail_names,
        "rails_seen": sorted(trace.readings[0]),
        "samples": used,
        "skipped": trace.skipped,
        "mean_w": mean_w,
        "idle_w": idle_w,
        "delta_w": mean_w - idle_w if mean_w is not None and idle_w is not None else None,
        "mj_per_inference": energy / n if n else None,
        "note": "on-module rails; carrier board not included"
        if rail_names and rail_names != ["POM_5V_IN"]
        else None,
    }


def open_source(kind: str = "auto", root: str | os.PathLike[str] = "/") -> Any | None:
    """A power source: ``ina3221``, ``tegrastats``, ``auto`` (INA3221 if found, else tegrastats if
    on PATH) or ``off``. Returns None when nothing is available.

    Raises:
        ConfigError: an unknown kind, or an explicitly asked-for source that is absent.
    """
    import shutil

    from edgevae._util.choices import check_choice

    check_choice(kind, ("auto", "ina3221", "tegrastats", "off"), "power source")
    if kind == "off":
        return None
    if kind in ("auto", "ina3221"):
        src = Ina3221Source(root)
        if src.available():
            return src
        if kind == "ina3221":
            raise ConfigError(
                "no INA3221 power monitor under /sys/bus/i2c/devices; use --power tegrastats "
                "or --power off."
            )
    if shutil.which("tegrastats"):
        return TegrastatsSource()
    if kind == "tegrastats":
        raise ConfigError("tegrastats is not on PATH; use --power ina3221 or --power off.")
    return None


def measure_idle(source: Any, seconds: float, interval_s: float = 0.1) -> float | None:
    """Mean idle power (W) over ``seconds`` with nothing running, or None without readings."""
    sampler = PowerSampler(source, interval_s=interval_s)
    sampler.start()
    time.sleep(seconds)
    trace = sampler.stop()
    if not trace.readings:
        return None
    return sum(total_mw(r)[0] for r in trace.readings) / len(trace.readings) / 1000.0
