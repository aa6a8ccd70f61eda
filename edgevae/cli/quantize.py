"""``edgevae quantize``: FP16 / INT8 artifacts with an accuracy gate (a skin over
:func:`edgevae.quant.quantize`).

Exit codes: 0 every artifact passed the gate (✅); 1 an artifact was built but failed the gate
(❎, written and marked in its manifest); 2 bad input or an artifact that could not be built (❌).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    """Add the ``quantize`` command to ``app``."""
    app.command("quantize")(quantize_command)


def quantize_command(
    export_dir: Annotated[
        Path, typer.Argument(help="Export directory written by `edgevae export`.")
    ],
    precision: Annotated[str, typer.Option("--precision", help="fp16 or int8.")],
    target: Annotated[
        str | None,
        typer.Option(help="trt, cpu or both (int8 default: both; fp16 is for TensorRT)."),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Dataset for calibration and the gate's held-out test split (default: the "
            "export's training data).",
        ),
    ] = None,
    recipe: Annotated[
        str,
        typer.Option(help="Calibration recipe: a name in calibration/recipes/ or a .toml path."),
    ] = "default",
    method: Annotated[str, typer.Option(help="minmax, entropy or percentile.")] = "minmax",
    samples: Annotated[
        int | None, typer.Option(help="Calibration samples (default: the recipe's).")
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(help="Regex of node names kept FP32 (repeatable; INT8)."),
    ] = None,
    backend: Annotated[
        str, typer.Option(help="ort (ONNX Runtime) or modelopt (NVIDIA ModelOpt, TensorRT only).")
    ] = "ort",
    force: Annotated[
        bool, typer.Option(help="Accept fewer calibration samples than the recipe's minimum.")
    ] = False,
    cpu_arch: Annotated[
        str, typer.Option(help="CPU artifact scheme: auto, x86 (U8S8) or arm (S8S8).")
    ] = "auto",
    cpu_op_types: Annotated[
        str | None, typer.Option(help="Op types quantized in the CPU artifact (comma list).")
    ] = None,
    cpu_first_last: Annotated[
        bool | None,
        typer.Option(
            "--cpu-first-last/--no-cpu-first-last",
            help="Quantize the first and last layers in the CPU artifact.",
        ),
    ] = None,
    graphs: Annotated[
        str | None, typer.Option(help="Graphs to quantize (default: all in the directory).")
    ] = None,
    gate_clips: Annotated[
        int | None, typer.Option(help="At most this many test clips for the gate (default: all).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing artifacts.")] = False,
    report: Annotated[
        Path | None,
        typer.Option(help="Also write REPORT.md and REPORT.json (with the environment)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result JSON to stdout instead of tables.")
    ] = False,
    quiet: Annotated[bool, typer.Option(help="No progress lines.")] = False,
) -> None:
    """Make FP16 or INT8 (Q/DQ) artifacts of an export and gate each against FP32 on held-out
    data: per-output SQNR/cosine, frame-AUROC and reconstruction-PSNR drops, per-layer errors."""
    from rich.console import Console

    from edgevae.errors import QuantizationError
    from edgevae.quant import QuantConfig, quantize
    from edgevae.quant.config import CPU_OP_TYPES
    from edgevae.quant.report import layer_table, notes, table

    cfg = QuantConfig(
        precision=precision,
        target=target,
        method=method,
        recipe=recipe,
        samples=samples,
        exclude=tuple(exclude or ()),
        backend=backend,
        cpu_arch=cpu_arch,
        cpu_op_types=cpu_op_types or CPU_OP_TYPES,
        **({} if cpu_first_last is None else {"cpu_first_last": cpu_first_last}),
        graphs=graphs,
        gate_clips=gate_clips,
        force=force,
        overwrite=overwrite,
    )
    err = Console(stderr=True)

    def say(line: str) -> None:
        if not quiet:
            err.print(line, style="dim", highlight=False, markup=False)

    result = quantize(export_dir, cfg, data, progress=say)
    doc = result.to_dict()
    doc["report"] = str(result.report_path)
    if report is not None:
        _write_report(report, doc)
    if as_json:
        typer.echo(json.dumps(doc, indent=2, sort_keys=True, default=str))
    else:
        console = Console()
        console.print(table(doc))
        for line in notes(doc):
            console.print(line, highlight=False, markup=False, soft_wrap=True)
        for a in doc["artifacts"]:
            if a["verdict"] == "failed":
                lt = layer_table(a)
                if lt is not None:
                    console.print(lt)
        console.print(f"gate report: [bold]{result.report_path}[/]")
    if result.verdict == "error":
        bad = [a for a in result.artifacts if a.verdict == "error"]
        raise QuantizationError(
            f"{len(bad)} artifact(s) could not be built ({bad[0].name}: {bad[0].error})"
        )
    if result.verdict == "failed":
        names = ", ".join(a.name for a in result.artifacts if a.verdict == "failed")
        typer.secho(
            f"❎ {names} built but failed the accuracy gate (marked in the manifest; do not "
            "deploy): see the per-layer report and try the suggested --exclude, another "
            "--method, or --precision fp16.",
            fg="yellow",
            err=True,
        )
        raise typer.Exit(1)


def _write_report(base: Path, doc: dict[str, Any]) -> None:
    from edgevae._util.artifacts import write_bytes_atomic, write_json_atomic
    from edgevae.bench.env import capture_environment
    from edgevae.quant.report import markdown

    env = capture_environment()
    base = base.with_suffix("") if base.suffix in (".md", ".json") else base
    write_json_atomic(base.with_name(base.name + ".json"), {**doc, "environment": env})
    summary = {
        "cpu": (env.get("cpu") or {}).get("model"),
        "cpus": (env.get("cpu") or {}).get("usable_cpus"),
        "libraries": env.get("libraries"),
        "git_revision": env.get("git_revision"),
    }
    write_bytes_atomic(base.with_name(base.name + ".md"), markdown(doc, summary).encode())
