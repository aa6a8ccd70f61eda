"""Anomaly score components and their standardisation (DESIGN §4).

Parts, in this order (P = M + 2), all from one forward pass::

    recon_<m>     mean squared error of modality m's reconstruction (normalised inputs), per sample
    kl_prior      KL(q(z | X_S) || N(0, I))
    cross_modal   mean over present experts of KL(q_m || PoE of the other present experts)

Each part is standardised with statistics of *normal validation data only*:
``part_p = (raw_p - mean_p) / std_p``; a missing modality's recon part is 0 (it is imputed, not
observed). The parts are combined by the rule stored with the statistics (``ScoreStats.combine``):

* ``sum``: ``score = sum_p weight_p * part_p`` (DESIGN §4 as first proposed; runs saved before the
  rule existed load as ``sum``);
* ``max``: ``score = max_p weight_p * part_p`` over the parts that count (a missing modality's
  recon part does not). An anomaly usually shows in one or two parts; the sum adds every other
  part's noise to it and lets a part below its normal mean cancel one above. Measured on the
  reference nano run: frame AUROC 0.752 (sum) -> 0.782 (max), the default for new runs
  (``benchmarks/baselines/results/ablation.md``).

The CUDA kernel ``kernels/anomaly_score`` and the exported graphs implement this same math; this
module is their reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from edgevae.model.fusion import cross_modal_kl, kl_to_prior
from edgevae.model.score_rules import COMBINE_RULES, MAX_EXCLUDED, check_combine


def part_names(modality_names: Sequence[str]) -> list[str]:
    """Names of the score parts, in ``score_parts`` column order."""
    return [f"recon_{n}" for n in modality_names] + ["kl_prior", "cross_modal"]


def recon_errors(inputs: Sequence[Tensor], recons: Sequence[Tensor]) -> Tensor:
    """Per-sample MSE per modality: M tensors (B, ...) each -> (B, M)."""
    errs = [
        (x.float() - r.float()).pow(2).flatten(1).mean(dim=1)
        for x, r in zip(inputs, recons, strict=True)
    ]
    return torch.stack(errs, dim=1)


def raw_parts(
    inputs: Sequence[Tensor],
    recons: Sequence[Tensor],
    mask: Tensor,
    z_mu: Tensor,
    z_logvar: Tensor,
    expert_mu: Tensor,
    expert_logvar: Tensor,
) -> Tensor:
    """Unstandardised parts (B, M + 2): recon errors (0 where missing), KL to prior, cross-modal."""
    mask = mask.float()
    errs = recon_errors(inputs, recons) * mask  # (B, M)
    kl = kl_to_prior(z_mu.float(), z_logvar.float())  # (B,)
    cm = cross_modal_kl(expert_mu, expert_logvar, mask)  # (B, M)
    n_present = mask.sum(dim=1).clamp(min=1.0)
    return torch.cat([errs, kl[:, None], (cm.sum(dim=1) / n_present)[:, None]], dim=1)


def standardize(
    raw: Tensor, mask: Tensor, mean: Tensor, std: Tensor, weight: Tensor, combine: str = "sum"
) -> tuple[Tensor, Tensor]:
    """(B, P) raw parts -> score (B,), parts (B, P); missing modalities' recon parts are 0.

    ``combine`` is ``sum`` or ``max`` (module docstring); under ``max`` a missing modality's part
    is excluded (it would otherwise floor the score at 0).
    """
    m = mask.shape[1]
    parts = (raw - mean) / std
    keep = torch.cat([mask.float(), torch.ones_like(raw[:, m:])], dim=1)  # (B, P)
    parts = parts * keep
    return combine_parts(parts, keep, weight, combine), parts


def combine_parts(parts: Tensor, keep: Tensor, weight: Tensor, combine: str) -> Tensor:
    """Standardised parts (B, P), 0/1 ``keep`` (B, P), weights (P,) -> score (B,).

    Written with ops every backend has (``Where`` + ``ReduceMax`` in ONNX); the excluded parts
    get :data:`MAX_EXCLUDED`, a finite stand-in for minus infinity.
    """
    weighted = parts * weight  # (B, P)
    if check_combine(combine) == "sum":
        return weighted.sum(dim=1)
    excluded = torch.full_like(weighted, MAX_EXCLUDED)
    return torch.where(keep > 0, weighted, excluded).amax(dim=1)


@dataclass
class ScoreStats:
    """Standardisation statistics of the score parts, fitted on normal validation data only."""

    names: list[str]
    mean: list[float]
    std: list[float]
    weight: list[float]
    combine: str = "sum"

    def __post_init__(self) -> None:
        check_combine(self.combine)

    @classmethod
    def identity(cls, modality_names: Sequence[str], combine: str = "sum") -> ScoreStats:
        names = part_names(modality_names)
        p = len(names)
        return cls(names, [0.0] * p, [1.0] * p, [1.0] * p, combine)

    @classmethod
    def fit(
        cls,
        raw: np.ndarray,
        mask: np.ndarray,
        modality_names: Sequence[str],
        combine: str = "max",
    ) -> ScoreStats:
        """Fit per-part mean/std on raw parts (N, P) of normal data; recon parts only where present.

        Weights are 1 for every part; the parts are already on a common (standardised) scale.
        ``combine`` is the rule the score uses (``max`` unless asked otherwise; module docstring).
        """
        m = len(modality_names)
        mean, std = [], []
        for p in range(raw.shape[1]):
            col = raw[:, p] if p >= m else raw[mask[:, p] > 0, p]
            if col.size == 0:
                col = np.zeros(1)
            mean.append(float(np.mean(col)))
            std.append(float(max(np.std(col), 1e-6)))
        return cls(part_names(modality_names), mean, std, [1.0] * raw.shape[1], combine)

    def tensors(self, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor, Tensor]:
        f = lambda v: torch.tensor(v, dtype=torch.float32, device=device)  # noqa: E731
        return f(self.mean), f(self.std), f(self.weight)

    def to_dict(self) -> dict[str, list]:
        return {
            "names": self.names,
            "mean": self.mean,
            "std": self.std,
            "weight": self.weight,
            "combine": self.combine,
        }

    @classmethod
    def from_dict(cls, d: dict[str, list]) -> ScoreStats:
        """Statistics from :meth:`to_dict`; without ``combine`` (saved before it existed): sum."""
        return cls(
            list(d["names"]),
            list(d["mean"]),
            list(d["std"]),
            list(d["weight"]),
            str(d.get("combine", "sum")),
        )

    @property
    def combine_code(self) -> int:
        """The rule as the kernels' integer ``combine`` argument (0 sum, 1 max)."""
        return COMBINE_RULES.index(self.combine)
