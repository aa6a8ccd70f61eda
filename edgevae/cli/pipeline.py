"""``edgevae pipeline``: the main job, from built-in data to a benchmarked, gated artifact.

A skin over :func:`edgevae.pipeline.run.pipeline`: stage lines and the training / evaluation /
benchmark progress on stderr, then the headline of ``report.md`` and where it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    """Add the ``pipeline`` command to ``app``."""
    app.command("pipeline")(pipeline_command)


def pipeline_command(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Run directory (default runs/pipeline, or runs/quick with --quick)."
        ),
    ] = None,
    preset: Annotated[str, typer.Option(help="Model size: nano, small or base.")] = "nano",
    quick: Annotated[
        bool, typer.Option(help="CI-sized run: tiny data, 30 s of training (about 3 minutes).")
    ] = False,
    train_minutes: Annotated[
        float | None,
        typer.Option(help="Training time budget in minutes (default 9, quick 0.5)."),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="Benchmark threads (default: every core).")
    ] = None,
    device: Annotated[str, typer.Option(help="Training/eval device: cpu, cuda or auto.")] = "cpu",
    seed: Annotated[int, typer.Option(help="Data and training seed.")] = 0,
    force: Annotated[
        bool, typer.Option(help="Rerun every stage, even those whose outputs are current.")
    ] = False,
    quiet: Annotated[bool, typer.Option(help="Only stage lines, no progress bars.")] = False,
) -> None:
    """Synthesise data, train, evaluate, export, quantize (FP16, INT8 for TensorRT and the CPU),
    benchmark, and write report.md. Resumable: current stages are skipped."""
    from rich.console import Console

    from edgevae.pipeline.config import PipelineConfig
    from edgevae.pipeline.run import pipeline

    cfg = PipelineConfig(
        preset=preset,
        quick=quick,
        train_minutes=train_minutes,
        threads=threads,
        device=device,
        seed=seed,
    )
    out = out or Path("runs/quick" if quick else "runs/pipeline")
    err = Console(stderr=True)
    display = _Display(err, quiet)
    report = pipeline(out, cfg, display.hooks(), force=force)
    display.close()
    console = Console()
    console.print(f"[bold green]done[/]: {report}")
    for line in _headline(report):
        console.print(line, soft_wrap=True)
    console.print(
        f"next: open {report}; analyze your own videos with "
        f"`edgevae analyze --model {out / 'train'} --camera ...`"
    )


class _Display:
    """Stage lines plus the per-stage progress displays of train, eval and bench."""

    def __init__(self, console: Any, quiet: bool) -> None:
        self.console = console
        self.quiet = quiet
        self.index = 0
        self.current: Any = None

    def hooks(self) -> Any:
        from edgevae.pipeline.run import Hooks

        return Hooks(
            stage_start=self.start,
            stage_done=self.done,
            line=self.line,
            train_progress=None if self.quiet else self.train,
            eval_progress=None if self.quiet else self.eval,
            bench_progress=None if self.quiet else self.bench,
        )

    def start(self, name: str, description: str) -> None:
        self.close()
        self.console.print(f"[bold cyan]▶ {name}[/]: {description}", soft_wrap=True)

    def done(self, result: Any) -> None:
        self.close()
        if result.status == "skipped":
            self.console.print(f"[dim]✓ {result.name}: up to date, skipped[/]")
        else:
            self.console.print(f"[green]✓ {result.name}[/] in {result.seconds:.1f} s")

    def line(self, text: str) -> None:
        from rich.markup import escape

        self.console.print(f"[dim]  {escape(text)}[/]", soft_wrap=True)

    def train(self, event: Any) -> None:
        if self.current is None:
            from edgevae.cli.train import _ProgressDisplay

            self.current = _ProgressDisplay(self.console)
        self.current(event)

    def eval(self, stage: str, done: int, total: int) -> None:
        if self.current is None:
            from edgevae.cli.evaluate import _Progress

            self.current = _Progress(self.console)
        self.current(stage, done, total)

    def bench(self, event: str, info: dict[str, Any]) -> None:
        if self.current is None:
            from edgevae.cli.bench import _progress

            self.current = _progress(self.console)
        self.current(event, info)

    def close(self) -> None:
        if self.current is not None and hasattr(self.current, "close"):
            self.current.close()
        self.current = None


def _headline(report: Path) -> list[str]:
    """The summary bullet lines at the top of report.md."""
    lines = report.read_text().splitlines()
    return [ln for ln in lines[:12] if ln.startswith("- ")]
