"""Latency plots of a bench result: an empirical CDF (default) or a box plot per configuration.

Drawn from the raw ``samples_ms`` of each row (so the tail is visible), with matplotlib's Agg
backend (no display needed), written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgevae._util.choices import check_choice
from edgevae.errors import ConfigError

KINDS = ("cdf", "box")


def _label(row: dict[str, Any]) -> str:
    name = row.get("artifact_name") or Path(row["artifact"]).name
    prec = f" {row['precision']}" if row.get("precision") else ""
    return f"{name}{prec} · {row['backend']} · b{row['batch']}"


def plot_latency(doc: dict[str, Any], path: str | os.PathLike[str], kind: str = "cdf") -> Path:
    """Write a latency plot of every row that has raw samples.

    Args:
        doc: a bench result (``results[*].samples_ms``).
        path: output image; the suffix picks the format (``.png``, ``.svg``, ``.pdf``).
        kind: ``cdf`` (one step curve per configuration, log-scale x) or ``box`` (whiskers at
            min/max: nothing is hidden as an outlier).

    Returns:
        The written path.

    Raises:
        ConfigError: unknown kind, or no row with samples (run without ``keep_samples``?).
    """
    check_choice(kind, KINDS, "plot kind")
    rows = [r for r in doc.get("results", []) if r.get("samples_ms")]
    if not rows:
        raise ConfigError(
            "no raw latency samples in this result to plot; run the benchmark with samples kept."
        )
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    from edgevae._util.artifacts import atomic_path

    path = Path(path)
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.45 * len(rows)) if kind == "box" else (8, 5))
    try:
        if kind == "cdf":
            for r in rows:
                xs = np.sort(np.asarray(r["samples_ms"], dtype=float))
                ys = np.arange(1, len(xs) + 1) / len(xs)
                ax.step(xs, ys, where="post", label=_label(r))
            ax.set_xscale("log")
            ax.set_xlabel("latency per batch (ms, log scale)")
            ax.set_ylabel("fraction of iterations ≤ x")
            for q in (0.5, 0.9, 0.99):
                ax.axhline(q, color="0.85", lw=0.8, zorder=0)
            ax.legend(fontsize=7, loc="lower right")
        else:
            data = [np.asarray(r["samples_ms"], dtype=float) for r in rows]
            ax.boxplot(data, vert=False, whis=(0, 100), showfliers=False)
            ax.set_yticks(range(1, len(rows) + 1), [_label(r) for r in rows], fontsize=7)
            ax.set_xscale("log")
            ax.set_xlabel("latency per batch (ms, log scale; whiskers = min/max)")
        ax.set_title("edgevae bench: latency per configuration", fontsize=10)
        ax.grid(True, which="both", axis="x", alpha=0.3)
        fig.tight_layout()
        fmt = path.suffix.lstrip(".").lower() or "png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=120)
    finally:
        plt.close(fig)
    return path
