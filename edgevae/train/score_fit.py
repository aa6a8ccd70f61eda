"""Fit the anomaly-score statistics of a trained model on normal validation data.

The model runs deterministically (``z = mu``) over the validation split; the raw score parts
(per-modality reconstruction error, KL to the prior, cross-modal inconsistency; see
:mod:`edgevae.model.scoring`) of the clips with no anomalous frame are standardised by
:meth:`ScoreStats.fit`. Labels only select the normal clips; nothing is fitted to them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from edgevae.data.format import DatasetReader
from edgevae.data.loader import make_loader
from edgevae.data.transforms import Normalizer
from edgevae.errors import DatasetError, NumericalError
from edgevae.model.scoring import ScoreStats, part_names, raw_parts


@torch.no_grad()
def score_batch(
    model: nn.Module, inputs: dict[str, Tensor], mask: Tensor
) -> tuple[Tensor, Tensor, Any]:
    """One deterministic forward pass -> (raw parts (B, M + 2), effective mask (B, M), output).

    The effective mask is the one the model uses: modalities a baseline ignores count as absent,
    so their reconstruction parts are 0.
    """
    mask = model.effective_mask(mask)
    out = model(inputs, mask)
    names = model.modalities.names
    raw = raw_parts(
        [inputs[n] for n in names],
        [out.recon[n] for n in names],
        mask,
        out.z_mu,
        out.z_logvar,
        out.expert_mu,
        out.expert_logvar,
    )
    return raw, mask, out


def fit_score_stats(
    model: nn.Module,
    reader: DatasetReader,
    normalizer: Normalizer,
    *,
    device: torch.device,
    batch_size: int,
    split: str = "val",
    combine: str = "max",
) -> tuple[ScoreStats, dict[str, Any]]:
    """Fit :class:`ScoreStats` on the normal clips of ``split``.

    Args:
        model: the trained model (put in eval mode here).
        reader: the dataset.
        normalizer: the statistics the model was trained with.
        device: where the model lives.
        batch_size: clips per forward pass.
        split: the split of normal data (``val``).
        combine: the score's combination rule, ``max`` or ``sum`` (stored with the statistics).

    Returns:
        The statistics and a summary ``{"split", "clips", "excluded_labelled"}``.

    Raises:
        DatasetError: the split has no normal clip.
        NumericalError: the model produces NaN/Inf score parts.
    """
    model.eval()
    names = model.modalities.names
    loader = make_loader(reader, split, batch_size, normalizer=normalizer)
    raws, masks, excluded = [], [], 0
    for batch in loader:
        normal = (batch["frame_labels"] == 0).all(dim=1)  # (B,) clips with no anomalous frame
        excluded += int((~normal).sum())
        if not normal.any():
            continue
        inputs = {n: batch[n][normal].to(device) for n in names}
        raw, mask, _ = score_batch(model, inputs, batch["mask"][normal].to(device))
        raws.append(raw.cpu())
        masks.append(mask.cpu())
    if not raws:
        raise DatasetError(
            f"the '{split}' split has no normal clip to fit the score statistics on; add normal "
            "validation data."
        )
    raw = torch.cat(raws).numpy().astype(np.float64)
    mask = torch.cat(masks).numpy()
    if not np.isfinite(raw).all():
        finite = np.isfinite(raw).all(axis=0)
        bad = [p for p, ok in zip(part_names(names), finite, strict=True) if not ok]
        raise NumericalError(
            f"score parts {bad} are NaN/Inf on the '{split}' split; the model diverged, retrain "
            "with a lower --lr."
        )
    stats = ScoreStats.fit(raw, mask, names, combine)
    return stats, {"split": split, "clips": len(raw), "excluded_labelled": excluded}
