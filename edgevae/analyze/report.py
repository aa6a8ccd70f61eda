"""Analysis outputs that summarise a whole run: flagged segments and the timeline plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgevae._util.artifacts import atomic_path


def flagged_segments(
    times: np.ndarray,
    scores: np.ndarray,
    parts: np.ndarray,
    part_names: Sequence[str],
    threshold: float,
    frame_seconds: float,
) -> list[dict[str, Any]]:
    """Runs of consecutive frames scoring above ``threshold``.

    Returns:
        One dict per run: ``start_frame``, ``end_frame`` (inclusive), ``start_time``,
        ``end_time`` (end of the last frame), ``frames``, ``peak_score``, ``peak_time`` and
        ``top_part`` (the score part with the highest mean over the run).
    """
    flags = np.asarray(scores) > threshold
    segments = []
    i, n = 0, len(flags)
    while i < n:
        if not flags[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and flags[j + 1]:
            j += 1
        sl = slice(i, j + 1)
        peak = i + int(np.argmax(scores[sl]))
        top = int(np.argmax(parts[sl].mean(axis=0))) if parts.size else 0
        segments.append(
            {
                "start_frame": i,
                "end_frame": j,
                "start_time": round(float(times[i]), 4),
                "end_time": round(float(times[j]) + frame_seconds, 4),
                "frames": j - i + 1,
                "peak_score": round(float(scores[peak]), 4),
                "peak_time": round(float(times[peak]), 4),
                "top_part": part_names[top] if len(part_names) else None,
            }
        )
        i = j + 1
    return segments


def write_timeline(
    path: str | Path,
    times: np.ndarray,
    scores: np.ndarray,
    parts: np.ndarray,
    part_names: Sequence[str],
    threshold: float,
    segments: Sequence[dict[str, Any]],
    title: str = "",
) -> Path:
    """Write ``timeline.png``: the score over time with the threshold and flagged segments shaded
    (top), and each standardised score part (bottom). Written atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(
        2, 1, figsize=(10, 5.5), sharex=True, gridspec_kw={"height_ratios": [2, 1.3]}
    )
    try:
        for seg in segments:
            for a in (ax, bx):
                a.axvspan(seg["start_time"], seg["end_time"], color="tab:red", alpha=0.15, lw=0)
        ax.plot(times, scores, color="black", lw=1.2, label="score")
        ax.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"threshold {threshold:.2f}")
        ax.set_ylabel("anomaly score")
        ax.legend(loc="upper right", fontsize=8)
        ax.set_title(title or f"{len(segments)} flagged segment(s)", fontsize=10)
        for j, name in enumerate(part_names):
            if j < parts.shape[1]:
                bx.plot(times, parts[:, j], lw=0.9, label=name)
        bx.set_ylabel("score parts")
        bx.set_xlabel("time (s)")
        bx.legend(loc="upper right", fontsize=7, ncol=min(4, max(1, len(part_names))))
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)
    return Path(path)
