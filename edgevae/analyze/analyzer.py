"""The embeddable streaming analyzer: push frames as they arrive, get a score per window.

Example:
    >>> import edgevae
    >>> an = edgevae.Analyzer("export/analyze.onnx")  # doctest: +SKIP (or run dir / engine)
    >>> for frames, audio in camera_stream():                    # doctest: +SKIP
    ...     result = an.push(frames, audio_chunk=audio)          # {"cam0": (H, W) uint8, ...}
    ...     if result is not None and result.flagged:
    ...         print(f"anomaly at {result.time:.1f} s: {result.score:.1f}")

Windows: the analyzer keeps the last T frames (T = the model's frames per clip) per camera in ring
buffers, plus the recent audio samples and motion readings. Once T frames have arrived, every
``hop``-th push scores the window of the last T frames (hop 1 = every frame) and returns a
:class:`Result` for its newest frame; other pushes return None.

Inputs per push: one frame per camera (any size: resized with an area filter; gray or RGB
converted to the model's colour), the audio samples received since the previous push (mono, at
``analyzer.capture.sample_rate``; sample 0 of the first chunk is at the first frame's time), and
the motion readings received since the previous push. A window's audio is the samples under its
T frames plus one spectrogram hop either side (past the ends of what has arrived the samples are
mirrored, as ingest does at a recording's ends; ``audio_start`` on the first push supplies real
context instead); its motion is interpolated from the buffered readings, exactly as
``edgevae data ingest`` builds clips (:class:`~edgevae.analyze.stream.FileStream` feeds recorded
files that way).

Thread safety: ``push`` and ``reset`` hold an internal lock, so calls from several threads are
safe but run one at a time (frames are appended in lock order). Use one Analyzer per stream;
several Analyzers may share one loaded model through ``session=`` when its backend runs
concurrently (ONNX Runtime and PyTorch inference do; a TensorRT execution context does not, so
give each thread its own engine session). Latency: ``push`` runs the model synchronously, batch 1;
``Result.latency_s`` is the time from the push call to the result (frame conversion, log-mel,
normalisation and the forward pass); pushes that complete no window only convert and buffer
(~0.35 ms for two 64x64 frames on a shared 2-core CPU; measured numbers in docs/analyze.md).
"""

from __future__ import annotations

import math
import os
import threading
import time as _time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgevae.analyze.backend import ModelSession
from edgevae.analyze.video_io import to_model_frame
from edgevae.data.audio import clip_log_mel, segment
from edgevae.data.capture import Capture
from edgevae.errors import ConfigError, ShapeError
from edgevae.modalities import ModalityKind

MotionInput = np.ndarray | tuple[np.ndarray, np.ndarray] | None


@dataclass(frozen=True)
class Result:
    """The analysis of one window (its newest frame is ``frame_index``).

    Attributes:
        frame_index: index of the window's newest frame (0-based, counting pushes).
        time: that frame's time in seconds.
        window_start: index of the window's oldest frame.
        score: anomaly score (higher = more anomalous).
        parts: standardised score parts (``recon_<m>``, ``kl_prior``, ``cross_modal``).
        flagged: ``score > threshold``.
        threshold: the threshold used.
        latency_s: push-to-result seconds (preprocessing + model).
        reconstructions: with ``reconstructions=True``: per modality the model's output for the
            window in raw units: cameras uint8 (T, H, W) or (T, H, W, 3) (the imputation for
            missing cameras), ``audio`` log-mel (1, n_mels, frames), ``motion`` (steps, D).
    """

    frame_index: int
    time: float
    window_start: int
    score: float
    parts: dict[str, float]
    flagged: bool
    threshold: float
    latency_s: float
    reconstructions: dict[str, np.ndarray] | None = field(default=None, repr=False)


def video_frames(sample: np.ndarray, channels: int) -> np.ndarray:
    """A video sample (T*C, H, W) -> frames (T, H, W) or (T, H, W, 3)."""
    if channels == 1:
        return sample
    t = sample.shape[0] // channels
    return sample.reshape(t, channels, *sample.shape[1:]).transpose(0, 2, 3, 1)


