"""``edgevae analyze``: stream camera files (+ audio, motion) through a model and write the results.

Outputs (written into a hidden sibling directory, renamed to ``out`` when complete, so an
interrupted run never leaves a partial result):

* ``scores.csv`` — one row per frame: ``frame, time, score, flagged, window_end, <score parts>``.
* ``timeline.png`` — the score over time with the threshold and flagged segments shaded.
* ``recon.mp4`` — one row per camera, columns *original | reconstruction* and, when cameras are
  ``--missing``, a third *imputed* column (the model's view of that camera from the other
  modalities; the middle column then shows its reconstruction with the camera present, when its
  file was given).
* ``summary.json`` — flagged segments, score statistics, threshold and where it came from, the
  alignment report (span, trimmed seconds per source), imputation error vs the mean frame, and
  timing (real-time factor = seconds of input per second of processing, throughput).

Windows: T frames (the model's clip length) sliding by ``hop`` frames. Frame ``f`` takes the score
and reconstruction of the first scored window that contains it, i.e. the window ending at the
smallest scored end ``>= max(f, T - 1)``: with hop 1 that is the window ending at ``f`` (causal,
the same value :class:`~edgevae.analyze.analyzer.Analyzer` returns live), and the first T - 1
frames share the first window's score. A final window ending at the last frame is always scored.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import tempfile
import time as _time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from edgevae.analyze.analyzer import Analyzer, describe
from edgevae.analyze.backend import ModelSession
from edgevae.analyze.report import flagged_segments, write_timeline
from edgevae.analyze.stream import FileStream
from edgevae.analyze.video_io import VideoWriter, as_rgb
from edgevae.data.media import (
    AudioTrack,
    MotionLog,
    decode_audio,
    probe_cameras,
    read_motion_csv,
)
from edgevae.errors import ConfigError, MediaError, OutputExistsError, ShapeError

ProgressFn = Callable[[int, int], None]  # (frames done, frames expected; 0 = unknown)


@dataclass(frozen=True)
class AnalyzeConfig:
    """Options of :func:`analyze`.

    Args:
        missing: modality names to treat as absent (cameras to impute, ``audio``, ``motion``).
        threshold: anomaly threshold (default: from the model's validation statistics).
        hop: frames between scored windows (1 = every frame).
        batch_size: windows per model call.
        video: write ``recon.mp4``.
        device, threads: backend device and intra-op threads.
        fps, sample_rate: override the capture parameters stored with the model.
        overwrite: replace a non-empty output directory.
    """

    missing: tuple[str, ...] = ()
    threshold: float | None = None
    hop: int = 1
    batch_size: int = 16
    video: bool = True
    device: str = "cpu"
    threads: int | None = None
    fps: float | None = None
    sample_rate: int | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "missing", tuple(self.missing))
        if isinstance(self.hop, bool) or not isinstance(self.hop, int) or not self.hop >= 1:
            raise ConfigError(f"--hop must be an integer >= 1, got {self.hop!r}.")
        if not isinstance(self.batch_size, int) or not 1 <= self.batch_size <= 4096:
            raise ConfigError(f"--batch-size must be 1..4096, got {self.batch_size!r}.")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise ConfigError(f"--threshold must be a finite number, got {self.threshold}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AnalyzeConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown analyze config keys {sorted(unknown)}.")
        return cls(**d)


def assign_cameras(
    model_cameras: Sequence[str], files: Sequence[str | os.PathLike[str]], missing: Sequence[str]
) -> dict[str, Path]:
    """Map camera files to the model's camera names.

    One file per model camera (in order; files of ``missing`` cameras are shown as ground truth
    but not fed to the model), or one file per *present* camera (in order).

    Raises:
        ConfigError: any other number of files (mismatched camera count).
    """
    absent = [c for c in model_cameras if c in missing]
    present = [c for c in model_cameras if c not in missing]
    if len(files) == len(model_cameras):
        return {c: Path(f) for c, f in zip(model_cameras, files, strict=True)}
    if absent and len(files) == len(present):
        return {c: Path(f) for c, f in zip(present, files, strict=True)}
    want = f"{len(model_cameras)}" + (
        f" (or {len(present)} without the --missing ones)" if absent else ""
    )
    raise ConfigError(
        f"camera count mismatch: the model has {len(model_cameras)} cameras "
        f"({', '.join(model_cameras)}) but {len(files)} --camera file(s) were given; pass {want} "
        "files in camera order, or mark absent cameras with --missing camN."
    )


@dataclass
class _Pending:
    """Scored-window bookkeeping between the model calls and the writers."""

    ends: list[int] = field(default_factory=list)
    raws: list[dict[str, np.ndarray]] = field(default_factory=list)


class _Outputs:
    """Streams per-frame rows to scores.csv and grid frames to recon.mp4; keeps score arrays."""

    def __init__(self, tmp: Path, analyzer: Analyzer, originals: set[str], video: bool):
        self.analyzer = analyzer
        self.cameras = list(analyzer.session.cameras)
        self.missing_cams = [c for c in self.cameras if c in analyzer.missing]
        self.originals = originals
        cap = analyzer.capture
        self.h, self.w, self.channels = cap.height, cap.width, cap.channels
        self.scale = max(1, min(4, 160 // max(self.h, self.w)))
        self.columns = 3 if self.missing_cams else 2
        self.csv_file = open(tmp / "scores.csv", "w", newline="")  # noqa: SIM115
        self.csv = csv.writer(self.csv_file)
        self.csv.writerow(["frame", "time", "score", "flagged", "window_end", *analyzer.part_names])
        self.video = None
        if video:
            gap = 2
            width = self.columns * self.w * self.scale + (self.columns - 1) * gap
            height = len(self.cameras) * self.h * self.scale + (len(self.cameras) - 1) * gap
            self.video = VideoWriter(tmp / "recon.mp4", cap.fps, width, height)
        self.times: list[float] = []
        self.scores: list[float] = []
        self.parts: list[np.ndarray] = []
        self.sq_err: dict[str, float] = {c: 0.0 for c in self.missing_cams if c in originals}
        self.sum_x = {c: np.zeros((self.h, self.w, 3), np.float64) for c in self.sq_err}
        self.sum_x2 = {c: np.zeros((self.h, self.w, 3), np.float64) for c in self.sq_err}

    def frame(
        self,
        index: int,
        t: float,
        end: int,
        score: float,
        parts: np.ndarray,
        originals: dict[str, np.ndarray],
        recon: dict[str, np.ndarray],
        imputed: dict[str, np.ndarray],
    ) -> None:
        flagged = bool(score > self.analyzer.threshold)
        self.csv.writerow(
            [index, f"{t:.4f}", f"{score:.5f}", int(flagged), end, *(f"{p:.5f}" for p in parts)]
        )
        self.times.append(t)
        self.scores.append(score)
        self.parts.append(parts)
        for c in self.sq_err:
            truth = as_rgb(originals[c]).astype(np.float64)
            self.sq_err[c] += float(np.mean((as_rgb(imputed[c]).astype(np.float64) - truth) ** 2))
            self.sum_x[c] += truth
            self.sum_x2[c] += truth * truth
        if self.video is not None:
            self.video.write(self._grid(originals, recon, imputed))

    def _grid(self, originals: dict, recon: dict, imputed: dict) -> np.ndarray:
        gap, s = 2, self.scale
        ch, cw = self.h * s, self.w * s
        out = np.full(
            (
                len(self.cameras) * ch + (len(self.cameras) - 1) * gap,
                self.columns * cw + (self.columns - 1) * gap,
                3,
            ),
            255,
            np.uint8,
        )
        blank = np.full((self.h, self.w, 3), 96, np.uint8)  # no such view: flat gray
        for r, cam in enumerate(self.cameras):
            cells = [originals.get(cam), recon.get(cam)]
            if self.columns == 3:
                cells.append(imputed.get(cam))
            for col, img in enumerate(cells):
                cell = blank if img is None else as_rgb(img)
                if s > 1:
                    cell = cell.repeat(s, axis=0).repeat(s, axis=1)
                y, x = r * (ch + gap), col * (cw + gap)
                out[y : y + ch, x : x + cw] = cell
        return out

    def imputation(self) -> dict[str, Any]:
        n = max(len(self.scores), 1)
        result = {}
        for c, err in self.sq_err.items():
            mean = self.sum_x[c] / n
            var = float(np.mean(self.sum_x2[c] / n - mean * mean))
            mse = err / n
            result[c] = {
                "mse_imputed": round(mse, 3),
                "mse_mean_frame": round(max(var, 0.0), 3),
                "psnr_imputed_db": round(_psnr(mse), 3),
                "psnr_mean_frame_db": round(_psnr(var), 3),
            }
        return result

    def close(self) -> None:
        self.csv_file.close()
        if self.video is not None:
            self.video.close()


def _psnr(mse: float) -> float:
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


_OUTPUT_MARKERS = ("summary.json", "scores.csv")


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty ``out`` unless ``overwrite``, and never overwrite what is not ours."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not overwrite:
        raise OutputExistsError(
            f"output directory '{out}' is not empty; pass --overwrite to replace it or choose "
            "another --out."
        )
    if not out.is_dir() or not any((out / m).is_file() for m in _OUTPUT_MARKERS):
        raise OutputExistsError(
            f"'{out}' is not an analyze output (no summary.json or scores.csv); refusing to "
            "delete it with --overwrite. Choose another --out."
        )


def _prepare_out(out: Path, overwrite: bool) -> Path:
    _check_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the result follows the umask
    return tmp


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _load_streams(
    analyzer: Analyzer,
    files: dict[str, Path],
    audio_from: str | os.PathLike[str] | None,
    motion_csv: str | os.PathLike[str] | None,
) -> tuple[AudioTrack | None, MotionLog | None]:
    probe_cameras(files)
    names = analyzer.modalities.names
    audio = motion = None
    if "audio" in names and "audio" not in analyzer.missing:
        src = Path(audio_from) if audio_from is not None else next(iter(files.values()))
        audio = decode_audio(src, analyzer.capture.sample_rate)
        if audio is None:
            raise MediaError(
                f"'{src}' has no audio track but the model uses audio; pass --audio-from FILE "
                "or --missing audio."
            )
    elif audio_from is not None and "audio" not in names:
        raise ConfigError("the model has no audio modality; drop --audio-from.")
    if "motion" in names and "motion" not in analyzer.missing:
        if motion_csv is None:
            raise ConfigError("the model uses motion; pass --motion CSV or --missing motion.")
        motion = read_motion_csv(motion_csv)
        dims = analyzer.modalities["motion"].shape[1]
        if motion.values.shape[1] != dims:
            raise ShapeError(
                f"motion CSV '{motion_csv}' has {motion.values.shape[1]} value columns "
                f"({', '.join(motion.columns)}), the model expects {dims}; pass the log the "
                "model was trained on."
            )
    elif motion_csv is not None and "motion" not in names:
        raise ConfigError("the model has no motion modality; drop --motion.")
    return audio, motion


def analyze(
    model: str | os.PathLike[str],
    cameras: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    config: AnalyzeConfig | None = None,
    *,
    audio_from: str | os.PathLike[str] | None = None,
    motion_csv: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
) -> Path:
    """Analyse a multi-camera recording with a model and write the outputs into ``out``.

    Args:
        model: a training run directory, an ``analyze.onnx`` or a TensorRT ``.plan``/``.engine``.
        cameras: camera files in the model's camera order (see :func:`assign_cameras`).
        out: output directory (scores.csv, timeline.png, recon.mp4, summary.json).
        config: options (:class:`AnalyzeConfig`).
        audio_from: file whose audio track is used (default: the first camera file).
        motion_csv: motion log (``time`` column + the model's motion columns).
        progress: called as ``progress(frames_done, frames_expected)``.

    Returns:
        ``out``.

    Raises:
        ConfigError: camera count mismatch, unknown ``missing`` names, inputs the model does not
            take (or lacks).
        MediaError: unreadable/truncated/corrupt media, no video or audio stream, frame size
            changing mid-stream, bad motion CSV, inputs shorter than one window.
        ShapeError: motion columns that do not match the model.
        OutputExistsError: ``out`` is not empty and ``overwrite`` is false.
        CheckpointError, MissingDependencyError: an unusable artifact or backend.
    """
    config = config or AnalyzeConfig()
    out = Path(out)
    if not cameras:
        raise ConfigError("no camera given; pass at least one --camera FILE.")
    _check_out(out, config.overwrite)
    started = _time.perf_counter()
    session = ModelSession(
        model,
        device=config.device,
        threads=config.threads,
        fps=config.fps,
        sample_rate=config.sample_rate,
    )
    analyzer = Analyzer(
        session=session, missing=config.missing, threshold=config.threshold, hop=config.hop
    )
    if config.hop > session.capture.clip_frames:
        raise ConfigError(
            f"--hop {config.hop} is longer than the model's window of "
            f"{session.capture.clip_frames} frames; frames between windows would get no score. "
            f"Use --hop 1..{session.capture.clip_frames}."
        )
    files = assign_cameras(session.cameras, cameras, analyzer.missing)
    load_s = _time.perf_counter() - started
    stream_started = _time.perf_counter()
    audio, motion = _load_streams(analyzer, files, audio_from, motion_csv)
    tmp = _prepare_out(out, config.overwrite)
    try:
        summary = _run(analyzer, files, audio, motion, tmp, config, progress, stream_started)
        summary["timing"]["load_s"] = round(load_s, 4)
        summary["timing"]["wall_s"] = round(_time.perf_counter() - started, 4)
        summary["inputs"] = {
            "cameras": {c: str(p) for c, p in files.items()},
            "audio_from": None if audio is None else str(audio.path),
            "motion_csv": None if motion is None else str(motion.path),
        }
        from edgevae._util.artifacts import write_json_atomic

        write_json_atomic(tmp / "summary.json", summary)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _run(
    analyzer: Analyzer,
    files: dict[str, Path],
    audio: AudioTrack | None,
    motion: MotionLog | None,
    tmp: Path,
    config: AnalyzeConfig,
    progress: ProgressFn | None,
    started: float,
) -> dict[str, Any]:
    cap = analyzer.capture
    t_frames, hop = cap.clip_frames, analyzer.hop
    buf = analyzer.buffer
    need_full = [c for c in analyzer.missing if c in files]  # missing cams with ground truth
    full_mask = analyzer.mask.copy()
    for c in need_full:
        full_mask[analyzer.modalities.index(c)] = 1.0
    writer = _Outputs(tmp, analyzer, set(files), config.video)
    # a TensorRT engine takes batches within its optimisation profile only
    max_batch = getattr(analyzer.session.runner, "batch_range", (1, config.batch_size))[1]
    batch_size = max(1, min(config.batch_size, int(max_batch)))
    pending = _Pending()
    originals: dict[int, dict[str, np.ndarray]] = {}
    times: dict[int, float] = {}
    state = {"next_frame": 0, "model_s": 0.0, "windows": 0}

    def process() -> None:
        if not pending.ends:
            return
        batch = {k: np.stack([r[k] for r in pending.raws]) for k in pending.raws[0]}
        b = len(pending.ends)
        t0 = _time.perf_counter()
        main = analyzer.session.run(batch, np.repeat(analyzer.mask[None], b, axis=0))
        with_truth = (
            analyzer.session.run(batch, np.repeat(full_mask[None], b, axis=0))
            if need_full
            else None
        )
        state["model_s"] += _time.perf_counter() - t0
        state["windows"] += b
        for i, end in enumerate(pending.ends):
            first = state["next_frame"]
            for f in range(first, end + 1):
                pos = t_frames - 1 - (end - f)  # this frame's position in the window
                recon, imputed = {}, {}
                for c in analyzer.session.cameras:
                    spec = analyzer.modalities[c]
                    frames_c = _frames(main.recon[c][i], spec.channels)
                    if c in analyzer.missing:
                        imputed[c] = frames_c[pos]
                        if with_truth is not None and c in need_full:
                            recon[c] = _frames(with_truth.recon[c][i], spec.channels)[pos]
                    else:
                        recon[c] = frames_c[pos]
                writer.frame(
                    f,
                    times[f],
                    end,
                    float(main.score[i]),
                    main.parts[i],
                    originals.pop(f),
                    recon,
                    imputed,
                )
            state["next_frame"] = end + 1
        pending.ends.clear()
        pending.raws.clear()

    with FileStream(files, cap, audio=audio, motion=motion) as stream:
        total = stream.estimated_frames()
        try:
            k = -1
            for step in stream:
                k, t, frame = step.index, step.time, step.frames
                present = {c: frame[c] for c in analyzer.cameras}
                buf.push(
                    present,
                    t,
                    step.audio_chunk,
                    step.motion,
                    converted=True,
                    audio_start=stream.audio_start,
                )
                originals[k] = frame
                times[k] = t
                if buf.full and (buf.count - t_frames) % hop == 0:
                    analyzer.check_streams()
                    pending.ends.append(k)
                    pending.raws.append(analyzer.window_arrays())
                    if len(pending.ends) >= batch_size:
                        process()
                if progress is not None and (k + 1) % 8 == 0:
                    progress(k + 1, total)
            n = k + 1
            if n < t_frames:
                raise MediaError(
                    f"the inputs overlap for {n / cap.fps:.2f} s ({n} frames at {cap.fps:g} fps), "
                    f"shorter than one window of {t_frames} frames; pass longer recordings."
                )
            last_end = pending.ends[-1] if pending.ends else state["next_frame"] - 1
            if last_end < n - 1:  # the tail: one more window ending at the last frame
                pending.ends.append(n - 1)
                pending.raws.append(analyzer.window_arrays())
            process()
            if progress is not None:
                progress(n, n)
        finally:
            writer.close()
        alignment = stream.report(n)
    stream_s = _time.perf_counter() - started
    return _summary(analyzer, writer, alignment, n, state, stream_s, tmp, motion)


def _frames(sample: np.ndarray, channels: int) -> np.ndarray:
    from edgevae.analyze.analyzer import video_frames

    return video_frames(sample, channels)


def _summary(
    analyzer: Analyzer,
    writer: _Outputs,
    alignment: dict[str, Any],
    n: int,
    state: dict[str, Any],
    stream_s: float,
    tmp: Path,
    motion: MotionLog | None,
) -> dict[str, Any]:
    cap = analyzer.capture
    times = np.asarray(writer.times)
    scores = np.asarray(writer.scores, np.float64)
    parts = np.stack(writer.parts) if writer.parts else np.zeros((0, len(analyzer.part_names)))
    segments = flagged_segments(
        times, scores, parts, analyzer.part_names, analyzer.threshold, 1 / cap.fps
    )
    write_timeline(
        tmp / "timeline.png",
        times,
        scores,
        parts,
        analyzer.part_names,
        analyzer.threshold,
        segments,
        title=f"{Path(str(analyzer.session.artifact)).name}: {len(segments)} flagged "
        f"segment(s), threshold {analyzer.threshold:.2f}",
    )
    duration = n / cap.fps
    finite = scores[np.isfinite(scores)]
    stats = {
        "mean": float(np.mean(finite)) if finite.size else None,
        "p50": float(np.percentile(finite, 50)) if finite.size else None,
        "p95": float(np.percentile(finite, 95)) if finite.size else None,
        "max": float(np.max(finite)) if finite.size else None,
    }
    windows = state["windows"]
    outputs = ["scores.csv", "timeline.png", "summary.json"]
    if writer.video is not None:
        outputs.insert(2, "recon.mp4")
    return {
        "model": describe(analyzer),
        "frames": n,
        "duration_s": round(duration, 4),
        "alignment": alignment,
        "threshold": analyzer.threshold,
        "threshold_source": analyzer.threshold_source,
        "flagged_frames": int(np.sum(scores > analyzer.threshold)),
        "flagged_segments": segments,
        "score": stats,
        "score_parts": analyzer.part_names,
        "imputation": writer.imputation(),
        "motion_skipped_rows": (motion.skipped_rows if motion is not None else 0),
        "timing": {
            "stream_s": round(stream_s, 4),
            "model_s": round(state["model_s"], 4),
            "realtime_factor": round(duration / stream_s, 3) if stream_s > 0 else None,
            "frames_per_s": round(n / stream_s, 2) if stream_s > 0 else None,
            "windows": windows,
            "windows_per_s_model": round(windows / state["model_s"], 2)
            if state["model_s"] > 0
            else None,
            "note": "realtime_factor = seconds of input analysed per second of stream_s (audio "
            "and video decoding, preprocessing, model, writing scores.csv/recon.mp4), > 1 is "
            "faster than real time; load_s (model load) and the timeline plot are not in it",
        },
        "recon_layout": {
            "rows": list(analyzer.session.cameras),
            "columns": ["original", "reconstruction"]
            + (["imputed"] if writer.columns == 3 else []),
            "scale": writer.scale,
        },
        "outputs": outputs,
        "frame_scoring": "frame f takes the first scored window containing it (hop "
        f"{analyzer.hop}: windows of {cap.clip_frames} frames end every {analyzer.hop} frame(s))",
    }
