"""Evaluation figures (matplotlib, Agg canvas; no pyplot state, no display needed).

* :func:`plot_roc`: ROC curves, overall (raw and per-video min-max) and per anomaly type.
* :func:`plot_timeline`: frame score over test videos, anomalous segments shaded by type.
* :func:`plot_reconstruction`: one clip, per modality: original / reconstructed (all present) /
  imputed (that modality masked out, rebuilt from the others).

Every function writes one PNG atomically and returns its path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from edgevae._util.artifacts import atomic_path
from edgevae.evaluate import metrics
from edgevae.modalities import ModalityKind, ModalitySet, ModalitySpec

_DPI = 110


def type_colors(type_names: Sequence[str]) -> dict[int, tuple[float, ...]]:
    """A fixed colour per anomaly type id (tab10, id 0 = normal is grey)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    colors = {0: (0.5, 0.5, 0.5, 1.0)}
    for t in range(1, len(type_names)):
        colors[t] = cmap((t - 1) % 10)
    return colors


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)
    return Path(path)


def plot_roc(
    scores: np.ndarray,
    labels: np.ndarray,
    videos: np.ndarray,
    type_names: Sequence[str],
    path: str | os.PathLike[str],
    title: str = "",
) -> Path:
    """ROC curves: left overall (micro, raw and per-video min-max), right one curve per type.

    Args:
        scores, labels, videos: frame-level arrays (see :func:`metrics.frame_level`).
        type_names: anomaly type names by id.
        path: PNG to write.
        title: figure title.
    """
    labels = np.asarray(labels)
    fig = Figure(figsize=(11, 5), layout="constrained")
    ax_all, ax_type = fig.subplots(1, 2)
    y = labels != 0
    normed = metrics.minmax_per_video(scores, videos)
    for s, name, style in ((scores, "raw", "-"), (normed, "per-video min-max", "--")):
        fpr, tpr = metrics.roc_points(s, y)
        if fpr.size:
            ax_all.plot(fpr, tpr, style, label=f"{name} (AUROC {metrics.auroc(s, y):.3f})")
    colors = type_colors(type_names)
    for t, name in enumerate(type_names):
        keep = (labels == 0) | (labels == t)
        if t == 0 or not np.any(labels == t):
            continue
        s, yt = np.asarray(scores)[keep], labels[keep] != 0
        fpr, tpr = metrics.roc_points(s, yt)
        if fpr.size:
            ax_type.plot(fpr, tpr, color=colors[t], label=f"{name} ({metrics.auroc(s, yt):.3f})")
    for ax, sub in ((ax_all, "overall (micro, frame level)"), (ax_type, "per anomaly type (raw)")):
        ax.plot([0, 1], [0, 1], ":", color="0.6", linewidth=1)
        ax.set(
            xlim=(0, 1),
            ylim=(0, 1.01),
            xlabel="false positive rate",
            ylabel="true positive rate",
            title=sub,
            aspect="equal",
        )
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """Contiguous runs of equal non-zero labels: (start, stop, label)."""
    runs, start = [], 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            if labels[start] != 0:
                runs.append((start, i, int(labels[start])))
            start = i
    return runs


def plot_timeline(
    scores: np.ndarray,
    labels: np.ndarray,
    videos: np.ndarray,
    type_names: Sequence[str],
    path: str | os.PathLike[str],
    max_videos: int = 6,
    title: str = "",
) -> Path:
    """Frame score over time, one row per video, anomalous segments shaded by type.

    Args:
        scores, labels, videos: frame-level arrays, frames of each video in time order.
        type_names: anomaly type names by id.
        path: PNG to write.
        max_videos: rows to draw; videos with the most anomaly types come first, then by id.
        title: figure title.
    """
    labels = np.asarray(labels)
    videos = np.asarray(videos)
    ids = np.unique(videos)
    variety = {int(v): len(np.unique(labels[videos == v])) for v in ids}
    chosen = sorted(ids.tolist(), key=lambda v: (-variety[int(v)], v))[: max(1, max_videos)]
    chosen.sort()
    colors = type_colors(type_names)
    fig = Figure(figsize=(12, 1.6 * len(chosen) + 0.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(chosen), 1, squeeze=False)[:, 0])
    seen: set[int] = set()
    for ax, v in zip(axes, chosen, strict=True):
        sel = videos == v
        s, lab = np.asarray(scores)[sel], labels[sel]
        for start, stop, t in _runs(lab):
            ax.axvspan(start - 0.5, stop - 0.5, color=colors[t], alpha=0.3, linewidth=0)
            seen.add(t)
        ax.plot(np.arange(len(s)), s, color="black", linewidth=0.9)
        ax.set_ylabel(f"video {v}", fontsize=8)
        ax.set_xlim(-0.5, len(s) - 0.5)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.25)
    axes[-1].set_xlabel("frame")
    handles = [Patch(color=colors[t], alpha=0.4, label=type_names[t]) for t in sorted(seen)]
    if handles:
        fig.legend(
            handles=handles, loc="outside lower center", fontsize=8, ncol=min(len(handles), 7)
        )
    fig.suptitle(title or "anomaly score per frame (shaded: labelled anomalies)", fontsize=10)
    return _save(fig, path)


