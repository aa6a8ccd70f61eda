"""``report.md``: one page with what the pipeline measured (eval, gates, benchmarks) and its plots.

Everything in it is read back from the stage outputs (``eval/metrics.json``,
``export/gates.json``, ``bench/bench.json``), never recomputed, so the report cannot disagree with
the artifacts it describes. Images are linked relatively: the run directory can be moved or zipped.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgevae._util.artifacts import write_bytes_atomic
from edgevae._util.mdtable import markdown_table, rich_to_markdown
from edgevae._version import __version__

if TYPE_CHECKING:
    from edgevae.pipeline.config import PipelineConfig
    from edgevae.pipeline.run import Layout


def _load(path: Path) -> Any | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _rel(lay: Layout, path: Path) -> str:
    return path.relative_to(lay.root).as_posix()


def stage_table(lay: Layout) -> str:
    """Seconds per stage as recorded by the stage runner (``stages/*.json``)."""
    order = ["data", "train", "eval", "export", "quantize", "bench"]
    rows = []
    total = 0.0
    for name in order:
        rec = _load(lay.root / "stages" / f"{name}.json")
        if rec is None:
            continue
        total += rec["seconds"]
        rows.append([name, f"{rec['seconds']:.1f}"])
    rows.append(["**total (without report)**", f"**{total:.1f}**"])
    return markdown_table(["stage", "seconds (last run)"], rows)


def eval_section(lay: Layout) -> str:
    """The evaluation tables (as ``edgevae eval`` prints them) and its figures."""
    from edgevae.cli.evaluate import tables

    metrics = _load(lay.eval / "metrics.json")
    if metrics is None:
        return "_No evaluation results._"
    parts = [rich_to_markdown(t) for t in tables(metrics)]
    for png in sorted(lay.eval.glob("*.png")):
        parts.append(f"![{png.stem}]({_rel(lay, png)})")
    return "\n\n".join(parts)


def gate_section(lay: Layout) -> str:
    """The accuracy gate of every quantized artifact (``export/gates.md``, written by the quantize
    stage from the same results as ``export/gates.json``)."""
    md = lay.export / "gates.md"
    if not md.is_file():
        return "_No quantized artifacts._"
    return md.read_text().strip()


def gate_verdicts(lay: Layout) -> list[str]:
    """The verdict of every quantized artifact: ``passed``, ``failed`` (gate) or ``error``."""
    doc = _load(lay.export / "gates.json") or {}
    return [a["verdict"] for r in doc.get("results", []) for a in r["artifacts"]]


def bench_section(lay: Layout) -> str:
    """The benchmark table (``bench/bench.md`` without its title) and the latency plot."""
    md = lay.bench / "bench.md"
    if not md.is_file():
        return "_No benchmark results._"
    text = md.read_text()
    # drop bench.md's own title (report.md has the section heading); keep text without one
    body = (text.split("\n", 1)[-1].strip() if text.startswith("#") else "") or text
    body = body.replace("\n# ", "\n#### ").replace("\n## ", "\n#### ")
    plot = lay.bench / "latency.png"
    if plot.is_file():
        body += f"\n\n![latency]({_rel(lay, plot)})"
    return body


def skipped_section() -> str:
    """What this machine could not run (TensorRT, CUDA), said plainly."""
    from edgevae.trt.probe import probe_gpu

    lines = []
    try:
        import importlib.util

        has_trt = importlib.util.find_spec("tensorrt") is not None
    except (ImportError, ValueError):
        has_trt = False
    gpu = probe_gpu()
    if not has_trt:
        lines.append(
            "- TensorRT engines: **not built** (TensorRT is not installed here). On the "
            "target: `edgevae build RUN/export --precision int8` then `edgevae bench`."
        )
    if gpu.name is None:
        lines.append(
            "- CUDA paths (PyTorch on the GPU, the edgevae kernels, CUDA graphs): **not "
            "run** (no CUDA GPU here)."
        )
    return "\n".join(lines) or "- nothing: TensorRT and a GPU are present."


def _headline(lay: Layout, cfg: PipelineConfig) -> list[str]:
    metrics = _load(lay.eval / "metrics.json") or {}
    model = _load(lay.train / "model.json") or {}
    history = model.get("history") or []
    lines = [
        f"- model: `{cfg.preset}` multimodal VAE, trained {len(history)} epoch(s) on the built-in "
        f"`{cfg.data_preset}` benchmark (budget {cfg.train_minutes:g} min)",
    ]
    overall = (metrics.get("overall") or {}).get("auroc")
    if overall is not None:
        lines.append(f"- frame-level AUROC on the test split: **{overall:.3f}**")
    verdicts = gate_verdicts(lay)
    if verdicts:
        passed = verdicts.count("passed")
        lines.append(
            f"- quantized artifacts passing the accuracy gate: **{passed}/{len(verdicts)}**"
        )
    bench = _load(lay.bench / "bench.json")
    if bench:
        best = _best_ratio(bench)
        if best:
            lines.append(
                f"- fastest at batch {best[2]}: **{best[0]}** on {best[1]}, "
                f"**{best[3]:.2f}x** the PyTorch eager latency (p50, same run)"
            )
    return lines


def _best_ratio(doc: dict[str, Any]) -> tuple[str, str, int, float] | None:
    """(artifact, backend, batch, p50 speed-up vs the baseline) of the fastest row, if any."""
    best = None
    for row in doc.get("results", []):
        ratio = (row.get("ratio") or {}).get("p50")
        if row.get("status") != "ok" or not isinstance(ratio, (int, float)):
            continue
        key = (row["artifact_name"], row["backend"], row["batch"], float(ratio))
        if best is None or key[3] > best[3]:
            best = key
    return best


def write_report(lay: Layout, cfg: PipelineConfig) -> Path:
    """Write ``report.md`` from the stage outputs; returns its path."""
    text = "\n\n".join(
        [
            "# edgevae pipeline report",
            f"edgevae {__version__} · Python {platform.python_version()} · "
            f"{platform.machine()} · run directory `{lay.root}`",
            "\n".join(_headline(lay, cfg)),
            "## Stages\n\n" + stage_table(lay),
            "## Anomaly detection and imputation\n\n" + eval_section(lay),
            "## Quantization accuracy gate\n\n" + gate_section(lay),
            "## Benchmarks\n\n" + bench_section(lay),
            "## Not run on this machine\n\n" + skipped_section(),
            "## Reproduce\n\n```bash\nedgevae pipeline --out "
            + str(lay.root)
            + (" --quick" if cfg.quick else "")
            + f" --preset {cfg.preset}\n```",
        ]
    )
    return write_bytes_atomic(lay.report, (text + "\n").encode())
