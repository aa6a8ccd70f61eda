"""``edgevae train``: train a model on a dataset (a thin skin over :func:`edgevae.train.train`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from edgevae.train.progress import ProgressEvent


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to ``app``."""
    app.command("train")(train_command)


def train_command(
    data: Annotated[Path, typer.Option("--data", help="Dataset directory (train + val splits).")],
    out: Annotated[Path, typer.Option("--out", help="Run directory to write.")],
    preset: Annotated[
        str | None, typer.Option(help="Model size: nano, small or base (default nano).")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="mvae, concat-ae or unimodal (default mvae).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs (default 30).")] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(help="Clips per step, summed over all processes (global batch; default 32)."),
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default 0.001).")] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda or cuda:N (default auto).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default 0).")] = None,
    max_minutes: Annotated[
        float | None, typer.Option(help="Time budget; stops at a step boundary, resumable.")
    ] = None,
    patience: Annotated[
        int | None, typer.Option(help="Early stopping patience in epochs (0 = off) (default 5).")
    ] = None,
    num_workers: Annotated[
        int | None, typer.Option(help="DataLoader worker processes (default 0).")
    ] = None,
    nproc: Annotated[
        int | None,
        typer.Option(
            help="Data-parallel processes on this machine: launches torchrun for you. For "
            "several machines run `torchrun ... -m edgevae train` (docs/distributed.md)."
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(help="Data-parallel backend: auto, gloo (CPU) or nccl (GPU) (default auto)."),
    ] = None,
    score_combine: Annotated[
        str | None,
        typer.Option(
            help="Anomaly score from its standardised parts: max (the largest) or sum "
            "(default max)."
        ),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the run in --out.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress display.")] = False,
) -> None:
    """Train a model; checkpoints every epoch, early stopping, resumable with --resume.

    --resume: omitted options keep stored values; --epochs/--device/--max-minutes/--backend/
    --score-combine may change, and so may the number of processes (the global --batch-size may
    not).
    """
    from rich.console import Console

    from edgevae.model.config import ModelConfig
    from edgevae.train import TrainConfig
    from edgevae.train.checkpoint import check_out_dir, read_configs
    from edgevae.train.loop import train

    given = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "device": device,
        "seed": seed,
        "max_minutes": max_minutes,
        "patience": patience,
        "num_workers": num_workers,
        "backend": backend,
        "score_combine": score_combine,
    }
    overrides = {k: v for k, v in given.items() if v is not None}
    if nproc is not None:
        from edgevae.train.distributed import check_nproc

        check_nproc(nproc)
    check_out_dir(out, resume=resume, overwrite=overwrite)
    if resume:
        model_config, train_config = read_configs(out)
        if (preset or model_config.preset) != model_config.preset or (
            model or model_config.kind
        ) != model_config.kind:
            model_config = ModelConfig.from_preset(
                preset or model_config.preset, kind=model or model_config.kind
            )
        train_config = dataclasses.replace(train_config, **overrides)
    else:
        model_config = ModelConfig.from_preset(preset or "nano", kind=model or "mvae")
        train_config = TrainConfig(**overrides)
    if nproc is not None and nproc > 1:
        args = _child_args(data, out, preset, model, given, resume, overwrite, quiet)
        _launch(nproc, train_config, args)
        return

    from edgevae.train.distributed import LaunchInfo

    console = Console()
    reporter = LaunchInfo.from_env().rank == 0  # under torchrun rank 0 reports for all
    display = None if quiet or not reporter else _ProgressDisplay(console)
    try:
        run = train(
            data,
            out,
            model_config,
            train_config,
            resume=resume,
            overwrite=overwrite,
            progress=display,
        )
    finally:
        if display is not None:
            display.close()
    if reporter:
        _summary(console, run)


def _child_args(
    data: Path,
    out: Path,
    preset: str | None,
    model: str | None,
    given: dict[str, Any],
    resume: bool,
    overwrite: bool,
    quiet: bool,
) -> list[str]:
    """The ``edgevae train`` arguments of every rank: this command's, without ``--nproc``."""
    args = ["--data", str(data), "--out", str(out)]
    options = {"preset": preset, "model": model, **given}
    for key, value in options.items():
        if value is not None:
            args += [f"--{key.replace('_', '-')}", str(value)]
    flags = {"--resume": resume, "--overwrite": overwrite, "--quiet": quiet}
    return args + [flag for flag, on in flags.items() if on]


