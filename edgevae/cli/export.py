"""``edgevae export``: export a run to parity-checked ONNX graphs (a skin over
:func:`edgevae.export.export`).

Progress (the run, the tool versions, one line per stage with the elapsed time) goes to stderr;
the result (one line per artifact: path, size, time, worst parity case) and the next commands go
to stdout, or to stderr when ``--json -`` puts the JSON summary on stdout. ``--out`` defaults to
``RUN/export``, so a run and its exports travel together.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Annotated, Any

import typer

DEFAULT_GRAPHS = "analyze,encode,decode"
TOOLS = ("torch", "onnx", "onnxruntime")


def register(app: typer.Typer) -> None:
    """Add the ``export`` command to ``app``."""
    app.command("export")(export_command)


def export_command(
    run: Annotated[Path, typer.Argument(help="Run directory written by `edgevae train`.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Output directory (default: RUN/export).")
    ] = None,
    graphs: Annotated[
        str, typer.Option(help="Graphs to export, comma-separated: analyze, encode, decode.")
    ] = DEFAULT_GRAPHS,
    opset: Annotated[
        int | None,
        typer.Option(help="ONNX opset (default: edgevae's pinned opset, shown in the first line)."),
    ] = None,
    batch: Annotated[
        str, typer.Option(help="'dynamic' (a symbolic batch axis) or a fixed batch size.")
    ] = "dynamic",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace exports already in --out.")
    ] = False,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="Write a JSON summary to this file ('-': stdout)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress lines.")] = False,
) -> None:
    """Export analyze/encode/decode ONNX graphs with contract tensor names, each checked against
    PyTorch through ONNX Runtime over every mask-pattern class; a failed check writes nothing.

    Writes GRAPH.onnx + GRAPH.onnx.manifest.json per graph and score_stats.json into --out.
    """
    from rich.console import Console
    from rich.markup import escape

    from edgevae._util.artifacts import tool_versions, write_json_atomic
    from edgevae.errors import ConfigError
    from edgevae.export.config import OPSET, ExportConfig

    config = ExportConfig(graphs=graphs, opset=OPSET if opset is None else opset, batch=batch)
    to_stdout = json_out is not None and str(json_out) == "-"
    if json_out is not None and not to_stdout and json_out.is_dir():
        raise ConfigError(f"--json '{json_out}' is a directory; give a file name like export.json.")
    out_dir = out if out is not None else run / "export"
    err = Console(stderr=True, highlight=False)
    result = Console(stderr=to_stdout, highlight=False, soft_wrap=True)
    versions = tool_versions(*TOOLS)
    if not quiet:
        err.print(
            f"[bold]edgevae export[/]: {escape(str(run))} -> {escape(str(out_dir))} "
            f"(graphs {', '.join(config.graphs)}; opset {config.opset}; batch {config.batch})",
            soft_wrap=True,
        )
        err.print(
            "tools: "
            + ", ".join(f"{k} {versions[k]}" for k in ("edgevae", *TOOLS) if k in versions)
        )

    from edgevae.export import export

    start = time.perf_counter()

    def progress(stage: str) -> None:
        if not quiet:
            err.print(
                f"[dim]{time.perf_counter() - start:6.1f}s[/] {escape(stage)}", soft_wrap=True
            )

    paths = export(run, out_dir, config, progress, overwrite=overwrite)
    artifacts = [_artifact(p) for p in paths]
    for a in artifacts:
        result.print(escape(result_line(a)))
    result.print(
        f"wrote {escape(str(out_dir))}: "
        + ", ".join(Path(a["path"]).name for a in artifacts)
        + " (each with .manifest.json) and score_stats.json"
    )
    commands = next_commands(run, out_dir, config.graphs)
    result.print("next:")
    for command in commands:
        result.print(f"  {escape(command)}")

    if json_out is not None:
        doc = {
            "run": str(run),
            "out": str(out_dir),
            "config": config.to_dict(),
            "tool_versions": versions,
            "artifacts": artifacts,
            "score_stats": str(out_dir / "score_stats.json"),
            "seconds": round(time.perf_counter() - start, 3),
            "next": commands,
        }
        if to_stdout:
            typer.echo(json.dumps(doc, indent=2, sort_keys=True))
        else:
            write_json_atomic(json_out, doc)
            result.print(f"summary: {escape(str(json_out))}")


def _artifact(path: Path) -> dict[str, Any]:
    """What the result line and the JSON summary say about one written graph (from its manifest)."""
    manifest_path = path.with_name(path.name + ".manifest.json")
    manifest = json.loads(manifest_path.read_text())
    details = manifest["details"]
    parity = manifest["checks"]["parity"]
    return {
        "graph": details["graph"],
        "path": str(path),
        "manifest": str(manifest_path),
        "bytes": manifest["bytes"],
        "sha256": manifest["sha256"],
        "seconds": details["export_seconds"],
        "timings_s": details.get("timings_s", {}),
        "inputs": [i["name"] for i in details["inputs"]],
        "outputs": [o["name"] for o in details["outputs"]],
        "parity": {
            "passed": parity["passed"],
            "cases": parity["cases"],
            "summary": parity["summary"],
        },
    }


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / (1024 * 1024):.1f} MB"


def _num(value: Any, spec: str) -> str:
    return value if isinstance(value, str) else format(value, spec)


def result_line(a: dict[str, Any]) -> str:
    """``analyze.onnx  1.9 MB  7.2 s (export 3.1, check 0.2, parity 3.9)  parity ok: ...``"""
    t = a["timings_s"]
    split = (
        f" (export {t['torch_export']:.1f}, check {t['onnx_checker']:.1f}, parity "
        f"{t['parity']:.1f})"
        if {"torch_export", "onnx_checker", "parity"} <= set(t)
        else ""
    )
    s = a["parity"]["summary"]
    worst = ""
    if s["max_abs"] is not None:
        ma, sq = s["max_abs"], s["min_sqnr_db"]
        worst = (
            f": worst max-abs {_num(ma['value'], '.2g')} ({ma['output']}, {ma['case']}), "
            f"min SQNR {_num(sq['value'], '.1f')} dB ({sq['output']}, {sq['case']})"
        )
        if s["tolerance_used"] is not None:
            used = s["tolerance_used"]
            used_text = used if isinstance(used, str) else f"{100 * used:.2g}%"
            worst += f", {used_text} of the tolerance used"
    verdict = "passed" if a["parity"]["passed"] else "FAILED"
    return (
        f"{a['path']}  {_size(a['bytes'])}  {a['seconds']:.1f} s{split}  parity {verdict} over "
        f"{len(a['parity']['cases'])} cases{worst}"
    )


def next_commands(run: Path, out_dir: Path, graphs: tuple[str, ...]) -> list[str]:
    """The commands that usually follow an export: FP16 and CPU INT8 quantization, a benchmark."""
    q = shlex.quote
    bench_graph = "analyze" if "analyze" in graphs else graphs[0]
    onnx_path = out_dir / f"{bench_graph}.onnx"
    bench = f"edgevae bench {q(str(onnx_path))} --batch 1,8"
    if bench_graph == "analyze":  # the run itself benchmarks the PyTorch analyze graph
        bench = f"edgevae bench {q(str(run))} {q(str(onnx_path))} --batch 1,8"
    return [
        f"edgevae quantize {q(str(out_dir))} --precision fp16",
        f"edgevae quantize {q(str(out_dir))} --precision int8 --target cpu",
        bench,
    ]
