"""PyAV helpers for the analyzer: live frames -> model frames, and the ``recon.mp4`` writer.

Decoding of camera *files* lives in :mod:`edgevae.data.media` (shared with ingest); this module
converts frames an app already holds (NumPy arrays from a webcam or another decoder) with the same
swscale area resize, and writes H.264 video.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from edgevae._util.lazy import require
from edgevae.errors import ShapeError


def to_model_frame(
    img: np.ndarray,
    size: tuple[int, int],
    channels: int,
    what: str = "frame",
    reformatter: Any = None,
) -> np.ndarray:
    """Convert one frame to the model's size and colour: (H, W) gray or (H, W, 3) RGB uint8.

    Args:
        img: uint8 (h, w), (h, w, 1) or (h, w, 3) RGB.
        size: target (H, W).
        channels: 1 (gray) or 3 (RGB).
        what: name used in error messages.
        reformatter: an ``av.video.reformatter.VideoReformatter`` to reuse (it caches the swscale
            context; one per camera stream saves ~1.5 ms per frame). None: a fresh one.

    Raises:
        ShapeError: another rank, channel count or dtype.
    """
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise ShapeError(
            f"{what} has dtype {a.dtype}; pass uint8 pixels (e.g. np.clip(x, 0, 255).astype("
            "np.uint8))."
        )
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise ShapeError(
            f"{what} has shape {a.shape}; pass (H, W) gray or (H, W, 3) RGB uint8 pixels."
        )
    height, width = size
    src_fmt = "gray" if a.ndim == 2 else "rgb24"
    dst_fmt = "gray" if channels == 1 else "rgb24"
    if a.shape[:2] == (height, width) and src_fmt == dst_fmt:
        return np.ascontiguousarray(a)
    av = require("av")
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format=src_fmt)
    reformatter = reformatter or av.video.reformatter.VideoReformatter()
    return reformatter.reformat(
        frame, width=width, height=height, format=dst_fmt, interpolation="AREA"
    ).to_ndarray()


def as_rgb(img: np.ndarray) -> np.ndarray:
    """(H, W) gray or (H, W, 3) -> (H, W, 3) uint8."""
    return img if img.ndim == 3 else np.repeat(img[:, :, None], 3, axis=2)


class VideoWriter:
    """Write RGB uint8 frames to an H.264 MP4 (``yuv420p``; odd sizes padded by one pixel;
    MPEG-4 part 2 where FFmpeg has no H.264 encoder).

    Use as a context manager; ``path`` may be a temporary name (the container is given
    explicitly), so callers can write atomically.
    """

    def __init__(self, path: str | Path, fps: float, width: int, height: int, crf: int = 18):
        av = require("av")
        self.path = Path(path)
        self.width, self.height = width + width % 2, height + height % 2
        self.container = av.open(str(self.path), "w", format="mp4")
        rate = Fraction(fps).limit_denominator(1000)
        # H.264 where the FFmpeg build has an encoder for it, else MPEG-4 part 2 (always built)
        available = av.codecs_available
        codec = next((c for c in ("libx264", "libopenh264") if c in available), "mpeg4")
        self.stream = self.container.add_stream(codec, rate=rate)
        self.stream.width, self.stream.height = self.width, self.height
        self.stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            self.stream.options = {"crf": str(crf), "preset": "ultrafast"}  # 5x veryfast
        else:
            self.stream.bit_rate = 8 * width * height * int(max(fps, 1))  # ~1 bit/pixel/frame
        self._av = av
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        """Append one (height, width, 3) uint8 frame."""
        h, w = rgb.shape[:2]
        if (h, w) != (self.height, self.width):
            padded = np.zeros((self.height, self.width, 3), np.uint8)
            padded[:h, :w] = rgb
            rgb = padded
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self.container is None:
            return
        try:
            for packet in self.stream.encode():
                self.container.mux(packet)
        finally:
            self.container.close()
            self.container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
