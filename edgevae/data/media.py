"""Reading real recordings: PyAV camera/audio decoding, motion CSV logs, and timestamp alignment.

Shared by ``edgevae data ingest`` (recordings -> dataset) and ``edgevae analyze`` (recordings ->
scores), so both see identical frames, audio and motion for the same files.

Alignment rule: every source is placed on the presentation-timestamp clock of its file (files
recorded together share that clock). The common span starts at the latest source start and ends
at the earliest source end ("overlap only"); output frame ``k`` is at ``t_k = t0 + k / fps`` and
shows, for each camera, the latest frame whose timestamp is <= ``t_k`` (nearest earlier frame).
Frame ``k`` is in the span when every camera shows a frame at ``t_k`` and the audio and motion
cover ``[t_k, t_k + 1/fps)``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgevae._util.lazy import require
from edgevae.data.audio import segment
from edgevae.errors import MediaError

TIME_EPS = 1e-3  # seconds: timestamps closer than this are "the same instant" (PTS rounding)
# Audio codecs prime the first and pad the last tens of milliseconds of a track (AAC: 1024
# samples, 21-64 ms), and the first and last encoder frames are coded poorly: measured on FFmpeg
# AAC at 16 kHz, log-mel columns within ~175 ms of a track's start and ~125 ms of its end differ
# from the source signal by 2-13 (natural-log units), vs < 0.3 elsewhere. Windows never use audio
# this close to a track's ends (the overlap is shortened instead).
AUDIO_EDGE_S = 0.25


def _av() -> Any:
    return require("av")


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc).strip().rstrip(".")


def open_media(path: str | Path, what: str) -> Any:
    """Open a media file with PyAV, or raise MediaError naming ``what`` and the fix."""
    path = Path(path)
    if not path.exists():
        raise MediaError(f"{what} file '{path}' does not exist; check the path.")
    if not path.is_file():
        raise MediaError(f"{what} '{path}' is not a file; pass a media file such as an .mp4.")
    av = _av()
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise MediaError(
            f"cannot read {what} file '{path}' ({_reason(exc)}): it is truncated before any "
            "frame, corrupt, or not a media file; re-copy or re-encode it."
        ) from None


def probe_cameras(cameras: Mapping[str, str | Path]) -> None:
    """Check every camera file opens and holds a video stream (headers only, no decoding).

    Called before the audio track is decoded so a bad camera file is reported as a camera, not
    as the audio source it may also be.

    Raises:
        MediaError: a missing or unreadable file, or one without a video stream.
    """
    for name, path in cameras.items():
        container = open_media(path, f"camera {name}")
        try:
            if not container.streams.video:
                raise MediaError(_no_video(name, Path(path)))
        finally:
            container.close()


def _no_video(name: str, path: Path) -> str:
    return (
        f"camera {name}: '{path}' has no video stream; pass a video file (e.g. an .mp4 with H.264 "
        "video) with --camera."
    )


def _declared_end(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        start = float((stream.start_time or 0) * stream.time_base)
        return start + float(stream.duration * stream.time_base)
    if container.duration:
        return float(container.duration) / 1e6
    return None


class CameraReader:
    """One camera file's first video stream, decoded lazily, resized to ``size`` (H, W).

    Frames come out uint8 (H, W) for ``channels=1`` or (H, W, 3) for ``channels=3``. The reader
    keeps one frame of look-ahead so it knows when the stream has ended.

    Raises:
        MediaError: a missing or unreadable file, no video stream, no decodable frame, a frame size
            that changes mid-stream, corrupt data (with the time it broke at), or a file that ends
            before the duration its header declares (truncated).
    """

    def __init__(self, path: str | Path, name: str, *, size: tuple[int, int], channels: int = 1):
        self.path = Path(path)
        self.name = name
        self.size = size
        self.channels = channels
        self.container = open_media(self.path, f"camera {name}")
        try:
            if not self.container.streams.video:
                raise MediaError(_no_video(name, self.path))
            self.stream = self.container.streams.video[0]
            self.stream.thread_type = "AUTO"
            rate = self.stream.average_rate or self.stream.guessed_rate
            self.native_fps = float(rate) if rate else None
            self.frame_duration = 1.0 / self.native_fps if self.native_fps else None
            self.declared_end = _declared_end(self.container, self.stream)
            self.source_size: tuple[int, int] | None = None  # (width, height) of the first frame
            self.frames_decoded = 0
            self._last_time: float | None = None
            # one reformatter per reader: it caches the swscale context (a fresh one per frame
            # costs ~1.5 ms, 20x the resize itself)
            self._reformatter = _av().video.reformatter.VideoReformatter()
            self._frames = self._decode()
            self.current = next(self._frames, None)
            if self.current is None:
                raise MediaError(
                    f"camera {name}: '{self.path}' holds no decodable video frame (empty or "
                    "corrupt); re-encode it."
                )
            self.next = next(self._frames, None)
        except BaseException:
            self.close()
            raise
        self.start = self.current[0]

    def _decode(self) -> Iterator[tuple[float, np.ndarray]]:
        av = _av()
        fmt = "gray" if self.channels == 1 else "rgb24"
        height, width = self.size
        frames = self.container.decode(self.stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except (av.error.FFmpegError, OSError) as exc:
                at = 0.0 if self._last_time is None else self._last_time
                raise MediaError(
                    f"camera {self.name}: '{self.path}' is corrupt: decoding failed after "
                    f"{at:.2f} s ({_reason(exc)}); re-encode the file or cut it before that time."
                ) from None
            t = frame.time
            if t is None:  # no timestamp: continue the last one by a frame duration
                dur = self.frame_duration or 0.0
                t = 0.0 if self._last_time is None else self._last_time + dur
            if self.source_size is None:
                self.source_size = (frame.width, frame.height)
            elif (frame.width, frame.height) != self.source_size:
                w0, h0 = self.source_size
                raise MediaError(
                    f"camera {self.name}: '{self.path}' changes frame size from {w0}x{h0} to "
                    f"{frame.width}x{frame.height} at {t:.2f} s; re-encode it at one size "
                    "(e.g. ffmpeg -vf scale=W:H)."
                )
            img = self._reformatter.reformat(
                frame, width=width, height=height, format=fmt, interpolation="AREA"
            ).to_ndarray()
            self._last_time = float(t)
            self.frames_decoded += 1
            yield float(t), img
        self._check_complete()

    def _check_complete(self) -> None:
        if self._last_time is None or self.declared_end is None:
            return
        end = self._last_time + (self.frame_duration or 0.0)
        tolerance = max(2 * (self.frame_duration or 0.0), 0.1)
        if end < self.declared_end - tolerance:
            raise MediaError(
                f"camera {self.name}: '{self.path}' is truncated or corrupt: decoding stopped "
                f"at {end:.2f} s of the {self.declared_end:.2f} s its header declares; re-copy "
                "the file or re-encode the part that plays."
            )

    @property
    def end(self) -> float | None:
        """End of the last frame once the stream is exhausted, else None (not known yet)."""
        if self.next is not None:
            return None
        return self.current[0] + (self.frame_duration or TIME_EPS)

    def at(self, t: float) -> np.ndarray | None:
        """The frame shown at time ``t`` (latest with timestamp <= t), None past the end."""
        while self.next is not None and self.next[0] <= t + TIME_EPS:
            self.current, self.next = self.next, next(self._frames, None)
        end = self.end
        if end is not None and t >= end - TIME_EPS:
            return None
        return self.current[1]

    def close(self) -> None:
        container = getattr(self, "container", None)
        if container is not None:
            container.close()


@dataclass(frozen=True)
class AudioTrack:
    """A mono waveform resampled to ``sample_rate``, starting at ``start`` seconds."""

    path: Path
    samples: np.ndarray  # (n,) float32
    sample_rate: int
    start: float

    @property
    def end(self) -> float:
        return self.start + len(self.samples) / self.sample_rate

    @property
    def usable_start(self) -> float:
        """Start of the part windows may use (``AUDIO_EDGE_S`` after the first sample)."""
        return self.start + min(AUDIO_EDGE_S, 0.25 * (self.end - self.start))

    @property
    def usable_end(self) -> float:
        """End of the part windows may use (``AUDIO_EDGE_S`` before the last sample)."""
        return self.end - min(AUDIO_EDGE_S, 0.25 * (self.end - self.start))

    def window(self, t: float, n: int) -> np.ndarray:
        """``n`` samples from time ``t``, float32, mirrored past the usable part's ends
        (:func:`edgevae.data.audio.segment`)."""
        sr = self.sample_rate
        lo = round((self.usable_start - self.start) * sr)
        hi = round((self.usable_end - self.start) * sr)
        return segment(self.samples[lo:hi], round((t - self.start) * sr) - lo, n)


def decode_audio(path: str | Path, sample_rate: int, what: str = "audio") -> AudioTrack | None:
    """Decode the first audio stream of ``path`` to mono float32 at ``sample_rate``.

    Returns:
        The track, or None when the file has no audio stream (the caller decides whether that is
        an error).

    Raises:
        MediaError: unreadable file, corrupt data (with the time it broke at), or a stream that
            ends before its declared duration.
    """
    av = _av()
    path = Path(path)
    container = open_media(path, what)
    try:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=int(sample_rate))
        chunks: list[np.ndarray] = []
        start: float | None = None
        last = 0.0
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except (av.error.FFmpegError, OSError) as exc:
                raise MediaError(
                    f"{what}: '{path}' is corrupt: audio decoding failed after {last:.2f} s "
                    f"({_reason(exc)}); re-encode the file or cut it before that time."
                ) from None
            if start is None:
                start = float(frame.time or 0.0)
            last = float(frame.time or last) + frame.samples / float(frame.sample_rate)
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
        if start is None or not chunks:
            raise MediaError(f"{what}: '{path}' has an audio stream without decodable audio.")
        declared = _declared_end(container, stream)
        if declared is not None and last < declared - 0.2:
            raise MediaError(
                f"{what}: '{path}' is truncated or corrupt: audio stops at {last:.2f} s of the "
                f"{declared:.2f} s its header declares; re-copy or re-encode the file."
            )
        samples = np.concatenate(chunks).astype(np.float32)
        return AudioTrack(path, samples, int(sample_rate), start)
    finally:
        container.close()


@dataclass(frozen=True)
class MotionLog:
    """Motion samples from a CSV: strictly increasing ``times`` (s) and ``values`` (n, D)."""

    path: Path
    columns: tuple[str, ...]
    times: np.ndarray  # (n,) float64
    values: np.ndarray  # (n, D) float32
    skipped_rows: int  # rows dropped because they held NaN/Inf or empty cells

    @property
    def start(self) -> float:
        return float(self.times[0])

    @property
    def end(self) -> float:
        """Last sample time plus one typical sample interval (the last sample's span)."""
        return float(self.times[-1] + np.median(np.diff(self.times)))

    def sample(self, t: np.ndarray) -> np.ndarray:
        """Linear interpolation at times ``t`` (k,) -> (k, D) float32 (edges held)."""
        t = np.asarray(t, np.float64)
        cols = [np.interp(t, self.times, self.values[:, j]) for j in range(self.values.shape[1])]
        return np.stack(cols, axis=-1).astype(np.float32)


def read_motion_csv(path: str | Path, time_column: str = "time") -> MotionLog:
    """Parse a motion CSV: a header with a ``time`` column (seconds) plus numeric columns.

    Rows with an empty, NaN or infinite cell are skipped and counted (``skipped_rows``).

    Raises:
        MediaError: missing file, no header, no time column, no other column, a non-numeric
            cell (with its line), time that does not increase, or fewer than 2 usable rows.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"motion CSV '{path}' does not exist; check the --motion path.")
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MediaError(f"cannot read motion CSV '{path}': {exc}.") from None
    if not rows or not any(c.strip() for c in rows[0]):
        raise MediaError(
            f"motion CSV '{path}' is empty; it needs a header row with a 'time' column."
        )
    header = [c.strip() for c in rows[0]]
    lowered = [c.lower() for c in header]
    if time_column not in lowered:
        raise MediaError(
            f"motion CSV '{path}' has no '{time_column}' column (columns: {', '.join(header)}); "
            f"add a '{time_column}' column with each row's time in seconds."
        )
    ti = lowered.index(time_column)
    value_cols = [i for i in range(len(header)) if i != ti]
    if not value_cols:
        raise MediaError(f"motion CSV '{path}' has only a time column; add value columns.")
    data = np.empty((len(rows) - 1, len(header)), np.float64)
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise MediaError(
                f"motion CSV '{path}' line {line} has {len(row)} cells, the header has "
                f"{len(header)}; fix or remove that line."
            )
        for j, cell in enumerate(row):
            cell = cell.strip()
            try:
                data[line - 2, j] = float(cell) if cell else math.nan
            except ValueError:
                raise MediaError(
                    f"motion CSV '{path}' line {line} column '{header[j]}': {cell!r} is not a "
                    "number; fix or remove that line."
                ) from None
    good = np.all(np.isfinite(data), axis=1)
    data = data[good]
    if len(data) < 2:
        raise MediaError(
            f"motion CSV '{path}' has {len(data)} usable rows (rows with empty/NaN cells are "
            "skipped); it needs at least 2."
        )
    times = data[:, ti]
    back = np.nonzero(np.diff(times) <= 0)[0]
    if back.size:
        raise MediaError(
            f"motion CSV '{path}': time does not increase at t={times[back[0] + 1]:.3f} s "
            f"(after {times[back[0]]:.3f} s); sort the rows by time and drop duplicates."
        )
    return MotionLog(
        path,
        tuple(header[i] for i in value_cols),
        times,
        data[:, value_cols].astype(np.float32),
        int((~good).sum()),
    )


class AlignedCameras:
    """Several cameras (plus optional audio/motion bounds) on one timeline ``t0 + k / fps``.

    Args:
        cameras: modality name -> camera file, in modality order.
        fps: output frame rate.
        size: output (H, W).
        channels: 1 (gray) or 3 (RGB).
        audio, motion: optional sources whose time span also bounds the overlap.
        audio_context: seconds of real audio needed before the first and after the last frame
            (one spectrogram hop: the log-mel of a clip looks that far past its ends), so the
            first and last clips see recorded audio rather than a mirrored edge.

    Use as a context manager (closes the files). :meth:`frames` yields ``(k, t_k, {name: frame})``;
    :meth:`report` describes every source's span and how much of it was trimmed.
    """

    def __init__(
        self,
        cameras: Mapping[str, str | Path],
        *,
        fps: float,
        size: tuple[int, int],
        channels: int = 1,
        audio: AudioTrack | None = None,
        motion: MotionLog | None = None,
        audio_context: float = 0.0,
    ):
        self.fps = float(fps)
        self.audio_context = float(audio_context)
        self.audio = audio
        self.motion = motion
        self.cameras: dict[str, CameraReader] = {}
        try:
            for name, path in cameras.items():
                self.cameras[name] = CameraReader(path, name, size=size, channels=channels)
        except BaseException:
            self.close()
            raise
        starts = [c.start for c in self.cameras.values()]
        ends = []
        if audio is not None:
            starts.append(audio.usable_start + self.audio_context)
            ends.append(audio.usable_end - self.audio_context)
        if motion is not None:
            starts.append(motion.start)
            ends.append(motion.end)
        self.t0 = max(starts) if starts else 0.0
        self.fixed_end = min(ends) if ends else math.inf
        self.frames_out = 0
        declared = [c.declared_end for c in self.cameras.values() if c.declared_end is not None]
        if min([self.fixed_end, *declared]) - self.t0 < 1.0 / self.fps:
            self.close()
            raise MediaError(
                "the inputs do not overlap in time: " + self._spans_text() + "; pass recordings "
                "of the same period."
            )

    def _spans_text(self) -> str:
        parts = [f"{n} {c.start:.2f}-{_fmt(c.declared_end)} s" for n, c in self.cameras.items()]
        if self.audio is not None:
            a = self.audio
            ctx = self.audio_context
            parts.append(f"audio {a.usable_start + ctx:.2f}-{a.usable_end - ctx:.2f} s")
        if self.motion is not None:
            parts.append(f"motion {self.motion.start:.2f}-{self.motion.end:.2f} s")
        return ", ".join(parts)

    def estimated_frames(self) -> int:
        """Frames expected from the headers' durations (for progress bars)."""
        ends = [self.fixed_end] + [c.declared_end or math.inf for c in self.cameras.values()]
        end = min(ends)
        return max(math.floor((end - self.t0) * self.fps + TIME_EPS), 0) if end < math.inf else 0

    def frames(self) -> Iterator[tuple[int, float, dict[str, np.ndarray]]]:
        """Yield ``(k, t_k, {camera: frame})`` for every frame of the overlap, in order."""
        k = 0
        while True:
            t = self.t0 + k / self.fps
            if t + 1.0 / self.fps > self.fixed_end + TIME_EPS:
                break
            frame = {}
            for name, cam in self.cameras.items():
                img = cam.at(t)
                if img is None:
                    break
                frame[name] = img
            if len(frame) < len(self.cameras):
                break
            self.frames_out = k + 1
            yield k, t, frame
            k += 1

    def report(self, used_frames: int | None = None) -> dict[str, Any]:
        """Span actually used and, per source, its own span and the seconds trimmed at each end."""
        n = self.frames_out if used_frames is None else used_frames
        start, end = self.t0, self.t0 + n / self.fps
        sources = []
        for name, cam in self.cameras.items():
            cam_end = cam.end if cam.end is not None else cam.declared_end
            sources.append(
                _span(name, "camera", cam.path, cam.start, cam_end, start, end)
                | {
                    "native_fps": cam.native_fps,
                    "native_size": list(cam.source_size or ()),
                    "frames_decoded": cam.frames_decoded,
                }
            )
        if self.audio is not None:
            a = self.audio
            sources.append(
                _span("audio", "audio", a.path, a.start, a.end, start, end)
                | {"usable": [round(a.usable_start, 4), round(a.usable_end, 4)]}
            )
        if self.motion is not None:
            m = self.motion
            sources.append(
                _span("motion", "motion", m.path, m.start, m.end, start, end)
                | {"skipped_rows": m.skipped_rows}
            )
        return {
            "fps": self.fps,
            "span": {"start": start, "end": end, "frames": n},
            "sources": sources,
        }

    def close(self) -> None:
        for cam in self.cameras.values():
            cam.close()

    def __enter__(self) -> AlignedCameras:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _fmt(t: float | None) -> str:
    return "?" if t is None else f"{t:.2f}"


def _span(
    name: str, kind: str, path: Path, s: float, e: float | None, start: float, end: float
) -> dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        "path": str(path),
        "start": round(s, 4),
        "end": None if e is None else round(e, 4),
        "trimmed_head_s": round(max(start - s, 0.0), 4),
        "trimmed_tail_s": None if e is None else round(max(e - end, 0.0), 4),
    }
