"""``benchmark(artifacts, BenchConfig) -> BenchResult``: every artifact x backend x batch, timed
side by side in one run, with accuracy against the reference and ratios to the baseline.

Order of work: validate everything first (artifacts exist, backends fit, batches fit each model's
or engine's profile, ``--data`` matches the models) so bad input fails in seconds with one line;
then accuracy (outside the timed window), peak memory, the CPU's matmul peak, idle power; then all
configurations timed interleaved (:mod:`edgevae.bench.timing`) while power is sampled; then rows.

The baseline (``--baseline``, default: the first artifact) is measured in the same run; its
outputs are also the accuracy reference. A configuration that raises while running is a ❌ row
with its error; bad input raises :class:`~edgevae.errors.EdgeVAEError` instead.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgevae._util.choices import check_choice
from edgevae.bench import feeds
from edgevae.bench.measure import (
    Conf,
    add_ratios,
    build_row,
    make_projection,
    one_line,
    prepare,
    run_accuracy,
    torch_macs,
)
from edgevae.bench.plan import (
    Pair,
    batch_limits,
    check_batch,
    engine_batch_range,
    load_artifacts,
    plan_pairs,
)
from edgevae.bench.report import LEGEND, SCHEMA
from edgevae.bench.timing import TimingConfig, time_interleaved
from edgevae.errors import ConfigError, EdgeVAEError
from edgevae.runtime.registry import runner_for

BACKENDS = ("torch", "torch-compile", "ort", "trt", "pipeline")
Progress = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class BenchConfig:
    """What to benchmark and how (defaults follow benchmarking.md §"Decisions").

    Args:
        backends: backends to run each artifact on (empty: the artifact's default: ``ort`` for
            .onnx, ``torch`` for a run, ``trt`` for an engine). ``pipeline`` adds pre/post.
        device: ``cpu`` or ``cuda``.
        batches: batch sizes.
        warmup_s, warmup_iters, duration_s, min_iters, round_s, disturbance_threshold, max_redos,
            time_limit_s: see :class:`~edgevae.bench.timing.TimingConfig`.
        threads: intra-op threads for torch and ONNX Runtime (None: library default).
        baseline: artifact the ratios and accuracy refer to (default: the first artifact).
        data: dataset directory for real inputs and AUROC; ``split`` picks its split.
        seed: seed of random feeds.
        accuracy: compare outputs with the baseline; ``accuracy_samples`` inputs are used.
        min_score_sqnr_db: below this SQNR of ``score`` (or of the worst output) a row is ❎.
        power: ``auto``, ``ina3221``, ``tegrastats`` or ``off``; ``idle_s`` of idle power first.
        keep_samples: store raw per-iteration latencies in the result (needed for plots).
        matmul_peak: measure the CPU's FP32 matmul GFLOP/s for the fraction-of-peak column.
        projection: add the Jetson roofline estimate (needs an .onnx artifact).
        runner_options: per backend constructor options, e.g. ``{"ort": {"graph_optimization":
            "extended"}, "torch-compile": {"mode": "max-autotune"}}``.
    """

    backends: tuple[str, ...] = ()
    device: str = "cpu"
    batches: tuple[int, ...] = (1,)
    warmup_s: float = 2.0
    warmup_iters: int = 10
    duration_s: float = 10.0
    min_iters: int = 1000
    round_s: float = 0.5
    disturbance_threshold: float | None = 0.25
    max_redos: int = 3
    time_limit_s: float | None = None
    threads: int | None = None
    baseline: str | None = None
    data: str | None = None
    split: str | None = None
    seed: int = 0
    accuracy: bool = True
    accuracy_samples: int = 256
    min_score_sqnr_db: float = 20.0
    power: str = "auto"
    idle_s: float = 5.0
    keep_samples: bool = True
    matmul_peak: bool = True
    projection: bool = True
    runner_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "backends", tuple(self.backends))
        object.__setattr__(self, "batches", tuple(self.batches))
        for b in self.backends:
            check_choice(b, BACKENDS, "backend")
        check_choice(self.device, ("cpu", "cuda"), "device")
        check_choice(self.power, ("auto", "ina3221", "tegrastats", "off"), "power source")
        if not self.batches or any(not isinstance(b, int) or b < 1 for b in self.batches):
            raise ConfigError(f"batch sizes must be integers >= 1, got {list(self.batches)}.")
        if len(set(self.batches)) != len(self.batches):
            raise ConfigError(f"batch sizes repeat: {list(self.batches)}; list each once.")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(f"threads must be a positive integer, got {self.threads!r}.")
        if self.accuracy_samples < 1:
            raise ConfigError(f"accuracy_samples must be >= 1, got {self.accuracy_samples}.")
        if self.idle_s < 0:
            raise ConfigError(f"idle_s must be >= 0 seconds, got {self.idle_s}.")
        for key in self.runner_options:
            check_choice(key, BACKENDS[:-1], "backend in runner_options")
        self.timing()  # validates the timing fields

    def timing(self) -> TimingConfig:
        return TimingConfig(
            warmup_s=self.warmup_s,
            warmup_iters=self.warmup_iters,
            duration_s=self.duration_s,
            min_iters=self.min_iters,
            round_s=self.round_s,
            disturbance_threshold=self.disturbance_threshold,
            max_redos=self.max_redos,
            time_limit_s=self.time_limit_s,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["backends"], d["batches"] = list(self.backends), list(self.batches)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown bench options {sorted(unknown)}.")
        return cls(**d)


@dataclass
class BenchResult:
    """The result document (schema in :mod:`edgevae.bench.report`)."""

    doc: dict[str, Any]

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.doc["results"]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "failed"]

    def to_dict(self) -> dict[str, Any]:
        return self.doc


def benchmark(
    artifacts: Sequence[str | Path],
    config: BenchConfig,
    progress: Progress | None = None,
    *,
    command: str | None = None,
) -> BenchResult:
    """Benchmark every artifact x backend x batch side by side (see module docstring).

    Args:
        artifacts: ``.onnx`` files, training run directories, ``.plan``/``.engine`` files.
        config: what and how to measure.
        progress: ``progress(event, info)`` for ``setup``, ``accuracy``, ``warmup``, ``round``.
        command: the command line, recorded in the result.

    Returns:
        A :class:`BenchResult` (``doc`` follows :mod:`edgevae.bench.report`'s schema).

    Raises:
        ConfigError: no/missing artifacts, a backend that cannot run an artifact, a fixed batch.
        EngineMismatchError: a batch outside an engine's optimization profile.
        ShapeError: ``--data`` whose modalities do not match a model.
        MissingDependencyError: TensorRT or a CUDA provider asked for but absent.
        DatasetError: an unreadable ``--data`` directory.
    """
    from edgevae.bench.env import capture_environment

    say: Progress = progress or (lambda event, info: None)
    arts, base = load_artifacts([str(a) for a in artifacts], config.baseline)
    pairs = plan_pairs(arts, config.backends)
    data = None
    if config.data is not None:
        say("setup", {"message": f"reading {config.data}"})
        n = max(config.accuracy_samples, *config.batches)
        data = feeds.load_data(config.data, config.split, n)
    for pair in pairs:
        _build_runner(pair, config, data, say)

    notes: list[str] = []
    ref = next((p for p in pairs if p.art is base and p.runner is not None), None)
    if config.accuracy and ref is not None:
        run_accuracy(
            pairs, ref, data, samples=config.accuracy_samples, seed=config.seed, say=say,
            notes=notes,
        )  # fmt: skip
        if data is None:
            notes.append(
                "accuracy compares outputs on random inputs (no --data): SQNR checks numerics "
                "only; pass --data DIR for real inputs and AUROC."
            )

    rng = np.random.default_rng(config.seed)
    confs = [Conf(p, b) for p in pairs for b in config.batches]
    macs: dict[int, int | None] = {}
    for conf in confs:
        say(
            "setup",
            {"message": f"preparing {conf.pair.art.name} ({conf.pair.backend}) b{conf.batch}"},
        )
        prepare(conf, data, config.device, rng)
        if conf.fn is not None:
            key = id(conf.pair.art)
            if key not in macs:
                macs[key] = _macs(conf.pair, rng)
            conf.macs = macs[key]

    env = capture_environment(gpu=config.device == "cuda" or "torch" in sys.modules)
    peak = None
    if config.matmul_peak and config.device == "cpu":
        from edgevae.bench.matmul_peak import measure_matmul_peak

        say("setup", {"message": "measuring this CPU's FP32 matmul peak"})
        peak = measure_matmul_peak(
            threads=config.threads, seconds=min(1.0, max(config.duration_s, 0.1))
        )

    runnable = [c for c in confs if c.fn is not None and c.error is None]
    labels = [f"{c.pair.art.name} {c.pair.backend} b{c.batch}" for c in runnable]

    def timing_progress(event: str, info: dict[str, Any]) -> None:
        say(event, {**info, "label": labels[info["config"]]} if event == "warmup" else info)

    power = _Power(config, say, notes)
    timings = time_interleaved(
        [c.fn for c in runnable],  # type: ignore[misc]
        config.timing(),
        progress=timing_progress,
    )
    power.stop()

    timing_of = {id(c): t for c, t in zip(runnable, timings, strict=True)}
    rows = [
        build_row(
            f"c{i}",
            conf,
            timing_of.get(id(conf)),
            config.timing(),
            device=config.device,
            threads=config.threads,
            min_score_sqnr_db=config.min_score_sqnr_db,
            keep_samples=config.keep_samples,
            peak=peak,
            power=power.summary(timing_of.get(id(conf))),
        )
        for i, conf in enumerate(confs)
    ]
    add_ratios(rows, confs, base)
    projection = make_projection(arts, base, config.batches, notes) if config.projection else None
    doc = {
        "schema": SCHEMA,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "environment": env,
        "config": config.to_dict(),
        "legend": LEGEND,
        "baseline": base.given,
        "data": {"path": data.path, "split": data.split, "clips": len(data)} if data else None,
        "results": rows,
        "matmul_peak": peak,
        "projection": projection,
        "notes": notes,
    }
    return BenchResult(doc)


def _build_runner(
    pair: Pair, config: BenchConfig, data: feeds.DataSample | None, say: Progress
) -> None:
    """Build ``pair.runner`` and check batches and data against it (raises on bad input)."""
    art = pair.art
    if art.kind == "engine":  # the profile is in the manifest: checkable without TensorRT
        limits = engine_batch_range(art.path)
        for b in config.batches:
            if limits is not None:
                check_batch(b, limits, art.given, engine=True)
    say("setup", {"message": f"loading {art.name} ({pair.backend})"})
    inner = pair.inner_backend
    try:
        pair.runner = runner_for(
            art.path, inner, device=config.device, threads=config.threads,
            **config.runner_options.get(inner, {}),
        )  # fmt: skip
    except EdgeVAEError:
        raise
    except Exception as exc:  # a runtime that cannot load this artifact: a ❌ row
        pair.error = one_line(exc)
        return
    limits = batch_limits(pair.runner)
    for b in config.batches:
        check_batch(b, limits, art.given, engine=art.kind == "engine")
    if data is not None:
        feeds.check_data_matches(data, pair.runner.inputs, art.given)
    if pair.backend == "pipeline" and art.modalities is None and data is None:
        raise ConfigError(
            f"--backend pipeline needs the modality specs of '{art.given}' (none in its "
            "manifest); pass --data DIR with the dataset it was trained on."
        )


def _macs(pair: Pair, rng: np.random.Generator) -> int | None:
    if pair.art.kind == "onnx":
        from edgevae.bench.projection import onnx_cost

        return onnx_cost(pair.art.path).macs or None
    if pair.runner is not None:
        return torch_macs(pair.runner, rng)
    return None


class _Power:
    """Idle measurement, then background sampling during the timed run (Jetson only)."""

    def __init__(self, config: BenchConfig, say: Progress, notes: list[str]) -> None:
        from edgevae.bench.power import PowerSampler, measure_idle, open_source

        self.trace = None
        self.sampler = None
        self.idle_w = None
        self.source = open_source(config.power) if config.power != "off" else None
        if self.source is None:
            if config.power != "off":
                notes.append("power not sampled: no INA3221 monitor or tegrastats here.")
            return
        if config.idle_s > 0:
            say("setup", {"message": f"measuring idle power for {config.idle_s:g} s"})
            self.idle_w = measure_idle(self.source, config.idle_s)
        self.sampler = PowerSampler(self.source, interval_s=0.05)
        self.sampler.start()

    def stop(self) -> None:
        if self.sampler is not None:
            self.trace = self.sampler.stop()

    def summary(self, timing: Any) -> dict[str, Any] | None:
        if self.trace is None or timing is None or timing.error:
            return None
        from edgevae.bench.power import power_summary

        return power_summary(
            self.trace, timing.windows, idle_w=self.idle_w, source=self.source.name
        )
