"""Recordings on disk -> the pushes a live :class:`~edgevae.analyze.analyzer.Analyzer` would get.

:class:`FileStream` decodes camera files on one timeline
(:class:`~edgevae.data.media.AlignedCameras`) and cuts the audio track and motion log into the
pieces that arrive with each frame. Pushing its steps into an Analyzer gives, for the window
ending at the last frame of ingest clip ``j``, exactly the arrays ``edgevae data ingest`` stores
for clip ``j`` (same alignment, same audio samples, same
motion interpolation): ``tests/integration/test_ingest_analyze.py`` pins that.

Example:
    >>> with FileStream({"cam0": "a.mp4", "cam1": "b.mp4"}, an.capture, audio=track) as s:
    ...     for step in s:                                          # doctest: +SKIP
    ...         result = an.push(step.frames, step.audio_chunk, step.motion,
    ...                          time=step.time, audio_start=s.audio_start)
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgevae.data.capture import Capture
from edgevae.data.media import AlignedCameras, AudioTrack, MotionLog


@dataclass(frozen=True)
class Step:
    """One frame time's inputs: what a live source delivers between two frames.

    Attributes:
        index: frame index on the common timeline (0-based).
        time: the frame's time in seconds (the files' presentation-timestamp clock).
        frames: camera name -> uint8 frame at the capture's size and colour.
        audio_chunk: mono samples since the previous step (None without audio).
        motion: ``(times (k,), values (k, D))`` readings since the previous step, or None.
    """

    index: int
    time: float
    frames: dict[str, np.ndarray]
    audio_chunk: np.ndarray | None
    motion: tuple[np.ndarray, np.ndarray] | None


class FileStream:
    """Camera files (+ an audio track and a motion log) as a sequence of :class:`Step`.

    Args:
        cameras: camera name -> file, decoded at ``capture``'s fps, size and colour.
        capture: the model's capture parameters.
        audio: decoded audio track (None: no audio in the steps).
        motion: parsed motion log (None: no motion in the steps).

    Audio is delivered from one spectrogram hop before the first frame (``audio_start``) through
    one hop past each frame's end, the context the log-mel of a window needs; motion readings up
    to one reading interval past each frame's end, so interpolation at the window's step times
    never extrapolates. Use as a context manager (closes the files).

    Raises:
        MediaError: as :class:`~edgevae.data.media.AlignedCameras` (unreadable, corrupt, not
            overlapping inputs); errors met while decoding come from iteration.
    """

    def __init__(
        self,
        cameras: Mapping[str, str | os.PathLike[str]],
        capture: Capture,
        *,
        audio: AudioTrack | None = None,
        motion: MotionLog | None = None,
    ) -> None:
        self.capture = capture
        self.audio = audio
        self.motion = motion
        self.sources = AlignedCameras(
            cameras,
            fps=capture.fps,
            size=(capture.height, capture.width),
            channels=capture.channels,
            audio=audio,
            motion=motion,
            audio_context=capture.audio_hop / capture.sample_rate,
        )
        self.audio_start = self.sources.t0 - capture.audio_hop / capture.sample_rate

    @property
    def t0(self) -> float:
        """Time of the first frame."""
        return self.sources.t0

    def estimated_frames(self) -> int:
        """Frames expected from the files' headers (0 = unknown)."""
        return self.sources.estimated_frames()

    def report(self, used_frames: int | None = None) -> dict[str, Any]:
        """The alignment report (see :meth:`AlignedCameras.report`)."""
        return self.sources.report(used_frames)

    def __iter__(self) -> Iterator[Step]:
        cap = self.capture
        rate, frame_s = cap.sample_rate, 1.0 / cap.fps
        audio_sent = 0  # samples delivered so far, counted from audio_start
        motion = self.motion
        motion_sent = 0  # rows of the log delivered so far: start at the last one before t0
        if motion is not None:
            motion_sent = max(int(np.searchsorted(motion.times, self.t0, "right")) - 1, 0)
        motion_dt = float(np.median(np.diff(motion.times))) if motion is not None else 0.0
        for k, t, frames in self.sources.frames():
            chunk = None
            if self.audio is not None:
                upto = round((t + frame_s - self.t0) * rate) + 2 * cap.audio_hop
                chunk = self.audio.window(self.audio_start + audio_sent / rate, upto - audio_sent)
                audio_sent = upto
            rows = None
            if motion is not None:
                upto = int(np.searchsorted(motion.times, t + frame_s + motion_dt, "right"))
                if upto > motion_sent:
                    rows = (motion.times[motion_sent:upto], motion.values[motion_sent:upto])
                    motion_sent = upto
            yield Step(k, t, frames, chunk, rows)

    def close(self) -> None:
        self.sources.close()

    def __enter__(self) -> FileStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
