"""Audio rendered from the scene: one tone per object, bounce clicks, background noise; log-mel.

* Each audible object hums a tone whose pitch follows its height ``z`` (``pitch_hz``: 150 Hz on
  the floor up to 1.6 kHz at the ceiling, log-spaced) and whose loudness follows its speed
  (``loudness``), with a second harmonic (per-object timbre).
* Every wall bounce of an audible object makes a short noise click whose level follows the speed
  that hit the wall.
* White background noise at a per-video level (about 25-35 dB under the tones).

The waveform is rendered for a whole video, then cut into clips through an STFT (Hann window of
``2 * hop`` samples, frames centred on the hop grid, so a clip's log-mel depends only on audio
near the clip) and an HTK mel filterbank; :func:`log_mel` returns ``ln(mel power + LOG_FLOOR)``.
"""

from __future__ import annotations

import numpy as np

from edgevae.data.synth.config import SynthConfig
from edgevae.data.synth.scene import Scene, Trajectory

F_LOW, F_HIGH = 150.0, 1600.0  # pitch at z = 0 and z = 1
MEL_FMIN = 100.0
# Floor added to the mel power before the log, about 25 dB under a typical tone: the background
# noise (which no other modality can predict) then stays a small part of the standardised signal.
LOG_FLOOR = 1.0
_CLICK_SECONDS = 0.012


def pitch_hz(z: np.ndarray) -> np.ndarray:
    """Tone frequency of an object at height ``z`` (box units)."""
    return F_LOW * (F_HIGH / F_LOW) ** np.asarray(z, np.float64)


def loudness(speed: np.ndarray) -> np.ndarray:
    """Tone amplitude of an object moving at ``speed`` (box units / s)."""
    return 0.05 + 0.8 * np.asarray(speed, np.float64)


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)


def mel_filterbank(config: SynthConfig) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular HTK mel filters from 100 Hz to Nyquist."""
    n_fft = 2 * config.hop
    freqs = np.fft.rfftfreq(n_fft, 1.0 / config.sample_rate)
    edges = _mel_to_hz(
        np.linspace(_hz_to_mel(MEL_FMIN), _hz_to_mel(config.sample_rate / 2), config.n_mels + 2)
    )
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None] - lower) / (center - lower)
    falling = (upper - freqs[None]) / (upper - center)
    return np.maximum(0.0, np.minimum(rising, falling))


def mel_bin(f_hz: np.ndarray, config: SynthConfig) -> np.ndarray:
    """Fractional mel-bin index (0 = lowest bin centre) of frequencies ``f_hz``; for plots."""
    lo, hi = _hz_to_mel(MEL_FMIN), _hz_to_mel(config.sample_rate / 2)
    step = (hi - lo) / (config.n_mels + 1)
    return (_hz_to_mel(f_hz) - lo) / step - 1.0


def render_waveform(
    scene: Scene, traj: Trajectory, config: SynthConfig, rng: np.random.Generator
) -> np.ndarray:
    """The scene's sound over the whole trajectory: (S * samples_per_substep,) float32."""
    per_step = config.sample_rate // config.sim_rate
    n_steps = traj.pos.shape[1]
    n = n_steps * per_step
    t = np.arange(n, dtype=np.float64) / per_step  # sample time in substeps
    steps = np.arange(n_steps, dtype=np.float64)
    wave = rng.normal(0.0, scene.audio_noise, n)
    for k, obj in enumerate(scene.objects):
        if not obj.audible:
            continue
        freq = np.interp(t, steps, pitch_hz(traj.pos[k, :, 2]))
        amp = np.interp(t, steps, loudness(np.linalg.norm(traj.vel[k], axis=1)))
        phase = 2.0 * np.pi * np.cumsum(freq) / config.sample_rate + rng.uniform(0, 2 * np.pi)
        wave += 0.5 * amp * (np.sin(phase) + obj.timbre * np.sin(2.0 * phase))
    click_len = int(_CLICK_SECONDS * config.sample_rate)
    envelope = np.exp(-np.arange(click_len) / (0.2 * click_len))
    for step, obj_idx, speed in traj.bounces:
        if not scene.objects[int(obj_idx)].audible:
            continue
        start = int(step) * per_step
        end = min(start + click_len, n)
        if start >= n:
            continue
        burst = rng.normal(0.0, 1.0, click_len) * envelope * (0.4 + 1.2 * speed)
        wave[start:end] += burst[: end - start]
    return wave.astype(np.float32)


def log_mel(wave: np.ndarray, config: SynthConfig) -> np.ndarray:
    """Log-mel frames of a waveform: (len(wave) // hop, n_mels) float32.

    Frame ``m`` is centred on sample ``(m + 0.5) * hop``; the waveform is reflect-padded at its
    ends.
    """
    hop = config.hop
    n_fft = 2 * hop
    n_frames = len(wave) // hop
    padded = np.pad(wave.astype(np.float64), (n_fft // 2, n_fft // 2), mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, n_fft)
    first = hop // 2  # centre of frame 0 is hop/2 in the original signal
    frames = windows[first : first + n_frames * hop : hop]  # (n_frames, n_fft)
    spectrum = np.fft.rfft(frames * np.hanning(n_fft + 2)[1:-1], axis=1)
    power = spectrum.real**2 + spectrum.imag**2
    mel = power @ mel_filterbank(config).T  # (n_frames, n_mels)
    return np.log(mel + LOG_FLOOR).astype(np.float32)
