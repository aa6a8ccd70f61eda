"""Evaluation figures are written as non-empty, valid PNGs."""

from __future__ import annotations

import numpy as np

from edgevae.evaluate import plots
from edgevae.modalities import ModalitySet, ModalitySpec

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TYPES = ["normal", "teleport", "speed", "intruder"]


def _frames(seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.zeros(240, int)
    labels[30:50] = 1
    labels[100:120] = 2
    labels[170:200] = 3
    scores = rng.normal(size=240) + 3.0 * (labels != 0)
    videos = np.repeat([0, 1, 2], 80)
    return scores, labels, videos


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5000  # axes, curves and text, not a blank canvas


def test_roc_plot(tmp_path):
    scores, labels, videos = _frames()
    out = plots.plot_roc(scores, labels, videos, TYPES, tmp_path / "roc.png", title="test")
    _assert_png(out)


def test_roc_plot_without_anomalies_still_draws(tmp_path):
    out = plots.plot_roc(
        np.arange(10.0), np.zeros(10, int), np.zeros(10), TYPES, tmp_path / "r.png"
    )
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_timeline_plot_limits_rows(tmp_path):
    scores, labels, videos = _frames()
    out = plots.plot_timeline(scores, labels, videos, TYPES, tmp_path / "t.png", max_videos=2)
    _assert_png(out)


def test_runs_finds_labelled_segments():
    assert plots._runs(np.array([0, 1, 1, 0, 2, 2, 2, 1])) == [(1, 3, 1), (4, 7, 2), (7, 8, 1)]
    assert plots._runs(np.array([0, 0])) == []


def test_reconstruction_plot_every_kind(tmp_path):
    rng = np.random.default_rng(0)
    specs = ModalitySet(
        [
            ModalitySpec("cam0", "video", (8, 16, 16), dtype="uint8", share="cams"),
            ModalitySpec("cam1", "video", (8, 16, 16), dtype="uint8", share="cams"),
            ModalitySpec("rgb", "video", (6, 16, 16), dtype="uint8", channels=3),
            ModalitySpec("audio", "spectrogram", (1, 8, 8)),
            ModalitySpec("motion", "series", (16, 3)),
            ModalitySpec("feat", "vector", (5,)),
        ]
    )
    orig = {s.name: rng.random(s.shape).astype(np.float32) for s in specs}
    recon = {k: v * 0.9 for k, v in orig.items()}
    imputed = {k: v * 0.5 for k, v in orig.items() if k != "feat"}  # feat: empty cell
    out = plots.plot_reconstruction(specs, orig, recon, imputed, tmp_path / "rec.png", title="x")
    _assert_png(out)


def test_video_strip_shapes():
    gray = ModalitySpec("cam0", "video", (8, 4, 5), dtype="uint8")
    assert plots._video_strip(gray, np.zeros((8, 4, 5)), n_frames=4).shape == (4, 4 * 5 + 3 * 2)
    rgb = ModalitySpec("rgb", "video", (6, 4, 5), dtype="uint8", channels=3)
    strip = plots._video_strip(rgb, np.zeros((6, 4, 5)), n_frames=4)
    assert strip.shape == (4, 2 * 5 + 2, 3)  # T = 6 / 3 = 2 frames
