"""Watch cameras with a trained edgevae model and print an alert when something looks wrong.

A small app around :class:`edgevae.Analyzer`: frames are pushed one at a time, as they would
arrive from a live rig, and the analyzer scores each window of the model's clip length.

Camera files (one per model camera, in order; the audio track and a motion CSV when the model
uses them), optionally paced at the recording's frame rate::

    python examples/watch_cameras.py --model runs/rig/export/analyze.onnx \\
        --camera cam0.mp4 --camera cam1.mp4 --camera cam2.mp4 --motion motion.csv --realtime

A webcam through PyAV/FFmpeg (``v4l2`` on Linux, ``avfoundation`` on macOS, ``dshow`` on
Windows); cameras and sensors you do not have are imputed or ignored with ``--missing``::

    python examples/watch_cameras.py --model runs/rig --webcam /dev/video0 \\
        --missing cam1 --missing cam2 --missing audio --missing motion

Output: one line when a run of flagged windows starts and one when it ends, then latency
percentiles of ``Analyzer.push``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

import edgevae
from edgevae.errors import EdgeVAEError


def file_steps(analyzer: edgevae.Analyzer, args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Pushes for recorded files: frames on one timeline plus the audio/motion between them."""
    from edgevae.analyze.stream import FileStream
    from edgevae.data.media import decode_audio, read_motion_csv

    cams = [c for c in analyzer.session.cameras if c not in analyzer.missing]
    if len(args.camera) != len(cams):
        raise SystemExit(f"error: pass one --camera per present model camera ({', '.join(cams)})")
    audio = motion = None
    if analyzer.buffer.keep_audio:
        audio = decode_audio(args.audio_from or args.camera[0], analyzer.capture.sample_rate)
        if audio is None:
            raise SystemExit("error: no audio track; pass --audio-from FILE or --missing audio")
    if analyzer.buffer.motion_dims is not None:
        if args.motion is None:
            raise SystemExit("error: the model uses motion; pass --motion CSV or --missing motion")
        motion = read_motion_csv(args.motion)
    with FileStream(
        dict(zip(cams, args.camera, strict=True)), analyzer.capture, audio=audio, motion=motion
    ) as stream:
        for step in stream:
            yield {
                "frames": step.frames,
                "audio_chunk": step.audio_chunk,
                "motion": step.motion,
                "time": step.time,
                "audio_start": stream.audio_start,
            }


def webcam_steps(analyzer: edgevae.Analyzer, device: str, fmt: str | None) -> Iterator[dict]:
    """Pushes from one live camera (its frames go to the model's first present camera)."""
    import av

    name = next(c for c in analyzer.session.cameras if c not in analyzer.missing)
    container = av.open(device, format=fmt, options={"framerate": str(int(analyzer.capture.fps))})
    try:
        fmt_out = "gray" if analyzer.capture.channels == 1 else "rgb24"
        for frame in container.decode(video=0):
            yield {"frames": {name: frame.to_ndarray(format=fmt_out)}, "time": frame.time}
    finally:
        container.close()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="run directory, analyze.onnx or engine")
    p.add_argument("--camera", action="append", default=[], help="camera file (repeat)")
    p.add_argument("--webcam", help="capture device, e.g. /dev/video0 (instead of --camera)")
    p.add_argument("--webcam-format", default="v4l2", help="FFmpeg input format of --webcam")
    p.add_argument("--audio-from", help="file with the audio track (default: first camera)")
    p.add_argument("--motion", help="motion CSV with a 'time' column")
    p.add_argument("--missing", action="append", default=[], help="modality to treat as absent")
    p.add_argument("--threshold", type=float, help="alert threshold (default: the model's)")
    p.add_argument("--realtime", action="store_true", help="pace files at their frame rate")
    p.add_argument("--threads", type=int, default=1, help="backend threads")
    args = p.parse_args(argv)
    if bool(args.camera) == bool(args.webcam):
        p.error("pass --camera files or one --webcam")

    try:
        analyzer = edgevae.Analyzer(
            args.model, missing=args.missing, threshold=args.threshold, threads=args.threads
        )
        print(f"watching with {analyzer!r}; threshold {analyzer.threshold:.2f}", flush=True)
        steps = (
            webcam_steps(analyzer, args.webcam, args.webcam_format)
            if args.webcam
            else file_steps(analyzer, args)
        )
        latencies, alert_since, wall0, t0 = [], None, time.perf_counter(), None
        for step in steps:
            if args.realtime:  # sleep until this frame's time on the wall clock
                t0 = step["time"] if t0 is None else t0
                time.sleep(max(0.0, step["time"] - t0 - (time.perf_counter() - wall0)))
            result = analyzer.push(**step)
            if result is None:
                continue
            latencies.append(result.latency_s)
            if result.flagged and alert_since is None:
                alert_since = result.time
                top = max(result.parts, key=result.parts.get)
                print(
                    f"ALERT at {result.time:.2f} s: score {result.score:.1f} "
                    f"(threshold {result.threshold:.1f}), mostly {top}",
                    flush=True,
                )
            elif not result.flagged and alert_since is not None:
                print(f"clear at {result.time:.2f} s ({result.time - alert_since:.1f} s)")
                alert_since = None
    except EdgeVAEError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    if latencies:
        ms = np.asarray(latencies) * 1e3
        p50, p95 = np.percentile(ms, [50, 95], method="inverted_cdf")  # nearest rank
        print(
            f"{len(ms)} windows; push latency p50 {p50:.2f} ms, p95 {p95:.2f} ms, "
            f"max {ms.max():.2f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