class WindowBuffer:
    """Ring buffers of the last T frames, recent audio and recent motion; builds raw windows.

    Args:
        capture: frames per window, size, colour, audio/motion sampling.
        cameras: camera modality names that receive frames.
        audio: keep audio (the model has an ``audio`` modality that is not missing).
        motion_dims: keep motion readings of this width (None: no motion).
    """

    def __init__(
        self, capture: Capture, cameras: list[str], *, audio: bool, motion_dims: int | None
    ):
        self.capture = capture
        self.cameras = list(cameras)
        self.keep_audio = audio
        self.motion_dims = motion_dims
        self.reset()

    def reset(self) -> None:
        t = self.capture.clip_frames
        self.frames: dict[str, deque[np.ndarray]] = {c: deque(maxlen=t) for c in self.cameras}
        self.times: deque[float] = deque(maxlen=t)
        self.count = 0
        self.source_shapes: dict[str, tuple[int, ...]] = {}
        self.reformatters: dict[str, Any] = {}  # per camera: cached swscale contexts
        self.audio = np.zeros(0, np.float32)
        self.audio_offset = 0  # absolute index of self.audio[0]
        self.audio_received = 0
        self.audio_t0: float | None = None
        self.motion_t: deque[float] = deque()
        self.motion_v: deque[np.ndarray] = deque()
        self.motion_skipped = 0

    @property
    def full(self) -> bool:
        return len(self.times) == self.capture.clip_frames

    # -- pushing ---------------------------------------------------------------------------------
    def push(
        self,
        frames: Mapping[str, np.ndarray],
        time: float | None = None,
        audio_chunk: np.ndarray | None = None,
        motion: MotionInput = None,
        *,
        converted: bool = False,
        audio_start: float | None = None,
    ) -> None:
        """Add one frame per camera (+ audio/motion received since the previous push).

        ``audio_start``: time of the first audio sample of the first push (default: that push's
        frame time); file readers pass a hop earlier so the first window has real context.
        ``converted``: frames are already at the model's size and colour.
        """
        if not isinstance(frames, Mapping):
            raise ShapeError(f"frames must be a dict {{camera: array}} over {self.cameras}.")
        unknown = [k for k in frames if k not in self.cameras]
        missing = [c for c in self.cameras if c not in frames]
        if missing:
            raise ShapeError(
                f"push needs one frame for every camera: missing {missing} (of {self.cameras}); "
                "construct the Analyzer with missing=[...] for cameras you do not have."
            )
        t_prev = self.times[-1] if self.times else None
        if time is None:
            time = (
                self.count / self.capture.fps if t_prev is None else t_prev + 1 / self.capture.fps
            )
        time = float(time)
        if t_prev is not None and not time > t_prev:
            raise ShapeError(
                f"frame time {time:.4f} s is not after the previous frame's {t_prev:.4f} s; pass "
                "increasing times (seconds)."
            )
        size = (self.capture.height, self.capture.width)
        converted_frames = {}
        shapes = {}
        for name in self.cameras:
            img = np.asarray(frames[name])
            if not converted and name not in self.reformatters:
                self.reformatters[name] = _new_reformatter()
            converted_frames[name] = (
                img
                if converted
                else to_model_frame(
                    img, size, self.capture.channels, f"camera {name}", self.reformatters[name]
                )
            )  # validates dtype and rank first
            shapes[name] = img.shape
            if name in self.source_shapes and img.shape != self.source_shapes[name]:
                raise ShapeError(
                    f"camera {name}: frame size changed from {_size(self.source_shapes[name])} to "
                    f"{_size(img.shape)} at frame {self.count} (t={time:.2f} s); keep one size "
                    "per camera, or call reset() after changing the camera's resolution."
                )
        del unknown  # frames of cameras treated as missing are accepted and ignored
        audio = self._parse_audio(audio_chunk) if audio_chunk is not None else None
        readings = self._parse_motion(motion, t_prev, time) if motion is not None else None
        # everything is valid: commit
        for name, shape in shapes.items():
            self.source_shapes.setdefault(name, shape)
        if self.audio_t0 is None:
            self.audio_t0 = time if audio_start is None else float(audio_start)
        if audio is not None and self.keep_audio:
            self.audio = np.concatenate([self.audio, audio])
            self.audio_received += len(audio)
        if readings is not None and self.motion_dims is not None:
            times, values = readings
            good = np.isfinite(values).all(axis=1) & np.isfinite(times)
            self.motion_skipped += int((~good).sum())
            for ti, vi in zip(times[good], values[good], strict=True):
                if self.motion_t and ti <= self.motion_t[-1]:
                    continue  # out-of-order or repeated reading: keep the first
                self.motion_t.append(float(ti))
                self.motion_v.append(vi.astype(np.float32))
        for name in self.cameras:
            self.frames[name].append(converted_frames[name])
        self.times.append(time)
        self.count += 1
        self._trim()

    def _parse_audio(self, chunk: np.ndarray) -> np.ndarray:
        a = np.asarray(chunk)
        if a.ndim == 2 and 1 in a.shape:
            a = a.reshape(-1)
        if a.ndim != 1 or not np.issubdtype(a.dtype, np.number):
            raise ShapeError(
                f"audio_chunk has shape {a.shape} and dtype {a.dtype}; pass mono samples (n,) at "
                f"{self.capture.sample_rate} Hz."
            )
        return np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)

    def _parse_motion(
        self, motion: MotionInput, t_prev: float | None, t: float
    ) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(motion, tuple):
            times = np.asarray(motion[0], np.float64).reshape(-1)
            values = np.asarray(motion[1], np.float64)
            if values.ndim == 1 and len(times) == 1:
                values = values[None]
        else:
            values = np.asarray(motion, np.float64)
            values = values[None] if values.ndim == 1 else values
            k = len(values)
            start = t if t_prev is None else t_prev
            # k readings spread evenly over (previous frame, this frame]
            times = start + (t - start) * (np.arange(k) + 1) / max(k, 1)
        dims = self.motion_dims
        if (
            values.ndim != 2
            or (dims is not None and values.shape[1] != dims)
            or len(times) != len(values)
        ):
            raise ShapeError(
                f"motion has shape {values.shape} (times {times.shape}); pass (D,) or (k, D) "
                f"readings with D={dims}, or a (times (k,), values (k, D)) tuple."
            )
        return times, values

    def _trim(self) -> None:
        if not self.times:
            return
        oldest = self.times[0]  # the next window starts at or after this frame
        hop = self.capture.audio_hop
        keep_from = self._audio_index(oldest) - hop - 1
        drop = keep_from - self.audio_offset
        if drop > 0:
            self.audio = self.audio[drop:]
            self.audio_offset += drop
        while len(self.motion_t) > 1 and self.motion_t[1] <= oldest:
            self.motion_t.popleft()
            self.motion_v.popleft()

    def _audio_index(self, t: float) -> int:
        return round((t - (self.audio_t0 or 0.0)) * self.capture.sample_rate)

    # -- windows ---------------------------------------------------------------------------------
    def window(self) -> dict[str, np.ndarray]:
        """Raw arrays of the current window (no batch axis): cameras, ``audio``, ``motion``."""
        c = self.capture
        out = {name: c.video_clip(list(self.frames[name])) for name in self.cameras}
        start = self.times[0]
        if self.keep_audio:
            hop = c.audio_hop
            n = (c.audio_frames + 2) * hop
            # mirrored past the ends of what has arrived (as ingest does at a recording's ends)
            seg = segment(self.audio, self._audio_index(start) - hop - self.audio_offset, n)
            out["audio"] = clip_log_mel(seg, c.sample_rate, c.n_mels, c.audio_frames)[None]
        if self.motion_dims is not None:
            if not self.motion_t:
                out["motion"] = np.zeros((c.motion_steps, self.motion_dims), np.float32)
            else:
                ts = np.asarray(self.motion_t)
                vs = np.stack(list(self.motion_v))
                steps = c.motion_times(start)
                out["motion"] = np.stack(
                    [np.interp(steps, ts, vs[:, j]) for j in range(vs.shape[1])], axis=-1
                ).astype(np.float32)
        return out


