"""``edgevae analyze``: run a model over camera files and write scores and videos (a skin over
:func:`edgevae.analyze.run.analyze`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from edgevae.cli.ingest import FrameProgress


def register(app: typer.Typer) -> None:
    """Add the ``analyze`` command to ``app``."""
    app.command("analyze")(analyze_command)


def analyze_command(
    model: Annotated[
        Path,
        typer.Option(
            "--model", help="Training run dir, analyze.onnx, or TensorRT .plan/.engine file."
        ),
    ],
    camera: Annotated[
        list[Path],
        typer.Option("--camera", help="Camera file (repeat, in the model's camera order)."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output directory.")],
    audio_from: Annotated[
        Path | None,
        typer.Option("--audio-from", help="File whose audio track to use (default: --camera #1)."),
    ] = None,
    motion: Annotated[
        Path | None, typer.Option("--motion", help="Motion CSV with a 'time' column (s).")
    ] = None,
    missing: Annotated[
        list[str] | None,
        typer.Option(
            "--missing",
            help="Modality to treat as absent (repeatable): a camera to impute (its file, if "
            "given, is shown as ground truth), audio or motion.",
        ),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(help="Anomaly threshold (default: from the model's validation statistics)."),
    ] = None,
    hop: Annotated[int, typer.Option(help="Frames between scored windows (1 = every frame).")] = 1,
    batch_size: Annotated[int, typer.Option(help="Windows per model call.")] = 16,
    video: Annotated[bool, typer.Option("--video/--no-video", help="Write recon.mp4.")] = True,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    threads: Annotated[
        int | None, typer.Option(help="Intra-op threads of the backend (default: its own).")
    ] = None,
    fps: Annotated[
        float | None, typer.Option(help="Override the frame rate stored with the model.")
    ] = None,
    sample_rate: Annotated[
        int | None, typer.Option(help="Override the audio rate stored with the model (Hz).")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --out.")] = (
        False
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print summary.json to stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress display.")] = False,
) -> None:
    """Stream camera files (+ audio, motion) through a model: per-frame anomaly scores,
    reconstructions and imputed cameras.

    Writes scores.csv (per frame: time, score, each score part), timeline.png (score over time,
    threshold, flagged segments), recon.mp4 (per camera: original | reconstruction | imputed) and
    summary.json (flagged segments, real-time factor, throughput). The backend follows the
    artifact: PyTorch for a run directory, ONNX Runtime for .onnx, TensorRT for an engine.
    """
    from rich.console import Console

    from edgevae.analyze.run import AnalyzeConfig, analyze

    config = AnalyzeConfig(
        missing=tuple(missing or ()),
        threshold=threshold,
        hop=hop,
        batch_size=batch_size,
        video=video,
        device=device,
        threads=threads,
        fps=fps,
        sample_rate=sample_rate,
        overwrite=overwrite,
    )
    with FrameProgress(Console(stderr=True), "analyze", enabled=not quiet) as bar:
        path = analyze(
            model,
            camera,
            out,
            config,
            audio_from=audio_from,
            motion_csv=motion,
            progress=bar.update,
        )
    summary = json.loads((path / "summary.json").read_text())
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    for line in summary_lines(path, summary):
        typer.echo(line)


def summary_lines(path: Path, s: dict[str, Any], max_segments: int = 5) -> list[str]:
    """Human lines about an analysis: frames, threshold, flagged segments, imputation, speed."""
    timing = s["timing"]
    segments = s["flagged_segments"]
    lines = [
        f"wrote {path}: {', '.join(s['outputs'])}",
        f"{s['frames']} frames ({s['duration_s']:.2f} s) with {s['model']['backend']}; threshold "
        f"{s['threshold']:.3g} ({s['threshold_source']}); {len(segments)} flagged segment(s), "
        f"{s['flagged_frames']} frame(s)",
    ]
    for seg in sorted(segments, key=lambda g: -g["peak_score"])[:max_segments]:
        lines.append(
            f"  {seg['start_time']:.2f}-{seg['end_time']:.2f} s: peak {seg['peak_score']:.3g} "
            f"at {seg['peak_time']:.2f} s, mostly {seg['top_part']}"
        )
    if len(segments) > max_segments:
        lines.append(f"  ... {len(segments) - max_segments} more in summary.json")
    for cam, imp in s["imputation"].items():
        lines.append(
            f"imputed {cam}: PSNR {imp['psnr_imputed_db']:.1f} dB vs "
            f"{imp['psnr_mean_frame_db']:.1f} dB for its mean frame"
        )
    if s["model"].get("capture_source") == "defaults":
        lines.append(
            "note: the model's frame rate and audio rate were not found (training dataset "
            f"metadata unavailable); used the defaults ({s['model']['capture']['fps']:g} fps, "
            f"{s['model']['capture']['sample_rate']} Hz); pass --fps/--sample-rate if it was "
            "trained at other rates"
        )
    if s.get("motion_skipped_rows"):
        lines.append(f"skipped {s['motion_skipped_rows']} motion row(s) with NaN/empty cells")
    lines.append(
        f"real-time factor {timing['realtime_factor']} ({timing['frames_per_s']} frames/s, "
        f"{timing['windows']} windows; model {timing['model_s']:.2f} s of "
        f"{timing['stream_s']:.2f} s streaming, {timing['load_s']:.2f} s loading)"
    )
    return lines
