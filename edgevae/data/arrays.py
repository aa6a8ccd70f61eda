"""Write an edgevae dataset from a user's own NumPy arrays."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from edgevae.data.format import DatasetWriter
from edgevae.errors import ConfigError, ShapeError
from edgevae.modalities import ModalitySet, ModalitySpec


def _infer_spec(name: str, a: np.ndarray) -> ModalitySpec:
    # (n, dim) -> vector; (n, steps, dims) -> series; (n, T, H, W) uint8 -> video;
    # (n, 1, mels, frames) float -> spectrogram
    if a.ndim == 2:
        return ModalitySpec(name, "vector", a.shape[1:])
    if a.ndim == 3:
        return ModalitySpec(name, "series", a.shape[1:])
    if a.ndim == 4 and a.dtype == np.uint8:
        return ModalitySpec(name, "video", a.shape[1:], dtype="uint8")
    if a.ndim == 4 and a.shape[1] == 1:
        return ModalitySpec(name, "spectrogram", a.shape[1:])
    raise ConfigError(
        f"cannot infer the kind of modality '{name}' from shape {a.shape} and dtype {a.dtype}; "
        "pass specs=[ModalitySpec(...)] explicitly."
    )


def from_arrays(
    out: str | os.PathLike[str],
    splits: Mapping[str, Mapping[str, np.ndarray]],
    *,
    specs: Sequence[ModalitySpec] | None = None,
    masks: Mapping[str, np.ndarray] | None = None,
    frame_labels: Mapping[str, np.ndarray] | None = None,
    video_ids: Mapping[str, np.ndarray] | None = None,
    anomaly_types: Sequence[str] = ("normal", "anomaly"),
    overwrite: bool = False,
) -> Path:
    """Write a dataset from in-memory arrays of any modality kinds.

    Args:
        out: dataset directory to create.
        splits: ``{"train": {name: (n, *shape)}, "val": {...}, "test": {...}}``; train is required.
        specs: modality specs in mask order; inferred from the train arrays when omitted
            (2-D -> vector, 3-D -> series, 4-D uint8 -> video, 4-D float (n,1,m,f) -> spectrogram).
        masks: per split ``(n, M)`` with 1 = present. Without one, a sample whose array holds any
            NaN is marked missing. Missing entries are stored as zeros.
        frame_labels: per split ``(n,)`` or ``(n, L)`` anomaly-type ids (0 = normal).
        video_ids: per split ``(n,)`` video ids (default: one video per split).
        anomaly_types: names for label ids, starting with ``"normal"``.
        overwrite: replace a non-empty ``out``.

    Returns:
        The dataset path.

    Raises:
        ConfigError, ShapeError, DatasetError: unusable arrays, with what to fix.

    Example:
        >>> views = {f"view{i}": np.random.rand(100, 16).astype("float32") for i in range(6)}
        >>> from_arrays(tmp / "ds", {"train": views})  # doctest: +SKIP
    """
    if "train" not in splits:
        raise ConfigError("from_arrays needs a 'train' split (statistics are computed on it).")
    train = splits["train"]
    if specs is None:
        specs = [_infer_spec(k, np.asarray(v)) for k, v in train.items()]
    modalities = ModalitySet(specs)
    label_frames = 1
    if frame_labels:
        label_frames = max(
            np.asarray(v).reshape(len(v), -1).shape[1] for v in frame_labels.values()
        )
    with DatasetWriter(
        out,
        modalities,
        anomaly_types=anomaly_types,
        label_frames=label_frames,
        meta={"source": "from_arrays"},
        overwrite=overwrite,
    ) as writer:
        for split, arrays in splits.items():
            extra = set(arrays) - set(modalities.names)
            if extra:
                raise ShapeError(f"split '{split}' has arrays {sorted(extra)} not in the specs.")
            missing_arrays = [s.name for s in modalities if s.name not in arrays]
            if missing_arrays:
                raise ShapeError(f"split '{split}' lacks arrays for {missing_arrays}.")
            lengths = {k: len(v) for k, v in arrays.items()}
            if len(set(lengths.values())) != 1:
                raise ShapeError(f"split '{split}': arrays differ in length {lengths}.")
            n = next(iter(lengths.values()))
            if masks and split in masks:
                mask = np.asarray(masks[split]).astype(np.uint8)
            else:
                mask = np.stack(
                    [
                        ~np.isnan(np.asarray(arrays[s.name], np.float64).reshape(n, -1)).any(axis=1)
                        for s in modalities
                    ],
                    axis=1,
                ).astype(np.uint8)
            if mask.shape != (n, len(modalities)):
                raise ShapeError(
                    f"split '{split}': mask must be ({n}, {len(modalities)}), got {mask.shape}."
                )
            clean = {}
            for i, s in enumerate(modalities):
                a = np.array(arrays[s.name], copy=True)
                present = mask[:, i].astype(bool)
                if np.issubdtype(a.dtype, np.floating):
                    bad = ~np.isfinite(a.reshape(n, -1)).all(axis=1) & present
                    if bad.any():
                        raise ShapeError(
                            f"split '{split}', modality '{s.name}': {int(bad.sum())} samples "
                            "marked present hold NaN/Inf; fix them or set their mask to 0."
                        )
                    a[~present] = 0
                clean[s.name] = a
            labels = None
            if frame_labels and split in frame_labels:
                labels = np.asarray(frame_labels[split]).reshape(n, -1)
                labels = np.broadcast_to(labels, (n, label_frames))
            vid = video_ids[split] if video_ids and split in video_ids else 0
            writer.add(split, clean, mask=mask, frame_labels=labels, video_id=vid)
    return Path(out)
