"""How the standardised score parts become one score: the rule names and their NumPy reference.

Torch-free on purpose: the TensorRT tooling and the analysis backend read the rule from export
metadata without importing PyTorch. The PyTorch implementation (what the exported graphs contain)
is :func:`edgevae.model.scoring.combine_parts`; the CUDA kernels take the rule's index in
:data:`COMBINE_RULES` as their integer ``combine`` argument.

* ``sum``: ``score = sum_p weight_p * part_p`` over all parts (a missing modality's part is 0).
* ``max``: ``score = max_p weight_p * part_p`` over the parts that count (a missing modality's
  reconstruction part does not).
"""

from __future__ import annotations

import numpy as np

from edgevae._util.choices import check_choice

#: Score combination rules; a rule's position is the kernels' integer ``combine`` argument.
COMBINE_RULES: tuple[str, ...] = ("sum", "max")
#: Stands in for "minus infinity" for parts that do not count under ``max``: finite, so FP16 and
#: INT8 engines represent it, and far below any standardised part.
MAX_EXCLUDED = -1.0e4


def check_combine(rule: str) -> str:
    """``rule`` if it is a known combination rule, else a ConfigError naming the valid ones."""
    return check_choice(rule, COMBINE_RULES, "score combination rule")


def combine_numpy(parts: np.ndarray, keep: np.ndarray, weight: np.ndarray, rule: str) -> np.ndarray:
    """Standardised parts (B, P), 0/1 ``keep`` (B, P), weights (P,) -> float32 score (B,)."""
    weighted = np.asarray(parts, np.float32) * np.asarray(weight, np.float32)  # (B, P)
    if check_combine(rule) == "sum":
        return weighted.sum(axis=1, dtype=np.float32)
    return np.where(np.asarray(keep) > 0, weighted, np.float32(MAX_EXCLUDED)).max(axis=1)
