"""Real media files with known content for ingest/analyze tests (H.264 video + AAC audio via PyAV).

The scene: one bright square moving up and down (a sine of period ``PERIOD``) over a dark
background. Each camera sees it from its own "projection" (cam0 on the left, cam1 on the right and
upside down, cam2 sideways, ...), so the cameras are correlated and one can be imputed from the
others. The audio is a tone whose pitch follows the square's height (high square = high pitch).
The motion CSV logs the height and its velocity. Everything is a pure function of time, so a test
knows the truth at any instant (and a tiny model learns the one-dimensional scene quickly).
"""

from __future__ import annotations

import csv
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

BACKGROUND = 40
SQUARE = 230
TIME_BASE = Fraction(1, 1000)


PERIOD = 2.3  # seconds per up-and-down cycle of the square


def position(t: np.ndarray | float) -> np.ndarray:
    """Height of the square's centre, in [0.2, 0.8] (0 = top of the image), at time(s) ``t``."""
    t = np.asarray(t, dtype=np.float64)
    return 0.5 + 0.3 * np.sin(2 * np.pi * t / PERIOD)


def velocity(t: np.ndarray | float) -> np.ndarray:
    """d(height)/dt at time(s) ``t`` (image heights per second)."""
    t = np.asarray(t, dtype=np.float64)
    return 0.3 * 2 * np.pi / PERIOD * np.cos(2 * np.pi * t / PERIOD)


def view(cam: int, t: float, width: int, height: int) -> np.ndarray:
    """The uint8 gray frame (height, width) camera ``cam`` sees at time ``t``."""
    y = float(position(t))
    u, v = [(0.3, y), (0.7, 1 - y), (y, 0.5), (1 - y, 0.3)][cam % 4]  # centre (x, y) in [0, 1]
    ramp = np.arange(width)[None, :] * (20 + 10 * (cam % 4)) // max(width, 1)
    # a per-camera gradient, so cameras differ in more than the square
    img = np.broadcast_to(BACKGROUND + ramp, (height, width)).astype(np.uint8)
    side = max(2, int(0.3 * min(width, height)))
    cx, cy = int(u * width), int(v * height)
    y0, x0 = max(cy - side // 2, 0), max(cx - side // 2, 0)
    img[y0 : y0 + side, x0 : x0 + side] = SQUARE
    return img


def tone(t: np.ndarray) -> np.ndarray:
    """The audio waveform at sample times ``t``: pitch 300..1500 Hz follows the square's height."""
    y = position(t)
    freq = 300.0 + 1200.0 * (1.0 - y)  # image y grows downwards: high square = high pitch
    dt = np.diff(t, prepend=t[0] - (t[1] - t[0] if len(t) > 1 else 0.0))
    phase = 2 * np.pi * np.cumsum(freq * dt)
    return (0.4 * np.sin(phase)).astype(np.float32)


def write_camera(
    path: str | Path,
    cam: int = 0,
    *,
    fps: float = 10.0,
    width: int = 64,
    height: int = 48,
    duration: float = 3.0,
    start: float = 0.0,
    audio: bool = True,
    video: bool = True,
    sample_rate: int = 16000,
    black: tuple[float, float] | None = None,
    frozen: tuple[float, float] | None = None,
    container: str | None = None,
    faststart: bool = True,
) -> Path:
    """Write one camera file (H.264 ``yuv420p`` + optional mono AAC), timestamps from ``start``.

    ``black``/``frozen`` = (t0, t1) plant a camera fault in that span (frames black / the frame
    at t0 repeated). Returns ``path``.
    """
    path = Path(path)
    options = {"movflags": "faststart"} if faststart and path.suffix == ".mp4" else {}
    out = av.open(str(path), "w", format=container, options=options)
    try:
        if video:
            vs = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
            vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
            vs.options = {"preset": "ultrafast", "crf": "12", "g": "10"}
            vs.codec_context.time_base = TIME_BASE
            vs.time_base = TIME_BASE
        if audio:
            aus = out.add_stream("aac", rate=sample_rate)
            aus.layout = "mono"
        if video:
            n = round(duration * fps)
            frozen_img = None
            for i in range(n):
                t = start + i / fps
                img = view(cam, t, width, height)
                if black and black[0] <= t < black[1]:
                    img = np.zeros_like(img)
                if frozen and frozen[0] <= t < frozen[1]:
                    frozen_img = img if frozen_img is None else frozen_img
                    img = frozen_img
                frame = av.VideoFrame.from_ndarray(img, format="gray")
                frame.pts = round(t / TIME_BASE)
                frame.time_base = TIME_BASE
                for packet in vs.encode(frame):
                    out.mux(packet)
            for packet in vs.encode():
                out.mux(packet)
        if audio:
            n_samples = round(duration * sample_rate)
            wave = tone(start + np.arange(n_samples) / sample_rate)
            first = round(start * sample_rate)
            for s in range(0, n_samples, 1024):
                chunk = wave[s : s + 1024][None, :]
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                frame.sample_rate = sample_rate
                frame.pts = first + s
                frame.time_base = Fraction(1, sample_rate)
                for packet in aus.encode(frame):
                    out.mux(packet)
            for packet in aus.encode():
                out.mux(packet)
    finally:
        out.close()
    return path


def write_size_change(
    path: str | Path, *, fps: float = 10.0, duration: float = 2.0, start: float = 0.0
) -> Path:
    """An MPEG-TS H.264 stream (timestamps from ``start``) whose frame size changes from 64x48
    to 32x24 half-way."""
    path = Path(path)
    out = av.open(str(path), "w", format="mpegts")
    try:
        vs = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        vs.options = {"preset": "ultrafast"}
        vs.codec_context.time_base = TIME_BASE
        n = int(duration * fps)
        second = av.CodecContext.create("libx264", "w")
        second.width, second.height, second.pix_fmt = 32, 24, "yuv420p"
        second.time_base = TIME_BASE
        second.framerate = Fraction(fps).limit_denominator(1000)
        second.options = {"preset": "ultrafast"}
        for i in range(n):
            size = (48, 64) if i < n // 2 else (24, 32)
            t = start + i / fps
            frame = av.VideoFrame.from_ndarray(view(0, t, size[1], size[0]), format="gray")
            frame.pts = round(t / TIME_BASE)
            frame.time_base = TIME_BASE
            encoder = vs if i < n // 2 else second
            if i == n // 2:
                for packet in vs.encode():
                    out.mux(packet)
            for packet in encoder.encode(frame):
                packet.stream = vs
                out.mux(packet)
        for packet in second.encode(None):
            packet.stream = vs
            out.mux(packet)
    finally:
        out.close()
    return path


def write_motion_csv(
    path: str | Path,
    *,
    duration: float = 3.0,
    rate: float = 40.0,
    start: float = 0.0,
    nan_rows: tuple[int, ...] = (),
    time_column: str = "time",
) -> Path:
    """Motion log ``time,y,vy`` at ``rate`` Hz from ``start``; rows in ``nan_rows`` hold NaN."""
    path = Path(path)
    t = start + np.arange(round(duration * rate) + 1) / rate
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([time_column, "y", "vy"])
        for i, row in enumerate(zip(t, position(t), velocity(t), strict=True)):
            if i in nan_rows:
                w.writerow([f"{row[0]:.6f}", "nan", ""])
            else:
                w.writerow([f"{v:.6f}" for v in row])
    return path


def truncate(path: str | Path, fraction: float = 0.5) -> Path:
    """Cut a file to ``fraction`` of its bytes in place (a recording that was interrupted)."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path
