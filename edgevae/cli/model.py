"""``edgevae model ...``: inspect model presets (parameters, MACs)."""

from __future__ import annotations

from pathlib import Path

import typer


def _count(n: int) -> str:
    """12345678 -> '12.35 M' (k / M / G), for tables."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


def summary(
    preset: str = typer.Option("nano", "--preset", help="Model preset: nano, small or base."),
    kind: str = typer.Option(
        "mvae", "--kind", "--model", help="Model kind: mvae, concat-ae or unimodal."
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="Dataset directory whose modalities to use (default: the built-in synthetic shapes).",
    ),
    latent_dim: int | None = typer.Option(None, "--latent-dim", help="Override the latent size."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON instead."),
) -> None:
    """Parameters and MACs per sample of every encoder, decoder and fusion module of a preset."""
    import json

    from rich.console import Console
    from rich.table import Table

    from edgevae.model.summary import summarize_preset

    modalities = None
    if data is not None:
        from edgevae.data.format import open_dataset

        modalities = open_dataset(data, verify="none").modalities
    overrides = {} if latent_dim is None else {"latent_dim": latent_dim}
    result = summarize_preset(preset, kind, modalities, **overrides)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    source = str(data) if data is not None else "built-in synthetic shapes"
    table = Table(
        title=f"edgevae {result.kind} / {result.preset} (latent {result.latent_dim}) on {source}"
    )
    table.add_column("module")
    table.add_column("modalities")
    table.add_column("params", justify="right")
    table.add_column("MACs / sample", justify="right")
    for row in result.rows:
        table.add_row(row.name, ", ".join(row.modalities), _count(row.params), _count(row.macs))
    table.add_section()
    table.add_row("encode (encoders + fusion)", "", "", _count(result.encode_macs))
    table.add_row("decode (decoders)", "", "", _count(result.decode_macs))
    table.add_row(
        "[bold]total[/bold]",
        "",
        f"[bold]{_count(result.params)}[/bold]",
        f"[bold]{_count(result.macs)}[/bold]",
    )
    console = Console(width=max(Console().width, 100))
    console.print(table)
    inactive = [
        n for n, a in zip(result.extra["modalities"], result.extra["active"], strict=True) if not a
    ]
    if inactive:
        console.print(f"inactive in this model (zero outputs): {', '.join(inactive)}")
    console.print("MACs count Conv/Linear multiply-accumulates of one batch-1 forward pass.")


def register(app: typer.Typer) -> None:
    """Add ``edgevae model summary`` to ``app``."""
    model_app = typer.Typer(
        help="Inspect model presets: parameters and MACs per module.", no_args_is_help=True
    )
    model_app.command("summary")(summary)
    app.add_typer(model_app, name="model")