def strip_frames(frames: int, n_frames: int = 4) -> np.ndarray:
    """Indices of the evenly spaced frames a video strip shows."""
    return np.unique(np.linspace(0, frames - 1, min(n_frames, frames)).round().astype(int))


def _video_strip(spec: ModalitySpec, clip: np.ndarray, n_frames: int = 4) -> np.ndarray:
    """(T*C, H, W) in [0, 1] -> evenly spaced frames side by side, (H, k*W) or (H, k*W, 3)."""
    c = spec.channels
    t = clip.shape[0] // c
    frames = clip.reshape(t, c, *clip.shape[1:])
    idx = strip_frames(t, n_frames)
    tiles = [frames[i].transpose(1, 2, 0) if c == 3 else frames[i, 0] for i in idx]
    gap = np.ones((clip.shape[1], 2, 3) if c == 3 else (clip.shape[1], 2))
    out = [tiles[0]]
    for tile in tiles[1:]:
        out += [gap, tile]
    return np.clip(np.concatenate(out, axis=1), 0.0, 1.0)


def plot_reconstruction(
    modalities: ModalitySet,
    original: Mapping[str, np.ndarray],
    reconstructed: Mapping[str, np.ndarray],
    imputed: Mapping[str, np.ndarray],
    path: str | os.PathLike[str],
    title: str = "",
    frame_labels: np.ndarray | None = None,
    type_names: Sequence[str] | None = None,
) -> Path:
    """One clip per modality: original / reconstructed / imputed from the other modalities.

    Args:
        modalities: the specs (row order).
        original, reconstructed, imputed: ``{name: one sample (*shape)}``; video in [0, 1],
            other kinds in the normalised space. A modality absent from ``imputed`` shows an
            empty cell.
        path: PNG to write.
        title: figure title.
        frame_labels: optional (L,) anomaly-type ids of the clip's frames; the title then names
            the frames shown and the labelled ones.
        type_names: anomaly type names by id (with ``frame_labels``).
    """
    videos = [s for s in modalities if s.kind is ModalityKind.video]
    if videos:
        shown = strip_frames(videos[0].frames)
        title += ("\n" if title else "") + f"video frames shown: {', '.join(map(str, shown))}"
        if frame_labels is not None and np.any(frame_labels):
            labelled = np.nonzero(np.asarray(frame_labels))[0]
            kinds = sorted({int(frame_labels[i]) for i in labelled})
            names = ", ".join(type_names[k] if type_names else str(k) for k in kinds)
            title += f"; labelled {names}: frames {', '.join(map(str, labelled))}"
    cols = ("original", "reconstructed", "imputed from the others")
    fig = Figure(figsize=(13, 1.5 * len(modalities) + 0.6), layout="constrained")
    axes = fig.subplots(len(modalities), 3, squeeze=False)
    for row, spec in zip(axes, modalities, strict=True):
        panels = [d.get(spec.name) for d in (original, reconstructed, imputed)]
        present = [np.asarray(p, np.float64) for p in panels if p is not None]
        lo = min(float(p.min()) for p in present)
        hi = max(float(p.max()) for p in present)
        for ax, panel in zip(row, panels, strict=True):
            ax.tick_params(labelsize=6)
            if panel is None:
                ax.axis("off")
                continue
            x = np.asarray(panel, np.float64)
            if spec.kind is ModalityKind.video:
                ax.imshow(_video_strip(spec, x), cmap="gray", vmin=0.0, vmax=1.0)
                ax.set(xticks=[], yticks=[])
            elif spec.kind is ModalityKind.spectrogram:
                ax.imshow(x[0], origin="lower", aspect="auto", cmap="magma", vmin=lo, vmax=hi)
            elif spec.kind is ModalityKind.series:
                ax.plot(x[:, : min(x.shape[1], 8)], linewidth=0.8)
                ax.set_ylim(lo - 0.05 * (hi - lo + 1e-9), hi + 0.05 * (hi - lo + 1e-9))
            else:
                ax.plot(x, linewidth=0.8)
                ax.set_ylim(lo - 0.05 * (hi - lo + 1e-9), hi + 0.05 * (hi - lo + 1e-9))
        row[0].set_ylabel(f"{spec.name}\n({spec.kind.value})", fontsize=8)  # type: ignore[union-attr]
    for ax, name in zip(axes[0], cols, strict=True):
        ax.set_title(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)
