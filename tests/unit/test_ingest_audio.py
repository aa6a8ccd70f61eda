"""Log-mel of real audio: the same math as the synthetic benchmark, clip-local, and AAC tracks
decoded and resampled on the files' clock."""

from __future__ import annotations

import numpy as np
import pytest

from edgevae.data.audio import clip_log_mel, log_mel, segment
from edgevae.data.media import decode_audio
from edgevae.data.synth import audio as synth_audio
from edgevae.data.synth import preset_config
from edgevae.errors import MediaError, ShapeError
from tests import media


def test_log_mel_equals_the_synthetic_benchmark() -> None:
    # ingest and the analyzer must feed a model trained on synthetic data the same numbers
    cfg = preset_config("tiny")
    rng = np.random.default_rng(0)
    wave = (0.3 * np.sin(np.arange(12000) * 0.21) + rng.normal(0, 0.01, 12000)).astype(np.float32)
    ours = log_mel(wave, cfg.sample_rate, cfg.n_mels, cfg.hop)
    theirs = synth_audio.log_mel(wave, cfg)
    assert ours.shape == theirs.shape == (60, cfg.n_mels)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_clip_log_mel_is_the_whole_recordings_columns() -> None:
    rng = np.random.default_rng(1)
    hop, frames = 50, 8
    wave = rng.normal(0, 0.3, 40 * hop).astype(np.float32)
    whole = log_mel(wave, 8000, 16, hop)  # (40, 16)
    start = 12  # a clip of 8 columns from column 12, with one hop of context each side
    clip = clip_log_mel(wave[(start - 1) * hop : (start + frames + 1) * hop], 8000, 16, frames)
    np.testing.assert_allclose(clip, whole[start : start + frames].T, atol=1e-5)
    with pytest.raises(ShapeError, match="hop of context"):
        clip_log_mel(wave[:101], 8000, 16, frames)


def test_segment_mirrors_past_the_ends() -> None:
    x = np.arange(5, dtype=np.float32)
    np.testing.assert_array_equal(segment(x, -2, 4), [2, 1, 0, 1])
    np.testing.assert_array_equal(segment(x, 3, 4), [3, 4, 3, 2])
    np.testing.assert_array_equal(segment(np.zeros(0), 0, 3), [0, 0, 0])


def test_aac_track_is_resampled_on_the_file_clock(tmp_path) -> None:
    # a 16 kHz AAC track starting at 5 s, decoded at 8 kHz: the tone lines up with its source
    path = media.write_camera(tmp_path / "a.mp4", start=5.0, duration=2.0, video=False)
    track = decode_audio(path, 8000)
    assert track is not None and track.sample_rate == 8000
    assert abs(track.start - 5.0) < 0.07  # AAC priming may put the first frame 64 ms early
    # the source tone on the file's clock (its phase runs from 5.0 s), over 5.5-6.0 s
    ref = media.tone(5.0 + np.arange(16000) / 8000)[4000:8000]
    got = track.window(5.5, 4000)
    lags = range(-40, 41)
    best = max(lags, key=lambda s: float(np.dot(got[100:-100], np.roll(ref, s)[100:-100])))
    assert abs(best) <= 1  # aligned within a sample (resampler delay compensated)
    assert np.corrcoef(got[100:-100], np.roll(ref, best)[100:-100])[0, 1] > 0.95


def test_file_without_audio_track_decodes_to_none(tmp_path) -> None:
    path = media.write_camera(tmp_path / "v.mp4", duration=1.0, audio=False)
    assert decode_audio(path, 8000) is None
    with pytest.raises(MediaError, match="does not exist"):
        decode_audio(tmp_path / "nope.mp4", 8000)
