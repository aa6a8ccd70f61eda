"""``edgevae build`` and ``edgevae doctor``: TensorRT engines and environment checks.

``edgevae build`` exits 0 with the engine written, 2 on bad input or when TensorRT is missing
(the message says how to install it). ``edgevae doctor`` exits 0 when TensorRT deployment is
possible here (TensorRT >= 10 imports, a CUDA GPU is visible, cuda-python or pycuda is
installed) and 1 when it is not; either way it prints every check with what to do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

_STATUS = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "missing": "[red]missing[/]",
           "info": "[cyan]info[/]"}  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add ``build`` and ``doctor`` to ``app``."""
    app.command("build")(build_command)
    app.command("doctor")(doctor_command)


def build_command(
    export_dir: Path = typer.Argument(
        ..., help="Export directory (edgevae export; + edgevae quantize for fp16/int8)."
    ),
    precision: str = typer.Option(
        ..., "--precision", "-p", help="fp32 | fp16 | int8: which precision-specific ONNX to build."
    ),
    mode: str = typer.Option(
        "native",
        "--mode",
        help="native (whole analyze graph) | split (encode + decode engines, kernels between) | "
        "plugin (one engine, kernels as TensorRT plugins).",
    ),
    batch: str = typer.Option("1,4,16", "--batch", help="Optimization profile MIN,OPT,MAX."),
    workspace: int = typer.Option(
        1024, "--workspace", help="Workspace limit in MiB (capped at half of the free memory)."
    ),
    opt_level: int = typer.Option(3, "--opt-level", help="Builder optimization level 0..5."),
    timing_cache: Path | None = typer.Option(
        None,
        "--timing-cache",
        help="Timing-cache file (TensorRT version + GPU are appended to its name). Default: "
        "~/.cache/edgevae/trt/timing.cache.",
    ),
    out: Path | None = typer.Option(None, "--out", help="Output directory (EXPORT_DIR/engines)."),
    plugin_lib: Path | None = typer.Option(
        None,
        "--plugin-lib",
        help="Plugin mode: IPluginV3 library from kernels/plugins (for TensorRT < 10.9).",
    ),
    tf32: bool = typer.Option(
        False, "--tf32", help="Allow TF32 in FP32 layers (off: strict FP32, as parity needs)."
    ),
) -> None:
    """Build a TensorRT engine on this device (strongly typed; one code path for TRT 10/11)."""
    from rich.console import Console

    from edgevae.trt.build import build_engine
    from edgevae.trt.config import EngineConfig, parse_batch

    config = EngineConfig(
        precision=precision,
        mode=mode,
        batch=parse_batch(batch),
        workspace_mib=workspace,
        opt_level=opt_level,
        timing_cache=str(timing_cache) if timing_cache else None,
        tf32=tf32,
        out_dir=str(out) if out else None,
        plugin_library=str(plugin_lib) if plugin_lib else None,
    )
    console = Console(stderr=True)
    result = build_engine(
        export_dir, config, progress=lambda msg: console.print(f"[bold]build[/]: {msg}")
    )
    typer.echo(str(result))
    console.print(
        f"next: [bold]edgevae bench {result} --backend trt[/] (measures it with the same "
        "harness as the ONNX artifacts)"
    )


def doctor_command(
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check this machine for training, export and TensorRT deployment (exit 0: deployable)."""
    from edgevae.doctor import diagnose

    report = diagnose()
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        _print_report(report)
    raise typer.Exit(0 if report.deployable else 1)


def _print_report(report: Any) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(width=max(Console().width, 120))
    table = Table(title="edgevae doctor", show_lines=False)
    for col in ("component", "status", "found", "how to get it"):
        table.add_column(col, overflow="fold")
    for c in report.checks:
        # escape: fixes hold brackets that are not markup (`pip install 'edgevae[cuda]'`)
        table.add_row(
            c.name, _STATUS.get(c.status, c.status), escape(c.detail), escape(c.fix or "")
        )
    console.print(table)
    if report.deployable:
        console.print("[green]TensorRT deployment is possible here[/] (exit code 0).")
    else:
        console.print("[red]TensorRT deployment is not possible here[/] (exit code 1):")
        for b in report.blockers:
            console.print(f"  - {escape(b)}")
        console.print(
            "Engines are built on the target device; this machine can still train, export, "
            "quantize and benchmark with ONNX Runtime."
        )
