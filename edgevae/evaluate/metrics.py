"""Frame-level anomaly metrics and imputation PSNR (pure NumPy + scikit-learn, no torch).

Conventions (``reference/multimodal_vae.md`` §4, the MNAD/ASTNet VAD protocol):

* The model scores a clip; every frame of the clip gets its clip's score (clips are consecutive
  and non-overlapping). A frame is anomalous when its label id is not 0 (``"normal"``).
* **micro** AUROC: all test frames concatenated, one ROC curve.
* **min-max** variants: scores are first normalised within each video,
  ``(s - min) / (max - min)`` (a constant video becomes all zeros), then concatenated.
* **macro** AUROC: the mean of per-video AUROCs over the videos that hold both classes (per-video
  min-max normalisation does not change a per-video AUROC, so macro has one variant).
* **EER**: the point of the ROC curve where the false-positive rate equals the miss rate,
  linearly interpolated between the two curve points around the crossing.
* **per type**: that type's anomalous frames against *all* normal frames (frames of other anomaly
  types are left out).
* A metric that is undefined (only one class present) is ``None`` (``null`` in JSON), never NaN.
* **PSNR** of images in [0, 1]: ``10 * log10(1 / mse)`` per clip (mse floored at 1e-10, i.e. at
  most 100 dB), averaged over clips.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

_MSE_FLOOR = 1e-10


def frame_level(
    clip_scores: np.ndarray, frame_labels: np.ndarray, video_id: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spread clip scores over their frames.

    Args:
        clip_scores: (N,) one score per clip.
        frame_labels: (N, L) anomaly-type id per frame (0 = normal).
        video_id: (N,) video of each clip.

    Returns:
        ``(scores, labels, videos)``, each (N * L,), frames in clip order.
    """
    clip_scores = np.asarray(clip_scores, np.float64).reshape(-1)
    frame_labels = np.asarray(frame_labels)
    if frame_labels.ndim == 1:
        frame_labels = frame_labels[:, None]
    n, frames = frame_labels.shape
    if clip_scores.shape[0] != n or np.asarray(video_id).reshape(-1).shape[0] != n:
        raise ValueError(
            f"clip_scores {clip_scores.shape}, frame_labels {frame_labels.shape} and video_id "
            f"{np.shape(video_id)} must agree on the number of clips."
        )
    return (
        np.repeat(clip_scores, frames),
        frame_labels.reshape(-1).astype(np.int64),
        np.repeat(np.asarray(video_id).reshape(-1), frames),
    )


def minmax_per_video(scores: np.ndarray, videos: np.ndarray) -> np.ndarray:
    """Normalise ``scores`` to [0, 1] within each video (a constant video becomes zeros)."""
    scores = np.asarray(scores, np.float64)
    out = np.zeros_like(scores)
    for v in np.unique(videos):
        sel = videos == v
        s = scores[sel]
        lo, hi = float(s.min()), float(s.max())
        out[sel] = (s - lo) / (hi - lo) if hi > lo else 0.0
    return out


def _two_classes(y: np.ndarray) -> bool:
    return bool(y.any()) and not bool(y.all())


def auroc(scores: np.ndarray, is_anomalous: np.ndarray) -> float | None:
    """Area under the ROC curve, or None when only one class is present."""
    y = np.asarray(is_anomalous, bool)
    if not _two_classes(y):
        return None
    return float(roc_auc_score(y, np.asarray(scores, np.float64)))


def auprc(scores: np.ndarray, is_anomalous: np.ndarray) -> float | None:
    """Average precision (area under the precision-recall curve), or None for one class."""
    y = np.asarray(is_anomalous, bool)
    if not _two_classes(y):
        return None
    return float(average_precision_score(y, np.asarray(scores, np.float64)))


