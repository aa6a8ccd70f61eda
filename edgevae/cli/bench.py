"""``edgevae bench``: latency/throughput/accuracy of any artifact on any backend.

A thin skin over :func:`edgevae.bench.driver.benchmark`: parses options into a ``BenchConfig``,
shows progress on stderr, prints the rich table (with the ✅/❎/❌ legend) and the Jetson projection
(labelled as an estimate), and writes ``--json`` / ``--md`` / ``--plot`` and the JSONL log.
Exit code: 0 when every configuration ran, 1 when one failed (❌), 2 for bad input.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command to ``app``."""
    app.command("bench")(bench_command)


def parse_batches(text: str) -> tuple[int, ...]:
    """``"1,8,32"`` -> ``(1, 8, 32)``; raises ConfigError on anything else."""
    from edgevae.errors import ConfigError

    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        values = ()
    if not values or any(v < 1 for v in values):
        raise ConfigError(
            f"--batch takes comma-separated positive integers like 1,8,32; got {text!r}."
        )
    return values


def parse_backends(text: str | None) -> tuple[str, ...]:
    """``"torch,ort"`` -> ``("torch", "ort")`` (validated later by BenchConfig)."""
    return tuple(b for b in (text or "").replace(" ", "").split(",") if b)


def bench_command(
    artifacts: Annotated[
        list[Path],
        typer.Argument(help="ONNX files, training run directories or .plan/.engine files."),
    ],
    backend: Annotated[
        str | None,
        typer.Option(
            help="torch, torch-compile, ort, trt or pipeline; comma-separated for several "
            "(default: ort for .onnx, torch for a run, trt for an engine)."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    batch: Annotated[str, typer.Option(help="Batch sizes, comma-separated.")] = "1",
    warmup: Annotated[float, typer.Option(help="Minimum warm-up seconds per configuration.")] = 2.0,
    warmup_iters: Annotated[int, typer.Option(help="Minimum warm-up iterations.")] = 10,
    duration: Annotated[
        float, typer.Option(help="Minimum timed seconds per configuration.")
    ] = 10.0,
    min_iters: Annotated[
        int, typer.Option(help="Minimum timed iterations per configuration.")
    ] = 1000,
    round_s: Annotated[
        float, typer.Option("--round", help="Seconds per configuration per interleaved round.")
    ] = 0.5,
    threads: Annotated[
        int | None, typer.Option(help="Intra-op threads for torch and ONNX Runtime.")
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(help="Artifact the ratios and accuracy refer to (default: the first)."),
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="Dataset directory: real inputs, and AUROC from labels.")
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="Split of --data (default test, else val, else train).")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the full result JSON.")
    ] = None,
    md_out: Annotated[Path | None, typer.Option("--md", help="Write a markdown report.")] = None,
    plot_out: Annotated[
        Path | None, typer.Option("--plot", help="Write a latency plot (.png/.svg/.pdf).")
    ] = None,
    plot_kind: Annotated[str, typer.Option(help="cdf or box.")] = "cdf",
    log: Annotated[
        Path | None,
        typer.Option(help="JSONL log to append to (default: bench-log.jsonl beside --json)."),
    ] = None,
    power: Annotated[
        str, typer.Option(help="Power source on Jetson: auto, ina3221, tegrastats or off.")
    ] = "auto",
    idle: Annotated[float, typer.Option(help="Seconds of idle power measured first.")] = 5.0,
    disturbance: Annotated[
        float,
        typer.Option(
            help="Redo a round when other processes use more CPU cores than this (0: off)."
        ),
    ] = 0.25,
    max_redos: Annotated[
        int, typer.Option(help="Redos per disturbed round before keeping it.")
    ] = 3,
    time_limit: Annotated[
        float | None, typer.Option(help="Stop timing after this many seconds (marks truncated).")
    ] = None,
    accuracy_samples: Annotated[
        int, typer.Option(help="Inputs compared against the reference.")
    ] = 256,
    min_sqnr: Annotated[
        float, typer.Option(help="Score SQNR (dB) below which a row is marked ❎.")
    ] = 20.0,
    ort_opt: Annotated[
        str,
        typer.Option(help="ONNX Runtime graph optimisation: disable|basic|extended|layout|all."),
    ] = "all",
    compile_mode: Annotated[
        str | None, typer.Option(help="torch.compile mode for --backend torch-compile.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of random inputs.")] = 0,
    no_accuracy: Annotated[
        bool, typer.Option("--no-accuracy", help="Skip the accuracy pass.")
    ] = False,
    no_samples: Annotated[
        bool, typer.Option("--no-samples", help="Leave raw latencies out of the JSON.")
    ] = False,
    no_peak: Annotated[
        bool, typer.Option("--no-peak", help="Skip measuring the CPU matmul peak.")
    ] = False,
    no_projection: Annotated[
        bool, typer.Option("--no-projection", help="Skip the Jetson roofline estimate.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress lines.")] = False,
) -> None:
    """Benchmark artifacts side by side: latency percentiles, throughput, memory, accuracy, power.

    Configurations (artifact x backend x batch) run interleaved in short rounds after a warm-up,
    each until --duration AND --min-iters are met; percentiles are nearest-rank on raw samples.
    """
    from rich.console import Console
    from rich.markup import escape

    from edgevae.bench.driver import BenchConfig, benchmark
    from edgevae.bench.report import projection_table, rich_table

    err = Console(stderr=True, highlight=False)
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 240)
    if plot_out is not None:
        from edgevae._util.choices import check_choice

        check_choice(plot_kind, ("cdf", "box"), "plot kind")
    options: dict[str, dict[str, Any]] = {"ort": {"graph_optimization": ort_opt}}
    if compile_mode is not None:
        options["torch-compile"] = {"mode": compile_mode}
    config = BenchConfig(
        backends=parse_backends(backend),
        device=device,
        batches=parse_batches(batch),
        warmup_s=warmup,
        warmup_iters=warmup_iters,
        duration_s=duration,
        min_iters=min_iters,
        round_s=round_s,
        disturbance_threshold=disturbance if disturbance > 0 else None,
        max_redos=max_redos,
        time_limit_s=time_limit,
        threads=threads,
        baseline=str(baseline) if baseline is not None else None,
        data=str(data) if data is not None else None,
        split=split,
        seed=seed,
        accuracy=not no_accuracy,
        accuracy_samples=accuracy_samples,
        min_score_sqnr_db=min_sqnr,
        power=power,
        idle_s=idle,
        keep_samples=not no_samples or plot_out is not None,
        matmul_peak=not no_peak,
        projection=not no_projection,
        runner_options=options,
    )
    command = " ".join(["edgevae", *map(shlex.quote, sys.argv[1:])]) if sys.argv else None
    result = benchmark(
        [str(a) for a in artifacts], config, progress=None if quiet else _progress(err),
        command=command,
    )  # fmt: skip
    doc = result.doc

    out.print(rich_table(doc))
    proj = projection_table(doc)
    if proj is not None:
        out.print(proj)
    for note in doc["notes"]:
        out.print(f"note: {escape(note)}")
    for row in result.failed:
        what = f"{row['artifact_name']} ({row['backend']}, b{row['batch']}): {row['error']}"
        out.print(f"[red]❌ {escape(what)}")
    written = _write_outputs(doc, json_out, md_out, plot_out, plot_kind, log)
    for what, path in written:
        out.print(f"{what}: {path}")
    if json_out is None and md_out is None:
        out.print("next: add --json results.json --md results.md --plot latency.png to keep them.")
    if result.failed:
        raise typer.Exit(code=1)