def _launch(nproc: int, train_config: Any, args: list[str]) -> None:
    """Check what can be checked here, then run the ranks under torchrun and wait for them."""
    import subprocess

    from edgevae.errors import ConfigError
    from edgevae.train.distributed import (
        LaunchInfo,
        child_environment,
        local_batch,
        rank_device,
        resolve_backend,
        torchrun_command,
    )

    if LaunchInfo.from_env().distributed:
        raise ConfigError(
            "--nproc starts torchrun, but this process already runs under torchrun "
            "(WORLD_SIZE is set); drop --nproc."
        )
    local_batch(train_config.batch_size, nproc)
    # the last rank's device (so a GPU run finds enough GPUs) and the backend for all ranks
    device = rank_device(train_config.device, LaunchInfo(nproc - 1, nproc, nproc - 1))
    resolve_backend(train_config.backend, device)
    proc = subprocess.Popen(torchrun_command(nproc, args), env=child_environment(nproc))
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        # Ctrl-C reached torchrun too: let it stop the ranks (they run in their own sessions,
        # so killing torchrun now would leave them training); nudge it if it got no signal
        for nudge in (None, proc.terminate, proc.kill):
            if nudge is not None:
                nudge()
            try:
                proc.wait(timeout=60)
                break
            except subprocess.TimeoutExpired:
                continue
        raise
    if code != 0:
        typer.secho(
            f"error: distributed training failed (torchrun exit code {code}); the ranks' errors "
            "are above. A run stopped after a checkpoint continues with --resume.",
            fg="red",
            err=True,
        )
        raise typer.Exit(code)


class _ProgressDisplay:
    """Renders :class:`ProgressEvent` s with rich: a step bar per epoch, one line per epoch."""

    def __init__(self, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
        )

        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("ETA {task.fields[eta]}"),
            TextColumn("{task.fields[parts]}"),
            console=console,
            transient=True,
        )
        self.task: Any = None

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "start":
            self.console.print(f"[bold]edgevae train[/]: {event.message}", soft_wrap=True)
            self.progress.start()
            self._new_task(event)
        elif event.kind == "step":
            if self.task is None:
                self._new_task(event)
            self.progress.update(
                self.task,
                completed=event.step,
                description=f"epoch {event.epoch}/{event.epochs}",
                rate=f"{event.samples_per_s:,.0f} samples/s",
                eta=_duration(event.eta_s),
                parts=_parts(event.parts),
            )
        elif event.kind == "epoch":
            best = " [green]* best[/]" if event.improved else ""
            partial = "" if event.step in (0, event.steps_per_epoch) else " (partial)"
            train_loss = event.parts.get("total", 0.0)
            self.console.print(
                f"epoch {event.epoch}/{event.epochs}{partial}  train {train_loss:.4f}"
                f"  val {event.val_loss:.4f}{best}  {event.samples_per_s:,.0f} samples/s"
                f"  elapsed {_duration(event.elapsed_s)}  ETA {_duration(event.eta_s)}",
                soft_wrap=True,
            )
            if self.task is not None:
                self.progress.remove_task(self.task)
                self.task = None
        elif event.kind == "done":
            self.close()
            self.console.print("score statistics fitted on normal validation data.")

    def _new_task(self, event: ProgressEvent) -> None:
        self.task = self.progress.add_task(
            f"epoch {event.epoch}/{event.epochs}",
            total=event.steps_per_epoch,
            completed=event.step,
            rate="",
            eta=_duration(event.eta_s),
            parts="",
        )

    def close(self) -> None:
        self.progress.stop()


def _parts(parts: dict[str, float] | Any, limit: int = 8) -> str:
    items = list(parts.items())[:limit]
    return "  ".join(f"{k} {v:.3g}" for k, v in items)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-:--"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _summary(console: Any, run: Path) -> None:
    from edgevae.train.checkpoint import read_meta

    meta = read_meta(run)
    best = meta.get("best") or {}
    val = best.get("val_loss")
    val_text = f" (val loss {val:.4f})" if isinstance(val, float) else ""
    reason = str(meta.get("stop_reason", "")).replace("_", " ")
    console.print(f"run: {run}", soft_wrap=True)
    console.print(
        f"status: {meta['status']} ({reason}), best epoch {best.get('epoch')}{val_text}, "
        f"{meta['parameters']:,} parameters",
        soft_wrap=True,
    )
    if meta["status"] == "stopped":
        console.print(
            f"continue with: edgevae train --resume --data {meta['data']['path']} --out {run}",
            soft_wrap=True,
        )
