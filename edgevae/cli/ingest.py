"""``edgevae data ingest``: turn camera/audio/motion files into a dataset (a skin over
:func:`edgevae.data.ingest.ingest`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    """Add the ``ingest`` command to the ``data`` group ``app``."""
    app.command("ingest")(ingest_command)


class FrameProgress:
    """A rich progress bar over decoded frames with a frames/s column, on stderr.

    Started lazily on the first update, so an error before any frame prints only itself. Use as
    a context manager; ``update(done, total)`` is the library's progress callback (total 0 =
    unknown).
    """

    def __init__(self, console: Any, what: str, *, enabled: bool = True) -> None:
        self.console, self.what, self.enabled = console, what, enabled
        self.progress: Any = None
        self.task: Any = None
        self.started = time.perf_counter()

    def update(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.progress is None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("frames"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task(self.what, total=total or None, rate="")
        elapsed = time.perf_counter() - self.started
        rate = f"{done / elapsed:.0f} frames/s" if elapsed > 0 else ""
        self.progress.update(self.task, completed=done, total=max(total, done) or None, rate=rate)

    def __enter__(self) -> FrameProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()


def parse_size(text: str) -> tuple[int, int]:
    """``"64"`` -> (64, 64); ``"64x48"`` (width x height) -> (48, 64) as (height, width).

    Raises:
        ConfigError: anything else.
    """
    from edgevae.errors import ConfigError

    parts = text.lower().replace("×", "x").split("x")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        nums = []
    if len(nums) not in (1, 2):
        raise ConfigError(
            f"--size '{text}' is not a size; pass S (square) or WxH in pixels, e.g. 64 or 96x64."
        )
    width, height = (nums[0], nums[0]) if len(nums) == 1 else nums
    return height, width


def ingest_command(
    camera: Annotated[
        list[Path],
        typer.Option("--camera", help="Camera file (repeat per camera, in cam0, cam1, ... order)."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Dataset directory to write or append to.")],
    audio_from: Annotated[
        Path | None,
        typer.Option("--audio-from", help="File whose audio track to use (default: --camera #1)."),
    ] = None,
    motion: Annotated[
        Path | None,
        typer.Option("--motion", help="Motion CSV: a 'time' column (s) + numeric columns."),
    ] = None,
    fps: Annotated[float, typer.Option(help="Common output frame rate.")] = 10.0,
    size: Annotated[str, typer.Option(help="Output frame size: S or WxH pixels.")] = "64",
    gray: Annotated[bool, typer.Option("--gray/--rgb", help="Grayscale or RGB frames.")] = True,
    clip_frames: Annotated[int, typer.Option(help="Frames per clip (T).")] = 8,
    split: Annotated[str, typer.Option(help="train, val or test.")] = "train",
    append: Annotated[
        bool, typer.Option("--append", help="Add this recording to an existing dataset.")
    ] = False,
    allow_missing: Annotated[
        bool,
        typer.Option(
            "--allow-missing", help="A file without audio stores audio as missing (masked)."
        ),
    ] = False,
    no_audio: Annotated[
        bool, typer.Option("--no-audio", help="No audio modality (camera-only rigs).")
    ] = False,
    sample_rate: Annotated[int, typer.Option(help="Audio resampling rate (Hz).")] = 8000,
    n_mels: Annotated[int, typer.Option(help="Mel bins of the audio spectrogram.")] = 32,
    audio_frames: Annotated[int, typer.Option(help="Spectrogram columns per clip.")] = 32,
    motion_steps: Annotated[int, typer.Option(help="Motion readings per clip.")] = 16,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --out.")] = (
        False
    ),
    as_json: Annotated[
        bool, typer.Option("--json", help="Print this recording's ingest report as JSON.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress display.")] = False,
) -> None:
    """Decode camera files with PyAV, align them (and the audio and motion log) by presentation
    timestamps, resample to --fps, resize, and cut into clips with a log-mel spectrogram and
    interpolated motion per clip.

    Cameras may differ in frame rate, resolution and length: only their overlap is used and the
    trimmed seconds are reported. A new dataset starts with --split train; add validation and
    test recordings with --append --split val|test.
    """
    from rich.console import Console

    from edgevae.data.ingest import IngestConfig, ingest
    from edgevae.errors import ConfigError

    if no_audio and (audio_from is not None or allow_missing):
        raise ConfigError("--no-audio contradicts --audio-from/--allow-missing; pass only one.")
    height, width = parse_size(size)
    config = IngestConfig(
        fps=fps,
        width=width,
        height=height,
        channels=1 if gray else 3,
        clip_frames=clip_frames,
        sample_rate=sample_rate,
        n_mels=n_mels,
        audio_frames=audio_frames,
        motion_steps=motion_steps,
        audio=not no_audio,
        allow_missing=allow_missing,
        overwrite=overwrite,
    )
    started = time.perf_counter()
    with FrameProgress(Console(stderr=True), "ingest", enabled=not quiet) as bar:
        path = ingest(
            camera,
            out,
            config,
            audio_from=audio_from,
            motion_csv=motion,
            split=split,
            append=append,
            progress=bar.update,
        )
    elapsed = time.perf_counter() - started
    index = json.loads((path / "index.json").read_text())
    report = index["meta"]["ingest"][-1]
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(summary_line(path, report, elapsed))


def summary_line(path: Path, report: dict[str, Any], elapsed: float) -> str:
    """One human line about an ingest: clips, span, what was trimmed, skipped, throughput."""
    span = report["span"]
    trimmed = [
        f"{s['name']} {s['trimmed_head_s']:.2f}+{s['trimmed_tail_s'] or 0:.2f} s"
        for s in report["sources"]
        if s["trimmed_head_s"] > 0.005 or (s["trimmed_tail_s"] or 0) > 0.005
    ]
    decoded = sum(s.get("frames_decoded", 0) for s in report["sources"])
    parts = [
        f"wrote {path}: {report['clips']} {report['split']} clips (video {report['video_id']}) "
        f"from {span['frames']} frames at {report['fps']:g} fps, "
        f"span {span['start']:.2f}-{span['end']:.2f} s",
    ]
    if trimmed:
        parts.append("trimmed (head+tail) " + ", ".join(trimmed))
    if report.get("dropped_tail_frames"):
        parts.append(f"{report['dropped_tail_frames']} frame(s) after the last full clip dropped")
    if report.get("audio_missing"):
        parts.append("audio missing (masked)")
    skipped = sum(s.get("skipped_rows", 0) for s in report["sources"])
    if skipped:
        parts.append(f"skipped {skipped} motion row(s) with NaN/empty cells")
    elapsed = max(elapsed, 1e-9)
    parts.append(
        f"{decoded / elapsed:.0f} decoded frames/s ({span['frames'] / elapsed:.0f} aligned "
        f"multi-camera frames/s, {(span['end'] - span['start']) / elapsed:.1f}x real time)"
    )
    return "; ".join(parts)
