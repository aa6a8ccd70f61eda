"""``edgevae data ...``: make, ingest and look at datasets."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(help="Make, ingest and inspect datasets.", no_args_is_help=True)

_VERIFY_MODES = ("hash", "size", "none")


@app.command("synth")
def synth(
    out: Path = typer.Option(..., "--out", help="Dataset directory to create."),
    preset: str = typer.Option("default", "--preset", help="Size preset: tiny or default."),
    seed: int = typer.Option(0, "--seed", help="Master seed; same seed -> identical bytes."),
    cameras: int | None = typer.Option(
        None, "--cameras", help="Camera views (1-8); default 3: top, front, oblique."
    ),
    videos: int | None = typer.Option(
        None, "--videos", help="Total videos, split train:val:test in the preset's proportions."
    ),
    clips_per_video: int | None = typer.Option(
        None, "--clips-per-video", help="Consecutive clips cut from each video."
    ),
    workers: int = typer.Option(
        0, "--workers", help="Rendering processes (0 = one per core); never changes the output."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out."),
) -> None:
    """Generate the built-in synthetic multi-view audio-visual benchmark.

    Moving objects in a 3D box seen by several cameras, heard by a microphone and followed by a
    noisy tracker; test videos hold labelled anomaly segments of six types.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from edgevae.data.synth import preset_config, synthesize

    overrides: dict[str, int] = {"seed": seed}
    if cameras is not None:
        overrides["cameras"] = cameras
    if clips_per_video is not None:
        overrides["clips_per_video"] = clips_per_video
    config = preset_config(preset, **overrides)
    if videos is not None:
        config = config.with_total_videos(videos)
    start = time.perf_counter()
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        total = config.total_videos * config.clips_per_video
        task = bar.add_task(f"synth {preset}", total=total)
        path = synthesize(
            out,
            config,
            overwrite=overwrite,
            workers=workers,
            progress=lambda done, _total: bar.update(task, completed=done),
        )
    elapsed = time.perf_counter() - start
    from edgevae.data.inspect import summarize

    summary = summarize(path, verify="none")
    test = summary["splits"]["test"]
    clips = " / ".join(f"{s['clips']} {n}" for n, s in summary["splits"].items())
    typer.echo(
        f"wrote {path}: {clips} clips, {config.cameras} camera(s), "
        f"{100 * test['anomalous_fraction']:.1f}% anomalous test frames, in {elapsed:.1f} s"
    )


@app.command("inspect")
def inspect(
    path: Path = typer.Argument(..., help="Dataset directory."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write a contact sheet PNG (a normal clip + one per anomaly type)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON instead."),
    verify: str = typer.Option("hash", "--verify", help="Shard check: hash, size or none."),
) -> None:
    """Summarise a dataset: splits, anomaly counts by type, modalities, normalisation."""
    from edgevae._util.choices import check_choice
    from edgevae.data.format import open_dataset
    from edgevae.data.inspect import contact_sheet, summarize

    check_choice(verify, _VERIFY_MODES, "--verify mode")
    reader = open_dataset(path, verify=verify)
    summary = summarize(reader)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        _print_tables(summary)
    if plot is not None:
        written = contact_sheet(reader, plot)
        if not as_json:
            typer.echo(f"contact sheet: {written}")


def _print_tables(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    origin = ", ".join(
        f"{k} {summary[k]}"
        for k in ("generator", "generator_version", "preset", "seed")
        if summary.get(k) is not None
    )
    console.print(f"[bold]{summary['path']}[/bold]  {origin}")
    types = summary["anomaly_types"][1:]
    names = list(summary["splits"])
    splits = Table(title="splits", title_justify="left")
    for col in ("split", "clips", "videos", "frames", "anomalous frames"):
        splits.add_column(col, justify="left" if col == "split" else "right")
    for name, s in summary["splits"].items():
        n_anomalous = sum(s["anomalous_frames"].values())
        splits.add_row(
            name,
            str(s["clips"]),
            str(s["videos"]),
            str(s["frames"]),
            f"{n_anomalous} ({100 * s['anomalous_fraction']:.1f}%)",
        )
    console.print(splits)
    if types:
        by_type = Table(title="anomalous frames by type", title_justify="left")
        by_type.add_column("type")
        for name in names:
            by_type.add_column(name, justify="right")
        for t in types:
            by_type.add_row(t, *(str(summary["splits"][n]["anomalous_frames"][t]) for n in names))
        console.print(by_type)
    mods = Table(title="modalities (mask column order)", title_justify="left")
    for col in ("#", "name", "kind", "shape", "dtype", "share"):
        mods.add_column(col)
    for i, m in enumerate(summary["modalities"]):
        shape = "x".join(map(str, m["shape"]))
        mods.add_row(str(i), m["name"], m["kind"], shape, m["dtype"], m["share"] or "-")
    console.print(mods)
    norm = Table(title="normalisation (train-split statistics)", title_justify="left")
    for col in ("name", "rule", "mean range", "std range"):
        norm.add_column(col)
    for name, n in summary["normalization"].items():
        ranges = [
            f"{n[key][0]:.3g} .. {n[key][1]:.3g}" if key in n else "-"
            for key in ("mean_range", "std_range")
        ]
        norm.add_row(name, n["rule"], *ranges)
    console.print(norm)
