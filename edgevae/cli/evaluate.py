"""``edgevae eval``: evaluate a trained run on a labelled dataset (a skin over
:func:`edgevae.evaluate.run.evaluate`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command to ``app``."""
    app.command("eval")(eval_command)


def eval_command(
    run: Annotated[Path, typer.Argument(help="Run directory written by `edgevae train`.")],
    data: Annotated[
        Path, typer.Option("--data", help="Dataset with a labelled test split (anomalies).")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", help="Output directory (default: RUN/eval).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print metrics.json to stdout instead of tables.")
    ] = False,
    batch_size: Annotated[int, typer.Option(help="Clips per forward pass.")] = 64,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    imputation_clips: Annotated[
        int, typer.Option(help="Normal clips used for imputation PSNR.")
    ] = 256,
    figures: Annotated[bool, typer.Option(help="Write the PNG figures.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress display.")] = False,
) -> None:
    """Frame-level AUROC/AUPRC/EER overall and per anomaly type, per score part, with each camera
    masked out, and imputation PSNR of each camera vs baselines; writes metrics.json + figures."""
    from rich.console import Console

    from edgevae.evaluate.run import EvalConfig, evaluate

    cfg = EvalConfig(
        batch_size=batch_size,
        device=device,
        imputation_clips=imputation_clips,
        figures=figures,
        overwrite=overwrite,
    )
    err = Console(stderr=True)
    display = None if quiet else _Progress(err)
    try:
        result_dir = evaluate(run, data, cfg, progress=display, out_dir=out)
    finally:
        if display is not None:
            display.close()
    result = json.loads((result_dir / "metrics.json").read_text())
    if as_json:
        typer.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    console = Console()
    for table in tables(result):
        console.print(table)
    console.print(
        f"wrote [bold]{result_dir}[/]: metrics.json"
        + (f" and {len(result['figures'])} figures" if result["figures"] else "")
    )


class _Progress:
    """A rich progress bar per evaluation stage, on stderr (stdout stays clean for --json)."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            transient=True,
        )
        self.tasks: dict[str, Any] = {}
        self.started = False

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.started:  # lazily: an error before any progress prints nothing but itself
            self.progress.start()
            self.started = True
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(self.tasks[stage], completed=done)

    def close(self) -> None:
        if self.started:
            self.progress.stop()


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def tables(result: dict[str, Any]) -> list[Any]:
    """The rich tables of a metrics.json document: detection, score parts, imputation."""
    from rich.table import Table

    model = result["model"]
    order = [t for t in result["anomaly_types"] if t in result["per_type"]]
    rows = [("overall", result["overall"]), *((t, result["per_type"][t]) for t in order)]
    det = Table(
        title=f"Frame-level anomaly detection: {model.get('kind')} {model.get('preset')} "
        f"({result['frames']} test frames)",
        caption="AUROC: micro over all frames; min-max: scores normalised per video first; "
        "macro: mean per-video AUROC; per type: that type's frames vs all normal frames.",
    )
    det.add_column("anomaly type", no_wrap=True)
    det.add_column("frames", justify="right")
    for name in ("AUROC", "min-max", "macro", "AUPRC", "EER"):
        det.add_column(name, justify="right")
    for name, m in rows:
        det.add_row(
            name,
            str(m["anomalous_frames"]),
            _fmt(m["auroc"]),
            _fmt(m["auroc_minmax"]),
            _fmt(m["auroc_macro"]),
            _fmt(m["auprc"]),
            _fmt(m["eer"]),
            style="bold" if name == "overall" else None,
        )
    out = [det]

    masked = result["camera_masked"]
    if masked:
        cam_table = Table(title="AUROC with one camera masked out (mask column set to 0)")
        cam_table.add_column("anomaly type", no_wrap=True)
        cam_table.add_column("all present", justify="right")
        for cam in masked:
            cam_table.add_column(f"without {cam}", justify="right")
        for name, m in rows:
            cells = [name, _fmt(m["auroc"])]
            for cam_result in masked.values():
                sub = (
                    cam_result["overall"] if name == "overall" else cam_result["per_type"].get(name)
                )
                cells.append(_fmt(sub["auroc"] if sub else None))
            cam_table.add_row(*cells, style="bold" if name == "overall" else None)
        out.append(cam_table)

    parts = {p: result["parts"][p] for p in result["part_names"]}
    part_table = Table(title="AUROC of each score part alone (which part catches which type)")
    part_table.add_column("anomaly type", no_wrap=True)
    for part in parts:
        part_table.add_column(part.replace("recon_", "rec ").replace("_", " "), justify="right")
    for name, _ in rows:
        part_table.add_row(
            name,
            *(
                _fmt(p["overall"] if name == "overall" else p["per_type"].get(name))
                for p in parts.values()
            ),
        )
    out.append(part_table)

    if result["imputation"]:
        imp = Table(
            title=f"Imputation PSNR (dB) of each camera from the other modalities, on "
            f"{result['imputation_split']} clips",
            caption="reconstruction: the camera present; mean frame: the mean train frame; "
            "copy: the best other camera copied.",
        )
        for col in ("camera", "imputed", "reconstruction", "mean frame", "copy", "clips"):
            imp.add_column(col, justify="left" if col == "camera" else "right")
        for cam, r in result["imputation"].items():
            copy = _fmt(r["nearest_camera_psnr"], 2)
            if r["nearest_camera"]:
                copy += f" ({r['nearest_camera']})"
            imp.add_row(
                cam,
                _fmt(r["model_psnr"], 2),
                _fmt(r["reconstruction_psnr"], 2),
                _fmt(r["mean_frame_psnr"], 2),
                copy,
                str(r["clips"]),
            )
        out.append(imp)
    return out