def _write_outputs(
    doc: dict[str, Any],
    json_out: Path | None,
    md_out: Path | None,
    plot_out: Path | None,
    plot_kind: str,
    log: Path | None,
) -> list[tuple[str, Path]]:
    from edgevae._util.artifacts import write_bytes_atomic
    from edgevae.bench.report import append_jsonl, to_markdown, write_json

    written: list[tuple[str, Path]] = []
    if json_out is not None:
        written.append(("json", write_json(json_out, doc)))
        log = log or json_out.with_name("bench-log.jsonl")
    if md_out is not None:
        written.append(("markdown", write_bytes_atomic(md_out, to_markdown(doc).encode())))
    if plot_out is not None:
        from edgevae.bench.plot import plot_latency

        written.append(("plot", plot_latency(doc, plot_out, plot_kind)))
    if log is not None:
        written.append(("log", append_jsonl(log, doc)))
    return written


def _progress(console: Any):
    """Progress lines on stderr: setup steps, warm-ups, and the timed rounds (every ~10 %)."""
    state = {"shown": -1}

    def show(event: str, info: dict[str, Any]) -> None:
        if event in ("setup", "accuracy"):
            console.print(f"[dim]· {info.get('message', '')}")
        elif event == "warmup":
            console.print(
                f"[dim]· warm-up {info['config'] + 1}/{info['of']}: {info.get('label', '')}"
            )
        elif event == "round":
            pct = int(info["fraction"] * 10)
            if pct > state["shown"]:
                state["shown"] = pct
                console.print(
                    f"[dim]· timing: round {info['round']}, {pct * 10}% of the minimums met"
                )

    return show
