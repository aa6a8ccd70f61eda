"""``edgevae data ingest``: real recordings (cameras + audio + motion CSV) -> an edgevae dataset.

Each call ingests one recording (a "video" in the dataset: a run of consecutive clips sharing a
``video_id``). Cameras are decoded with PyAV and put on one timeline at ``fps`` (see
:mod:`edgevae.data.media` for the alignment rule: overlap only, nearest earlier frame), resized,
and cut into consecutive clips of ``clip_frames`` frames (a partial last clip is dropped). For
each clip the audio under it (resampled to ``sample_rate``) becomes a log-mel spectrogram
(:func:`edgevae.data.audio.log_mel`) and the motion log is interpolated at ``motion_steps`` step
times. Modalities are named and shaped like the synthetic benchmark's (``cam0..camN-1`` video
sharing ``cams``, ``audio`` spectrogram, ``motion`` series), so a model trained on one kind of data
can analyse the other when the shapes match.

The capture parameters are stored in ``index.json`` ``meta.capture``; the per-call report (files,
spans, trimmed seconds, skipped motion rows) is appended to ``meta.ingest``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from edgevae.data.capture import Capture
from edgevae.data.format import SPLITS, DatasetWriter, open_dataset
from edgevae.data.media import (
    AlignedCameras,
    AudioTrack,
    MotionLog,
    decode_audio,
    probe_cameras,
    read_motion_csv,
)
from edgevae.errors import ConfigError, MediaError, OutputExistsError
from edgevae.modalities import ModalitySet, ModalitySpec

ProgressFn = Callable[[int, int], None]  # (frames done, frames expected; 0 = unknown)

# Capture parameters that must agree between a dataset and data appended to / analysed with it.
CAPTURE_KEYS = (
    "fps",
    "width",
    "height",
    "channels",
    "clip_frames",
    "sample_rate",
    "n_mels",
    "audio_frames",
    "motion_steps",
)


@dataclass(frozen=True)
class IngestConfig:
    """How recordings become clips (defaults match the synthetic benchmark).

    Args:
        fps: output frame rate (frames per second on the common timeline).
        width, height: output frame size in pixels (frames are resized, aspect not kept).
        channels: 1 = grayscale, 3 = RGB.
        clip_frames: frames per clip (T); clips are consecutive, the last partial one is dropped.
        sample_rate: audio is resampled to this rate (Hz) before the log-mel.
        n_mels: mel bins of the audio spectrogram.
        audio_frames: spectrogram columns per clip.
        motion_steps: motion readings per clip, interpolated in the middle of each of
            ``motion_steps`` intervals (see :mod:`edgevae.data.capture`).
        audio: include an ``audio`` modality (False for camera-only rigs).
        allow_missing: a file without an audio track gives a masked ``audio`` (mask 0, zeros)
            instead of an error.
        overwrite: replace a non-empty output directory (new datasets only).
        shard_clips: clips per shard file.
    """

    fps: float = 10.0
    width: int = 64
    height: int = 64
    channels: int = 1
    clip_frames: int = 8
    sample_rate: int = 8000
    n_mels: int = 32
    audio_frames: int = 32
    motion_steps: int = 16
    audio: bool = True
    allow_missing: bool = False
    overwrite: bool = False
    shard_clips: int = 256

    def __post_init__(self) -> None:
        self.capture()  # validates the capture fields
        if self.shard_clips < 1:
            raise ConfigError(f"shard_clips must be >= 1, got {self.shard_clips}.")

    def capture(self) -> Capture:
        """The capture parameters (frame rate, size, audio/motion sampling) of this ingest."""
        return Capture(**{k: getattr(self, k) for k in CAPTURE_KEYS})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IngestConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown ingest config keys {sorted(unknown)}.")
        return cls(**d)


def ingest_modalities(n_cameras: int, config: IngestConfig, motion_dims: int | None) -> ModalitySet:
    """The modality specs of ingested data: ``cam0..``, optional ``audio`` and ``motion``."""
    t, c = config.clip_frames, config.channels
    specs = [
        ModalitySpec(
            f"cam{i}", "video", (t * c, config.height, config.width), "uint8", c, share="cams"
        )
        for i in range(n_cameras)
    ]
    if config.audio:
        specs.append(ModalitySpec("audio", "spectrogram", (1, config.n_mels, config.audio_frames)))
    if motion_dims is not None:
        specs.append(ModalitySpec("motion", "series", (config.motion_steps, motion_dims)))
    return ModalitySet(specs)


def load_audio(path: Path, config: IngestConfig, *, what: str = "audio") -> AudioTrack | None:
    """Decode the audio for a recording; None (masked) when absent and ``allow_missing``."""
    track = decode_audio(path, config.sample_rate, what)
    if track is None and not config.allow_missing:
        raise MediaError(
            f"'{path}' has no audio track; pass --audio-from FILE with the recording's audio, "
            "--allow-missing to store audio as missing (masked), or --no-audio."
        )
    return track


def _next_video_id(out: Path) -> int:
    reader = open_dataset(out, verify="size")
    top = -1
    for split in reader.splits:
        for batch in reader.split(split).iter_batches(4096, fields=["video_id"]):
            if len(batch["video_id"]):
                top = max(top, int(np.max(batch["video_id"])))
    return top + 1


def _check_append(out: Path, config: IngestConfig) -> tuple[int, dict[str, Any]]:
    reader = open_dataset(out, verify="size")
    meta = reader.index.get("meta", {})
    old = meta.get("capture")
    if old is not None:
        for key in CAPTURE_KEYS:
            if key in old and old[key] != getattr(config, key):
                raise ConfigError(
                    f"dataset '{out}' was ingested with {key}={old[key]}, this call uses "
                    f"{getattr(config, key)}; append with the same settings."
                )
    return _next_video_id(out), meta


def ingest(
    cameras: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    config: IngestConfig | None = None,
    *,
    audio_from: str | os.PathLike[str] | None = None,
    motion_csv: str | os.PathLike[str] | None = None,
    split: str = "train",
    append: bool = False,
    progress: ProgressFn | None = None,
) -> Path:
    """Ingest one multi-camera recording into a dataset (new, or appended to with ``append``).

    Args:
        cameras: camera files, one per camera, in ``cam0, cam1, ...`` order.
        out: dataset directory.
        config: clip/frame/audio settings (:class:`IngestConfig`).
        audio_from: file whose audio track is used (default: the first camera file).
        motion_csv: motion log with a ``time`` column (seconds) and numeric columns.
        split: ``train``, ``val`` or ``test``. A new dataset must start with ``train`` (its
            normalisation statistics come from it); add val/test with ``append=True``.
        append: add to an existing dataset (same modalities and capture settings required).
        progress: called as ``progress(frames_done, frames_expected)`` while decoding.

    Returns:
        The dataset directory. ``index.json`` ``meta.ingest[-1]`` holds this call's report:
        used span, per-source spans and trimmed seconds, clips, dropped tail frames, skipped
        motion rows.

    Raises:
        ConfigError: bad settings, a new dataset whose first split is not ``train``, settings that
            differ from the dataset appended to.
        MediaError: missing/unreadable/truncated/corrupt files (with the time they broke at), no
            video stream, no audio track (without ``allow_missing``), frame size changing
            mid-stream, bad motion CSV, inputs that do not overlap or overlap less than a clip.
        OutputExistsError, DatasetError, ShapeError: output problems from the dataset writer.
    """
    config = config or IngestConfig()
    out = Path(out)
    if split not in SPLITS:
        raise ConfigError(f"unknown split '{split}'; use one of {', '.join(SPLITS)}.")
    if not cameras:
        raise ConfigError("no camera given; pass at least one --camera FILE.")
    if len(cameras) > 8:
        raise ConfigError(f"{len(cameras)} cameras given; edgevae handles 1..8 cameras.")
    video_id, old_meta = 0, {}
    if append:
        video_id, old_meta = _check_append(out, config)
    else:
        if split != "train":
            raise ConfigError(
                f"a new dataset starts with --split train (normalisation statistics are computed "
                f"on it); ingest training recordings first, then add '{split}' with --append."
            )
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            if not config.overwrite:
                raise OutputExistsError(
                    f"output directory '{out}' is not empty; pass --overwrite to replace it, "
                    "--append to add to it, or choose another --out."
                )
            if not (out / "index.json").is_file():
                raise OutputExistsError(
                    f"'{out}' is not an edgevae dataset (no index.json); refusing to delete it "
                    "with --overwrite. Choose another --out."
                )
    names = [f"cam{i}" for i in range(len(cameras))]
    probe_cameras(dict(zip(names, cameras, strict=True)))
    motion = read_motion_csv(motion_csv) if motion_csv is not None else None
    audio = None
    if config.audio:
        audio = load_audio(Path(audio_from or cameras[0]), config)
        if audio is None and not append:
            raise MediaError(
                f"'{audio_from or cameras[0]}' has no audio track and this is a new dataset: its "
                "audio statistics need clips with audio; ingest a recording with audio first "
                "and --append this one with --allow-missing, or use --no-audio."
            )
    modalities = ingest_modalities(
        len(cameras), config, None if motion is None else motion.values.shape[1]
    )
    with AlignedCameras(
        dict(zip(names, cameras, strict=True)),
        fps=config.fps,
        size=(config.height, config.width),
        channels=config.channels,
        audio=audio,
        motion=motion,
        audio_context=config.capture().audio_hop / config.sample_rate,
    ) as sources:
        total = sources.estimated_frames()
        meta = {
            "source": "ingest",
            "capture": config.capture().to_dict(),
            "ingest": list(old_meta.get("ingest", [])),
        }
        writer = DatasetWriter(
            out,
            modalities,
            label_frames=config.clip_frames,
            meta=meta,
            shard_clips=config.shard_clips,
            overwrite=config.overwrite,
            append=append,
        )
        with writer:
            clips = _write_clips(
                writer, sources, config, split, video_id, audio, motion, total, progress
            )
            n_frames = sources.frames_out
            if clips == 0:
                raise MediaError(
                    f"the inputs overlap for {n_frames / config.fps:.2f} s, shorter than one clip "
                    f"({config.capture().clip_seconds:.2f} s); use longer recordings or fewer "
                    "--clip-frames."
                )
            report = sources.report(clips * config.clip_frames)
            report.update(
                {
                    "split": split,
                    "video_id": video_id,
                    "clips": clips,
                    "frames_in_overlap": n_frames,
                    "dropped_tail_frames": n_frames - clips * config.clip_frames,
                    "audio_missing": config.audio and audio is None,
                    "config": config.to_dict(),
                }
            )
            meta["ingest"].append(report)
            writer.meta.update(meta)
    if not append:  # the writer's temporary directory was made 0700; follow the umask
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(out, 0o777 & ~mask)
    return out


def _write_clips(
    writer: DatasetWriter,
    sources: AlignedCameras,
    config: IngestConfig,
    split: str,
    video_id: int,
    audio: AudioTrack | None,
    motion: MotionLog | None,
    total: int,
    progress: ProgressFn | None,
    batch_clips: int = 16,
) -> int:
    names = list(sources.cameras)
    capture = config.capture()
    t_frames = config.clip_frames
    pending: dict[str, list[np.ndarray]] = {n: [] for n in names}
    batch: dict[str, list[np.ndarray]] = {n: [] for n in writer.modalities.names}
    clip_start = sources.t0
    clips = 0
    m = len(writer.modalities)
    audio_col = writer.modalities.index("audio") if config.audio else None

    def flush() -> None:
        n = len(batch[names[0]])
        if not n:
            return
        mask = np.ones((n, m), np.uint8)
        if audio_col is not None and audio is None:
            mask[:, audio_col] = 0
        writer.add(
            split,
            {k: np.stack(v) for k, v in batch.items()},
            mask=mask,
            video_id=video_id,
            clip_index=np.arange(clips - n, clips),
        )
        for v in batch.values():
            v.clear()

    for k, t, frame in sources.frames():
        if k % t_frames == 0:
            clip_start = t
        for n in names:
            pending[n].append(frame[n])
        if len(pending[names[0]]) == t_frames:
            for n in names:
                batch[n].append(capture.video_clip(pending[n]))
                pending[n].clear()
            if config.audio:
                batch["audio"].append(
                    capture.audio_clip(audio, clip_start)
                    if audio is not None
                    else np.zeros((1, config.n_mels, config.audio_frames), np.float32)
                )
            if motion is not None:
                batch["motion"].append(capture.motion_clip(motion, clip_start))
            clips += 1
            if len(batch[names[0]]) >= batch_clips:
                flush()
        if progress is not None and (k + 1) % 8 == 0:
            progress(k + 1, total)
    flush()
    if progress is not None:
        progress(sources.frames_out, sources.frames_out)
    return clips
