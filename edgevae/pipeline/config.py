"""``PipelineConfig``: what ``edgevae pipeline`` runs; the budgets of the default and quick runs.

>>> PipelineConfig(quick=True).resolved().data_preset
'tiny'
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from edgevae._util.choices import check_choice
from edgevae.errors import ConfigError

MODEL_PRESETS = ("nano", "small", "base")
DATA_PRESETS = ("tiny", "default")

# (default run, quick run). The default run must finish in 15 minutes on a 2-core CPU and the quick
# one in 3: training gets what the other stages leave (measured: synth 20 s, eval 60 s, export 25 s,
# quantize + gates 60 s, bench 90 s on the default data).
_BUDGETS = {
    "data_preset": ("default", "tiny"),
    "train_minutes": (9.0, 0.5),
    "epochs": (34, 4),  # the cosine schedule decays over these
    "bench_seconds": (4.0, 0.5),
    "batches": ((1, 8), (1,)),
    "calibration_samples": (256, 64),
    "imputation_clips": (256, 32),
}


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of ``edgevae pipeline``; ``None`` fields take the default or quick budget.

    Args:
        preset: model size (``nano``, ``small``, ``base``).
        quick: the CI-sized run (tiny data, short training and benchmarks).
        data_preset: built-in benchmark preset (``tiny`` or ``default``).
        train_minutes: training time budget (stops at a step boundary, checkpointed).
        epochs: maximum training epochs.
        bench_seconds: timed seconds per benchmark configuration.
        batches: benchmark batch sizes.
        calibration_samples: INT8 calibration clips.
        imputation_clips: clips used for imputation PSNR in the evaluation.
        threads: intra-op threads for the benchmarks (None: every core).
        seed: data and training seed.
        device: training/eval device (``cpu``, ``cuda``, ``auto``).

    Raises:
        ConfigError: an invalid value, naming the field.
    """

    preset: str = "nano"
    quick: bool = False
    data_preset: str | None = None
    train_minutes: float | None = None
    epochs: int | None = None
    bench_seconds: float | None = None
    batches: tuple[int, ...] | None = None
    calibration_samples: int | None = None
    imputation_clips: int | None = None
    threads: int | None = None
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_choice(self.preset, MODEL_PRESETS, "model preset")
        if self.data_preset is not None:
            check_choice(self.data_preset, DATA_PRESETS, "data preset")
        check_choice(self.device, ("cpu", "cuda", "auto"), "device")
        for name in ("train_minutes", "bench_seconds"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"pipeline {name} must be > 0, got {value!r}.")
        for name in ("epochs", "calibration_samples", "imputation_clips", "threads"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigError(f"pipeline {name} must be a positive integer, got {value!r}.")
        if self.batches is not None:
            object.__setattr__(self, "batches", tuple(self.batches))
            if not self.batches or any(not isinstance(b, int) or b < 1 for b in self.batches):
                raise ConfigError(f"batch sizes must be integers >= 1, got {self.batches!r}.")

    def resolved(self) -> PipelineConfig:
        """A copy with every ``None`` budget replaced by the default or quick value."""
        col = 1 if self.quick else 0
        changes: dict[str, Any] = {
            name: values[col] for name, values in _BUDGETS.items() if getattr(self, name) is None
        }
        if self.threads is None:
            changes["threads"] = os.cpu_count() or 1
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.batches is not None:
            d["batches"] = list(self.batches)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PipelineConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a ConfigError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown pipeline keys {unknown}; valid keys: {sorted(known)}.")
        return cls(**d)
