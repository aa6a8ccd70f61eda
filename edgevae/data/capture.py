"""How raw signals become one clip's modality tensors: the capture parameters and clip builders.

Ingest (consecutive clips) and the analyzer (sliding windows) both build clips with these
functions, so a model sees the same numbers for the same recording either way:

* video: ``clip_frames`` frames at ``fps``, resized to ``height`` x ``width``, gray (1 channel) or
  RGB (3), stacked as (T*C, H, W) uint8;
* audio: the samples under the clip (at ``sample_rate``) plus one hop of context on each side ->
  :func:`edgevae.data.audio.clip_log_mel` -> (1, n_mels, audio_frames);
* motion: the log interpolated at ``motion_steps`` readings per clip, each in the middle of its
  interval (``start + (j + 0.5) * clip / steps``, as the synthetic tracker) -> (steps, D).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevae.data.audio import clip_log_mel
from edgevae.errors import ConfigError
from edgevae.modalities import ModalityKind, ModalitySet

if TYPE_CHECKING:
    from edgevae.data.media import AudioTrack, MotionLog

DEFAULT_FPS = 10.0
DEFAULT_SAMPLE_RATE = 8000


@dataclass(frozen=True)
class Capture:
    """Frame rate, frame size and audio/motion sampling of one clip (defaults = synthetic data).

    Raises:
        ConfigError: any value out of range, naming the option to change.
    """

    fps: float = DEFAULT_FPS
    width: int = 64
    height: int = 64
    channels: int = 1
    clip_frames: int = 8
    sample_rate: int = DEFAULT_SAMPLE_RATE
    n_mels: int = 32
    audio_frames: int = 32
    motion_steps: int = 16

    def __post_init__(self) -> None:
        if not (0 < float(self.fps) <= 1000):
            raise ConfigError(f"--fps must be in (0, 1000], got {self.fps}.")
        for name in ("width", "height"):
            v = getattr(self, name)
            if not (8 <= v <= 4096):
                raise ConfigError(f"frame {name} must be 8..4096 pixels, got {v}; fix --size.")
        if self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 (--gray) or 3 (--rgb), got {self.channels}.")
        if not (1 <= self.clip_frames <= 256):
            raise ConfigError(f"--clip-frames must be 1..256, got {self.clip_frames}.")
        if not (1000 <= self.sample_rate <= 192000):
            raise ConfigError(f"sample_rate must be 1000..192000 Hz, got {self.sample_rate}.")
        for name in ("n_mels", "audio_frames", "motion_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.clip_seconds * self.sample_rate < 2 * self.audio_frames:
            raise ConfigError(
                f"a clip holds {self.clip_seconds * self.sample_rate:.0f} audio samples, too few "
                f"for {self.audio_frames} spectrogram frames; use longer clips or a higher rate."
            )

    @property
    def clip_seconds(self) -> float:
        return self.clip_frames / float(self.fps)

    @property
    def audio_hop(self) -> int:
        """Samples per spectrogram column (exact for the defaults: 6400 / 32 = 200)."""
        return max(1, round(self.clip_seconds * self.sample_rate / self.audio_frames))

    def video_clip(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """``clip_frames`` frames (H, W) or (H, W, 3) -> one video sample (T*C, H, W) uint8."""
        a = np.stack(frames)  # (T, H, W) or (T, H, W, 3)
        if self.channels == 3:
            a = a.transpose(0, 3, 1, 2).reshape(-1, a.shape[1], a.shape[2])  # (T*3, H, W)
        return np.ascontiguousarray(a, dtype=np.uint8)

    def audio_clip(self, track: AudioTrack, start: float) -> np.ndarray:
        """Log-mel (1, n_mels, audio_frames) of the audio under a clip starting at ``start`` s."""
        hop = self.audio_hop
        segment = track.window(start - hop / self.sample_rate, (self.audio_frames + 2) * hop)
        return clip_log_mel(segment, self.sample_rate, self.n_mels, self.audio_frames)[None]

    def motion_times(self, start: float) -> np.ndarray:
        """Times of the clip's motion readings (middle of each of ``motion_steps`` intervals)."""
        step = self.clip_seconds / self.motion_steps
        return start + (np.arange(self.motion_steps, dtype=np.float64) + 0.5) * step

    def motion_clip(self, log: MotionLog, start: float) -> np.ndarray:
        """Motion (motion_steps, D) interpolated under a clip starting at ``start`` s."""
        return log.sample(self.motion_times(start))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Capture:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown capture keys {sorted(unknown)}; known: {sorted(names)}.")
        return cls(**dict(d))


def capture_for(
    modalities: ModalitySet,
    *,
    fps: float | None = None,
    sample_rate: int | None = None,
    dataset_meta: Mapping[str, Any] | None = None,
) -> tuple[Capture, str]:
    """The capture a model's modalities imply, with fps and sample rate from the best source.

    Sizes (frames per clip, frame size, channels, mel bins/frames, motion steps) come from the
    specs. ``fps``/``sample_rate``: the explicit arguments, else the training dataset's metadata
    (``meta.capture`` from ingest, ``meta.config`` from the synthetic generator), else the defaults
    (10 fps, 8 kHz).

    Returns:
        ``(capture, source)`` where ``source`` says where fps/sample rate came from.

    Raises:
        ConfigError: a model without any video modality, or video modalities that differ in
            frames/size/channels (they must share one timeline).
    """
    videos = [s for s in modalities if s.kind is ModalityKind.video]
    if not videos:
        raise ConfigError(
            "this model has no video modality; `edgevae analyze` needs at least one camera."
        )
    shapes = {(s.shape, s.channels) for s in videos}
    if len(shapes) != 1:
        raise ConfigError(
            f"the model's cameras differ in shape {sorted(shapes)}; analyze needs cameras with one "
            "frame count and size."
        )
    v = videos[0]
    meta = dict(dataset_meta or {})
    stored = dict(meta.get("capture") or {})
    if not stored and isinstance(meta.get("config"), Mapping):  # synthetic generator's config
        stored = {k: meta["config"][k] for k in ("fps", "sample_rate") if k in meta["config"]}
    source = "dataset metadata" if stored else "defaults"
    if fps is not None or sample_rate is not None:
        source = "command line" if stored == {} else "command line + dataset metadata"
    kw: dict[str, Any] = {
        "fps": float(fps if fps is not None else stored.get("fps", DEFAULT_FPS)),
        "sample_rate": int(
            sample_rate
            if sample_rate is not None
            else stored.get("sample_rate", DEFAULT_SAMPLE_RATE)
        ),
        "width": v.shape[2],
        "height": v.shape[1],
        "channels": v.channels,
        "clip_frames": v.frames,
    }
    for s in modalities:
        if s.kind is ModalityKind.spectrogram and s.name == "audio":
            kw["n_mels"], kw["audio_frames"] = s.shape[1], s.shape[2]
        if s.kind is ModalityKind.series and s.name == "motion":
            kw["motion_steps"] = s.shape[0]
    return Capture(**kw), source
