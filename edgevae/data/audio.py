"""Waveform -> log-mel spectrogram: one implementation for synthetic data, ingest and the analyzer
(DESIGN §3: one preprocessing source of truth).

The math (the synthetic benchmark's, :mod:`edgevae.data.synth.audio`, which it must stay equal to;
``tests/unit/test_ingest_audio.py`` pins that): frames on a grid of ``hop`` samples, frame ``m``
centred on sample ``(m + 0.5) * hop``, a Hann window of ``n_fft = 2 * hop`` samples (reflect
padding at the waveform's ends), power spectrum, triangular HTK-mel filters from 100 Hz to
Nyquist, ``log(mel power + LOG_FLOOR)``.

A clip of ``frames`` spectrogram columns covers ``frames * hop`` samples; each column also sees
half a hop on either side, so :func:`clip_log_mel` takes the clip's samples plus one hop of
context on each side. Given the same samples it returns exactly the columns a whole-recording
:func:`log_mel` has for that clip, which is why ingest (consecutive clips) and the analyzer
(sliding windows) agree.

Example (the synthetic default: 0.8 s clips at 8 kHz -> 32 mel bins x 32 columns, hop 200):
    >>> w = np.sin(2 * np.pi * 440 * np.arange(6800) / 8000)  # 6400 + 2 * 200 context samples
    >>> clip_log_mel(w, 8000, n_mels=32, frames=32).shape
    (32, 32)
"""

from __future__ import annotations

import functools

import numpy as np

from edgevae.errors import ConfigError, ShapeError

MEL_FMIN = 100.0  # Hz, lowest mel filter edge
# log(mel power + floor), the synthetic benchmark's floor: about 25-30 dB under a tone of
# amplitude 0.3-0.5 (full scale = 1), so faint background noise stays a small part of the
# standardised spectrogram, and silence maps to 0 rather than -inf.
LOG_FLOOR = 1.0


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=32)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = MEL_FMIN) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular HTK-mel filters (peak 1) from ``fmin`` to Nyquist.

    Raises:
        ConfigError: ``fmin`` at or above Nyquist, or non-positive sizes.
    """
    if sample_rate <= 0 or n_fft <= 1 or n_mels <= 0:
        raise ConfigError(
            f"mel filterbank needs positive sample_rate, n_fft > 1 and n_mels, got {sample_rate}, "
            f"{n_fft}, {n_mels}."
        )
    if not 0.0 <= fmin < sample_rate / 2:
        raise ConfigError(
            f"mel fmin {fmin} Hz must be below Nyquist ({sample_rate / 2:g} Hz); raise the "
            "sample rate."
        )
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(sample_rate / 2), n_mels + 2))
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None] - lower) / (center - lower)
    falling = (upper - freqs[None]) / (upper - center)
    fb = np.maximum(0.0, np.minimum(rising, falling))
    fb.setflags(write=False)
    return fb


def log_mel(
    wave: np.ndarray, sample_rate: int, n_mels: int, hop: int, *, fmin: float = MEL_FMIN
) -> np.ndarray:
    """Log-mel frames of a whole waveform: (len(wave) // hop, n_mels) float32.

    Args:
        wave: mono samples (n,).
        sample_rate: samples per second.
        n_mels: mel bins.
        hop: samples per frame; the FFT window is ``2 * hop``.
        fmin: lowest filter edge in Hz.

    Raises:
        ShapeError: a waveform that is not 1-D or shorter than one hop (or than 2 samples).
        ConfigError: bad sizes (see :func:`mel_filterbank`).
    """
    wave = np.asarray(wave)
    if hop < 1:
        raise ConfigError(f"log-mel hop must be >= 1 sample, got {hop}.")
    if wave.ndim != 1 or len(wave) < max(hop, 2):
        raise ShapeError(
            f"log_mel needs a 1-D waveform of at least one hop ({hop} samples), got shape "
            f"{wave.shape}."
        )
    n_fft = 2 * hop
    n_frames = len(wave) // hop
    pad = min(n_fft // 2, len(wave) - 1)  # reflect padding cannot exceed the signal
    padded = np.pad(wave.astype(np.float64), (pad, pad), mode="reflect")
    if pad < n_fft // 2:  # tiny inputs: zero-extend the rest of the window
        padded = np.pad(padded, (n_fft // 2 - pad, n_fft // 2 - pad))
    windows = np.lib.stride_tricks.sliding_window_view(padded, n_fft)
    first = hop // 2  # centre of frame 0 is hop/2 in the original signal
    frames = windows[first : first + n_frames * hop : hop]  # (n_frames, n_fft)
    spectrum = np.fft.rfft(frames * np.hanning(n_fft + 2)[1:-1], axis=1)
    power = spectrum.real**2 + spectrum.imag**2
    mel = power @ mel_filterbank(sample_rate, n_fft, n_mels, fmin).T  # (n_frames, n_mels)
    return np.log(mel + LOG_FLOOR).astype(np.float32)


def segment(samples: np.ndarray, start: int, n: int) -> np.ndarray:
    """``samples[start : start + n]`` as float32, mirrored where it runs past either end.

    Mirroring (not zeros) past the ends of a recording matches the whole-recording
    :func:`log_mel`'s reflect padding, so the first and last clips of a recording do not start
    with an artificial click. An empty ``samples`` gives zeros.
    """
    samples = np.asarray(samples, np.float32)
    m = len(samples)
    if m == 0:
        return np.zeros(n, np.float32)
    if start >= 0 and start + n <= m:
        return samples[start : start + n].copy()
    idx = np.arange(start, start + n)
    if m == 1:
        return np.full(n, samples[0], np.float32)
    period = 2 * (m - 1)  # reflect without repeating the edge sample: ... 2 1 | 0 1 2 ... m-1 | m-2
    idx = np.abs(np.mod(idx, period))
    idx = np.where(idx >= m, period - idx, idx)
    return samples[idx]


def clip_hop(clip_samples: int, frames: int) -> int:
    """Hop of a clip of ``clip_samples`` with ``frames`` columns (they must divide evenly).

    Raises:
        ConfigError: ``frames`` does not divide ``clip_samples``.
    """
    if frames < 1 or clip_samples % frames:
        raise ConfigError(
            f"{frames} spectrogram frames do not divide a clip of {clip_samples} audio samples; "
            "pick a frame count (or sample rate / fps) that divides it."
        )
    return clip_samples // frames


def clip_log_mel(
    segment: np.ndarray, sample_rate: int, n_mels: int, frames: int, *, fmin: float = MEL_FMIN
) -> np.ndarray:
    """The (n_mels, frames) spectrogram of one clip, from its samples plus one hop each side.

    Args:
        segment: ``(frames + 2) * hop`` samples: one hop before the clip, the clip, one hop after.
        sample_rate, n_mels, fmin: as :func:`log_mel`.
        frames: spectrogram columns of the clip.

    Returns:
        float32 (n_mels, frames), equal to the clip's columns of a whole-recording :func:`log_mel`.

    Raises:
        ShapeError: a segment whose length is not ``(frames + 2) * hop`` for an integer hop.
    """
    segment = np.asarray(segment)
    n = segment.shape[-1] if segment.ndim else 0
    if segment.ndim != 1 or n % (frames + 2) or n < frames + 2:
        raise ShapeError(
            f"clip_log_mel needs (frames + 2) * hop samples (a hop of context on each side) for "
            f"{frames} frames, got shape {segment.shape}."
        )
    hop = n // (frames + 2)
    return log_mel(segment, sample_rate, n_mels, hop, fmin=fmin)[1 : frames + 1].T.copy()