def eer(scores: np.ndarray, is_anomalous: np.ndarray) -> float | None:
    """Equal error rate from the ROC curve (FPR = 1 - TPR), or None for one class.

    Perfect separation gives 0, perfectly reversed scores give 1, random scores about 0.5.
    """
    y = np.asarray(is_anomalous, bool)
    if not _two_classes(y):
        return None
    fpr, tpr, _ = roc_curve(y, np.asarray(scores, np.float64), drop_intermediate=False)
    fnr = 1.0 - tpr
    diff = fpr - fnr  # rises from -1 at (0, 0) to +1 at (1, 1)
    i = int(np.argmax(diff >= 0.0))
    if diff[i] == 0.0 or i == 0:
        return float(fpr[i])
    t = -diff[i - 1] / (diff[i] - diff[i - 1])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def roc_points(scores: np.ndarray, is_anomalous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) of the ROC curve (for plots); two empty arrays when undefined."""
    y = np.asarray(is_anomalous, bool)
    if not _two_classes(y):
        return np.empty(0), np.empty(0)
    fpr, tpr, _ = roc_curve(y, np.asarray(scores, np.float64))
    return fpr, tpr


def macro_auroc(
    scores: np.ndarray, is_anomalous: np.ndarray, videos: np.ndarray
) -> tuple[float | None, int]:
    """Mean per-video AUROC over the videos holding both classes; returns (mean or None, count)."""
    y = np.asarray(is_anomalous, bool)
    values = []
    for v in np.unique(videos):
        sel = videos == v
        a = auroc(scores[sel], y[sel])
        if a is not None:
            values.append(a)
    return (float(np.mean(values)) if values else None), len(values)


def detection_metrics(
    scores: np.ndarray, labels: np.ndarray, videos: np.ndarray, keep: np.ndarray | None = None
) -> dict[str, Any]:
    """All detection metrics of one frame-level problem.

    Args:
        scores: (F,) frame scores (higher = more anomalous).
        labels: (F,) anomaly-type ids (0 = normal).
        videos: (F,) video id per frame.
        keep: optional (F,) boolean filter applied *after* per-video normalisation (per-type
            problems keep normal frames and one type's frames).

    Returns:
        ``{"auroc", "auprc", "eer", "auroc_minmax", "auprc_minmax", "eer_minmax", "auroc_macro",
        "macro_videos", "frames", "anomalous_frames"}``; undefined metrics are None.
    """
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels)
    videos = np.asarray(videos)
    normed = minmax_per_video(scores, videos)
    if keep is not None:
        scores, labels, videos, normed = scores[keep], labels[keep], videos[keep], normed[keep]
    y = labels != 0
    macro, n_videos = macro_auroc(scores, y, videos)
    return {
        "auroc": auroc(scores, y),
        "auprc": auprc(scores, y),
        "eer": eer(scores, y),
        "auroc_minmax": auroc(normed, y),
        "auprc_minmax": auprc(normed, y),
        "eer_minmax": eer(normed, y),
        "auroc_macro": macro,
        "macro_videos": n_videos,
        "frames": int(y.size),
        "anomalous_frames": int(y.sum()),
    }


def detection_report(
    scores: np.ndarray,
    labels: np.ndarray,
    videos: np.ndarray,
    type_names: Sequence[str],
) -> dict[str, Any]:
    """Overall and per-type detection metrics.

    Args:
        scores, labels, videos: frame-level arrays (see :func:`frame_level`).
        type_names: anomaly type names by id (id 0 = ``"normal"``).

    Returns:
        ``{"overall": metrics, "per_type": {name: metrics}}`` with one entry per anomaly type
        that has at least one anomalous frame (see :func:`detection_metrics`).
    """
    labels = np.asarray(labels)
    per_type = {}
    for t, name in enumerate(type_names):
        if t == 0 or not np.any(labels == t):
            continue
        per_type[name] = detection_metrics(
            scores, labels, videos, keep=(labels == 0) | (labels == t)
        )
    return {"overall": detection_metrics(scores, labels, videos), "per_type": per_type}


def auroc_report(
    scores: np.ndarray, labels: np.ndarray, type_names: Sequence[str]
) -> dict[str, Any]:
    """Micro AUROC only, overall and per type: ``{"overall": a, "per_type": {name: a}}``."""
    labels = np.asarray(labels)
    per_type = {}
    for t, name in enumerate(type_names):
        if t == 0 or not np.any(labels == t):
            continue
        keep = (labels == 0) | (labels == t)
        per_type[name] = auroc(np.asarray(scores)[keep], labels[keep] != 0)
    return {"overall": auroc(scores, labels != 0), "per_type": per_type}


def psnr(pred: np.ndarray, target: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Per-sample PSNR in dB: (N, ...) vs (N, ...) -> (N,); ``10 log10(range^2 / mse)``.

    ``pred`` may have fewer leading-sample-independent dims and is broadcast against ``target``
    (e.g. a single mean frame (H, W) against clips (N, T, H, W)).
    """
    target = np.asarray(target, np.float64)
    pred = np.broadcast_to(np.asarray(pred, np.float64), target.shape)
    mse = ((pred - target) ** 2).reshape(target.shape[0], -1).mean(axis=1)
    return 10.0 * np.log10(data_range**2 / np.maximum(mse, _MSE_FLOOR))