def _new_reformatter() -> Any:
    from edgevae._util.lazy import require

    return require("av").video.reformatter.VideoReformatter()


def _size(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}" if len(shape) >= 2 else str(shape)


class Analyzer:
    """Streaming anomaly scoring with any artifact (run dir, ``.onnx``, TensorRT engine).

    Args:
        artifact: a training run directory, an ``analyze.onnx`` or a ``.plan``/``.engine`` file.
        missing: modality names treated as absent (mask 0): cameras you do not have or want
            imputed, ``audio``, ``motion``. Frames pushed for a missing camera are ignored.
        threshold: flag windows whose score exceeds this (default: from the model's validation
            statistics, see :mod:`edgevae.analyze.backend`).
        hop: score every ``hop``-th frame once T frames have arrived (1 = every frame).
        reconstructions: include the model's reconstructions/imputations in each Result.
        device, threads: backend device and intra-op threads.
        fps, sample_rate: override the capture parameters stored with the model.
        session: an already built :class:`ModelSession` (shares one loaded model).

    Raises:
        ConfigError, CheckpointError, MissingDependencyError: as :class:`ModelSession`, plus an
            unknown name in ``missing``, every camera missing, or a bad ``hop``.
    """

    def __init__(
        self,
        artifact: str | os.PathLike[str] | None = None,
        *,
        missing: Iterable[str] = (),
        threshold: float | None = None,
        hop: int = 1,
        reconstructions: bool = False,
        device: str = "cpu",
        threads: int | None = None,
        fps: float | None = None,
        sample_rate: int | None = None,
        session: ModelSession | None = None,
    ) -> None:
        if session is None:
            if artifact is None:
                raise ConfigError("Analyzer needs an artifact (run dir, .onnx or engine).")
            session = ModelSession(
                artifact, device=device, threads=threads, fps=fps, sample_rate=sample_rate
            )
        self.session = session
        self.modalities = session.modalities
        self.capture = session.capture
        self.missing = tuple(dict.fromkeys(missing))
        for name in self.missing:
            if name not in self.modalities.names:
                from edgevae._util.choices import check_choice

                check_choice(name, self.modalities.names, "modality in missing")
        if isinstance(hop, bool) or not isinstance(hop, int) or not 1 <= hop <= 10_000:
            raise ConfigError(f"hop must be an integer >= 1 (frames between scores), got {hop!r}.")
        self.hop = hop
        self.cameras = [c for c in session.cameras if c not in self.missing]
        if not self.cameras:
            raise ConfigError(
                "every camera is marked missing; at least one camera must be present."
            )
        self.mask = np.array(
            [0.0 if n in self.missing else 1.0 for n in self.modalities.names], np.float32
        )
        names = self.modalities.names
        audio = "audio" in names and "audio" not in self.missing
        motion_dims = None
        if "motion" in names and "motion" not in self.missing:
            motion_dims = self.modalities["motion"].shape[1]
        for spec in self.modalities:
            known = spec.kind is ModalityKind.video or spec.name in ("audio", "motion")
            if not known and spec.name not in self.missing:
                raise ConfigError(
                    f"the model has a modality '{spec.name}' ({spec.kind.value}) the analyzer "
                    f"cannot build from cameras/audio/motion; pass missing=['{spec.name}']."
                )
        self.buffer = WindowBuffer(self.capture, self.cameras, audio=audio, motion_dims=motion_dims)
        self.threshold, self.threshold_source = session.threshold(self.mask, threshold)
        self.return_reconstructions = reconstructions
        self.part_names = session.part_names
        self._lock = threading.Lock()

    @property
    def window(self) -> int:
        """Frames per window (T)."""
        return self.capture.clip_frames

    def reset(self) -> None:
        """Forget every buffered frame, sample and reading (e.g. after a camera restart)."""
        with self._lock:
            self.buffer.reset()

    def push(
        self,
        frames: Mapping[str, np.ndarray],
        audio_chunk: np.ndarray | None = None,
        motion: MotionInput = None,
        *,
        time: float | None = None,
        audio_start: float | None = None,
    ) -> Result | None:
        """Add one frame per camera; return the Result of the window it completes, if any.

        Args:
            frames: ``{camera: uint8 (H, W) | (H, W, 3)}`` for every present camera.
            audio_chunk: mono samples at ``capture.sample_rate`` received since the last push.
            motion: readings since the last push: (D,) at this frame's time, (k, D) spread evenly
                since the previous frame, or ``(times, values)`` with explicit times (s).
                Rows with NaN/Inf are skipped and counted (``motion_skipped``).
            time: this frame's time in seconds (default: previous + 1 / fps).
            audio_start: on the first push only, the time of the first audio sample (default:
                the frame's time). Passing one spectrogram hop earlier (with those samples) gives
                the first window real audio context (:class:`~edgevae.analyze.stream.FileStream`
                does).

        Returns:
            A :class:`Result` when a window is due (every ``hop`` frames once T have arrived),
            else None.

        Raises:
            ShapeError: a camera missing from ``frames``, a frame whose size changes, wrong dtype
                or rank, bad audio/motion arrays, non-increasing time, or a required audio/motion
                stream that never received data.
        """
        with self._lock:
            start = _time.perf_counter()
            buf = self.buffer
            buf.push(frames, time, audio_chunk, motion, audio_start=audio_start)
            if not buf.full or (buf.count - buf.capture.clip_frames) % self.hop:
                return None
            return self._score(start)

    @property
    def motion_skipped(self) -> int:
        """Motion readings skipped because they held NaN/Inf."""
        return self.buffer.motion_skipped

    def check_streams(self) -> None:
        buf = self.buffer
        if buf.keep_audio and buf.audio_received == 0:
            raise ShapeError(
                "no audio has been pushed but the model's 'audio' is present; pass audio_chunk= "
                "with each push or construct the Analyzer with missing=['audio']."
            )
        if buf.motion_dims is not None and not buf.motion_t:
            raise ShapeError(
                "no usable motion reading has been pushed but the model's 'motion' is present; "
                "pass motion= or construct the Analyzer with missing=['motion']."
            )

    def _score(self, start: float) -> Result:
        self.check_streams()
        raw = self.window_arrays()
        out = self.session.run({k: v[None] for k, v in raw.items()}, self.mask[None])
        score = float(out.score[0])
        recon = None
        if self.return_reconstructions:
            recon = {}
            for spec in self.modalities:
                r = out.recon[spec.name][0]
                recon[spec.name] = (
                    video_frames(r, spec.channels) if spec.kind is ModalityKind.video else r
                )
        buf = self.buffer
        return Result(
            frame_index=buf.count - 1,
            time=buf.times[-1],
            window_start=buf.count - buf.capture.clip_frames,
            score=score,
            parts={n: float(v) for n, v in zip(self.part_names, out.parts[0], strict=False)},
            flagged=bool(math.isfinite(score) and score > self.threshold),
            threshold=self.threshold,
            latency_s=_time.perf_counter() - start,
            reconstructions=recon,
        )

    def window_arrays(self) -> dict[str, np.ndarray]:
        """Raw model inputs of the current window for every modality (zeros for missing ones)."""
        raw = self.buffer.window()
        for spec in self.modalities:
            if spec.name not in raw:
                raw[spec.name] = np.zeros(spec.shape, spec.dtype)
        return raw

    def __repr__(self) -> str:
        return (
            f"edgevae.Analyzer('{self.session.artifact}', cameras={self.cameras}, "
            f"missing={list(self.missing)}, window={self.window}, hop={self.hop})"
        )


def describe(analyzer: Analyzer) -> dict[str, Any]:
    """JSON-ready description of an analyzer's setup (for summaries)."""
    return {
        "artifact": str(analyzer.session.artifact),
        "backend": analyzer.session.kind,
        "modalities": list(analyzer.modalities.names),
        "missing": list(analyzer.missing),
        "window_frames": analyzer.window,
        "hop": analyzer.hop,
        "capture": analyzer.capture.to_dict(),
        "capture_source": analyzer.session.capture_source,
        "threshold": analyzer.threshold,
        "threshold_source": analyzer.threshold_source,
    }
