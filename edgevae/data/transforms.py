"""Preprocessing: the one source of truth for turning stored samples into model inputs.

Training, calibration, export checks, benchmarks and the runtime all go through
:class:`Normalizer`, whose statistics are computed once on the train split and then stored in the
dataset index and in every checkpoint.

* ``video``: uint8 -> float32 in [0, 1] (``x / 255``); float video is used as is.
* ``spectrogram``: per mel bin ``(x - mean) / std`` (statistics over clips and frames).
* ``series``: per dimension ``(x - mean) / std`` (statistics over clips and steps).
* ``vector``: per element ``(x - mean) / std``.
Missing samples (mask 0) are excluded from the statistics and zeroed after normalisation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from edgevae.errors import DatasetError
from edgevae.modalities import ModalityKind, ModalitySet, ModalitySpec

if TYPE_CHECKING:
    from edgevae.data.format import SplitReader

_STD_FLOOR = 1e-3  # a constant feature is not blown up to huge values


def _reduce_axes(spec: ModalitySpec) -> tuple[int, ...]:
    """Sample axes (batch axis 0 included) averaged over; the others keep their own statistic."""
    if spec.kind is ModalityKind.spectrogram:
        return (0, 1, 3)  # (n, 1, mels, frames): one statistic per mel bin
    if spec.kind is ModalityKind.series:
        return (0, 1)  # (n, steps, dims): one per dim
    return (0,)  # vector: one per element


def compute_statistics(split: SplitReader, batch_size: int = 256) -> dict[str, Any]:
    """Per-feature mean/std of every non-video modality over the present samples of ``split``.

    Streams the split in batches (constant memory). Returns ``{name: {"mean": list, "std": list,
    "shape": broadcast shape}}``; video modalities get ``{"scale": 1/255}`` (uint8) or ``{}``.
    """
    stats: dict[str, Any] = {}
    acc: dict[str, list[np.ndarray]] = {}
    counts: dict[str, float] = {}
    specs = list(split.modalities)
    for batch in split.iter_batches(batch_size):
        mask = batch["mask"].astype(bool)
        for i, spec in enumerate(specs):
            if spec.kind is ModalityKind.video:
                continue
            x = batch[spec.name][mask[:, i]].astype(np.float64)
            if not x.size:
                continue
            axes = _reduce_axes(spec)
            s = x.sum(axis=axes, keepdims=True)[0]
            ss = (x * x).sum(axis=axes, keepdims=True)[0]
            n = x.size / s.size
            if spec.name in acc:
                acc[spec.name][0] += s
                acc[spec.name][1] += ss
            else:
                acc[spec.name] = [s, ss]
            counts[spec.name] = counts.get(spec.name, 0.0) + n
    for spec in specs:
        if spec.kind is ModalityKind.video:
            stats[spec.name] = {"scale": 1.0 / 255.0} if spec.dtype == "uint8" else {}
            continue
        if spec.name not in acc:
            raise DatasetError(
                f"modality '{spec.name}' is missing in every train sample; statistics cannot be "
                "computed. Provide at least some present samples."
            )
        s, ss = acc[spec.name]
        n = counts[spec.name]
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite data: refused below
            mean = s / n
            std = np.sqrt(np.maximum(ss / n - mean * mean, 0.0))
        if not np.all(np.isfinite(mean)) or not np.all(np.isfinite(std)):
            raise DatasetError(
                f"modality '{spec.name}' has NaN or Inf values in the train split; clean the data "
                "or mark those samples missing in the mask."
            )
        stats[spec.name] = {
            "shape": list(mean.shape),
            "mean": mean.astype(np.float32).ravel().tolist(),
            "std": np.maximum(std, _STD_FLOOR).astype(np.float32).ravel().tolist(),
        }
    return stats


class Normalizer:
    """Applies stored statistics to raw samples; NumPy and PyTorch versions do the same math.

    Example:
        >>> norm = Normalizer(reader.modalities, reader.normalization)  # doctest: +SKIP
        >>> x = norm.numpy("audio", raw_audio)                          # doctest: +SKIP
    """

    def __init__(self, modalities: ModalitySet, stats: dict[str, Any]):
        self.modalities = modalities
        self.stats = stats
        self._np: dict[str, tuple[np.ndarray, np.ndarray] | float] = {}
        for spec in modalities:
            st = stats.get(spec.name)
            if st is None:
                raise DatasetError(f"no normalisation statistics for modality '{spec.name}'.")
            if spec.kind is ModalityKind.video:
                self._np[spec.name] = float(st.get("scale", 1.0))
            else:
                shape = tuple(st["shape"])
                self._np[spec.name] = (
                    np.asarray(st["mean"], np.float32).reshape(shape),
                    np.asarray(st["std"], np.float32).reshape(shape),
                )

    def numpy(self, name: str, x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Normalise a batch ``(n, *shape)`` of modality ``name``; rows with mask 0 become zeros."""
        p = self._np[name]
        if isinstance(p, float):
            y = x.astype(np.float32) * np.float32(p)
        else:
            y = (x.astype(np.float32) - p[0]) / p[1]
        if mask is not None:
            y = y * mask.astype(np.float32).reshape((-1,) + (1,) * (y.ndim - 1))
        return y

    def denormalize(self, name: str, y: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`numpy` (float32 output, no rounding to the storage dtype)."""
        p = self._np[name]
        if isinstance(p, float):
            return y.astype(np.float32) / np.float32(p)
        return y.astype(np.float32) * p[1] + p[0]

    def batch(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Normalise every modality of a raw batch; ``mask`` becomes float32 (n, M)."""
        mask = raw["mask"].astype(np.float32)
        out = {
            s.name: self.numpy(s.name, raw[s.name], mask[:, i])
            for i, s in enumerate(self.modalities)
        }
        out["mask"] = mask
        return out

    def to_dict(self) -> dict[str, Any]:
        return self.stats
