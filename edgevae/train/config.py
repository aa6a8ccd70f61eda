"""Training configuration: one frozen, validated, serialisable dataclass.

Example:
    >>> cfg = TrainConfig(epochs=5, batch_size=16)
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from edgevae._util.choices import check_choice
from edgevae.errors import ConfigError
from edgevae.model.score_rules import check_combine

if TYPE_CHECKING:
    import torch

SCHEDULES = ("constant", "cosine")
BACKENDS = ("auto", "gloo", "nccl")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")

# Keys that may change when a run is resumed: they decide how long or where it runs, not what it
# computes. Every other key must match the stored configuration.
# ``batch_size`` is the global batch and is NOT resumable, so a run resumed on another number of
# processes computes the same steps.
RESUMABLE_KEYS = frozenset(
    {"epochs", "device", "max_minutes", "num_workers", "backend", "score_combine"}
)


@dataclass(frozen=True)
class TrainConfig:
    """How to train (the model itself is described by ``ModelConfig``).

    Args:
        epochs: passes over the train split (the upper bound; early stopping may end sooner).
        batch_size: clips per optimiser step: the global batch, summed over data-parallel
            processes (each of N processes takes ``batch_size / N``), so results do not change
            with N.
        lr: AdamW peak learning rate.
        weight_decay: AdamW decoupled weight decay.
        schedule: ``constant`` or ``cosine`` (decay to ``min_lr_fraction * lr`` at the last step).
        warmup_steps: linear learning-rate warm-up steps (0 = none).
        min_lr_fraction: final learning rate of the cosine schedule, as a fraction of ``lr``.
        grad_clip: clip the global gradient norm to this value (0 = no clipping).
        seed: seeds weight initialisation, data order and the loss's random subsets/noise.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        patience: stop after this many epochs without a validation improvement (0 = never).
        min_delta: smallest validation-loss decrease that counts as an improvement.
        max_minutes: wall-clock budget for this invocation; training stops at the first step
            boundary past it, validates and checkpoints (resumable). None = no budget.
        num_workers: DataLoader worker processes.
        eval_batch_size: batch size for validation and score fitting (default: ``batch_size``).
        backend: data-parallel communication: ``gloo`` (CPU), ``nccl`` (CUDA GPUs) or ``auto``
            (``nccl`` when the device is a GPU, else ``gloo``); unused by a single process.
        score_combine: how the fitted anomaly score combines its standardised parts: ``max``
            (the largest part) or ``sum`` (:mod:`edgevae.model.score_rules`). Only the score
            statistics fitted at the end depend on it.

    Raises:
        ConfigError: on any invalid value, naming the field and the valid range.
    """

    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    min_lr_fraction: float = 0.1
    grad_clip: float = 5.0
    seed: int = 0
    device: str = "auto"
    patience: int = 5
    min_delta: float = 0.0
    max_minutes: float | None = None
    num_workers: int = 0
    eval_batch_size: int | None = None
    backend: str = "auto"
    score_combine: str = "max"

    def __post_init__(self) -> None:
        _positive_int(self, "epochs")
        _positive_int(self, "batch_size")
        _non_negative_int(self, "warmup_steps")
        _non_negative_int(self, "seed")
        _non_negative_int(self, "patience")
        _non_negative_int(self, "num_workers")
        if self.eval_batch_size is not None:
            _positive_int(self, "eval_batch_size")
        _finite(self, "lr", lower=0.0, inclusive=False)
        _finite(self, "weight_decay", lower=0.0)
        _finite(self, "grad_clip", lower=0.0)
        _finite(self, "min_delta", lower=0.0)
        _finite(self, "min_lr_fraction", lower=0.0)
        if self.min_lr_fraction > 1.0:
            raise ConfigError(f"min_lr_fraction must be in [0, 1], got {self.min_lr_fraction}.")
        if self.max_minutes is not None:
            _finite(self, "max_minutes", lower=0.0, inclusive=False)
        check_choice(self.schedule, SCHEDULES, "learning-rate schedule")
        check_choice(self.backend, BACKENDS, "distributed backend")
        check_combine(self.score_combine)
        if not isinstance(self.device, str) or not _DEVICE_RE.match(self.device):
            raise ConfigError(
                f"invalid device {self.device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'."
            )

    @property
    def eval_batch(self) -> int:
        """Batch size used for validation and score fitting."""
        return self.eval_batch_size or self.batch_size

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; :meth:`from_dict` inverts it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from :meth:`to_dict` output; unknown keys are a ConfigError (typo protection)."""
        if not isinstance(d, dict):
            raise ConfigError(f"a train config must be a JSON object, got {type(d).__name__}.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(
                f"unknown train config keys {unknown}; valid keys: {', '.join(sorted(known))}."
            )
        return cls(**d)


def config_differences(
    stored: dict[str, Any], requested: dict[str, Any], ignore: frozenset[str] = frozenset()
) -> list[str]:
    """``"key (stored X, given Y)"`` for every key whose value differs, in sorted key order."""
    diffs = []
    for key in sorted(set(stored) | set(requested)):
        if key in ignore:
            continue
        a, b = stored.get(key, "<absent>"), requested.get(key, "<absent>")
        if _normalise(a) != _normalise(b):
            diffs.append(f"{key} (stored {a!r}, given {b!r})")
    return diffs


def _normalise(value: Any) -> Any:
    # JSON turns tuples into lists; compare them as equal.
    if isinstance(value, tuple | list):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    return value


def resolve_device(name: str) -> torch.device:
    """Turn a device name into a ``torch.device``, checking that it exists here.

    Raises:
        ConfigError: ``cuda`` requested on a machine without a usable CUDA device.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device '{name}' requested but CUDA is not available in this PyTorch "
                f"({torch.__version__}); use --device cpu or install a CUDA build of torch."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device '{name}' does not exist: {torch.cuda.device_count()} CUDA device(s) here."
            )
    return device


def _positive_int(cfg: TrainConfig, name: str) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}.")


def _non_negative_int(cfg: TrainConfig, name: str) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be a non-negative integer, got {value!r}.")


def _finite(cfg: TrainConfig, name: str, lower: float, inclusive: bool = True) -> None:
    value = getattr(cfg, name)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = value >= lower if inclusive else value > lower
    if not ok:
        bound = f">= {lower}" if inclusive else f"> {lower}"
        raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}.")
