"""The benchmark result schema and its renderings: JSON, a JSONL log, markdown, a rich table.

One result document (``schema: "edgevae.bench/1"``)::

    {schema, created_utc, command, environment, config, legend,
     results: [row, ...],            # measurements, one per artifact x backend x batch
     matmul_peak: {...} | null,      # measured FP32 matmul GFLOP/s of this machine
     projection: {...} | null,       # Jetson roofline ESTIMATES, never mixed into results
     notes: [str, ...]}

A row holds the configuration (artifact, backend, device, batch, threads, scope), ``status``
(``ok`` ✅ / ``accuracy_failed`` ❎ / ``failed`` ❌), ``latency_ms`` (n, min, p50, p90, p95, p99,
p99_9, max, mean, throughput), ``stages_ms`` (pipeline only), ``ratio`` to the baseline measured in
the same run, ``accuracy`` vs the FP32 reference, ``compute`` (GFLOP/s, fraction of the measured
matmul peak), ``memory``, ``disturbance``, ``power`` and optionally the raw ``samples_ms``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edgevae.errors import ConfigError

SCHEMA = "edgevae.bench/1"
STATUS_SYMBOL = {"ok": "✅", "accuracy_failed": "❎", "failed": "❌"}
LEGEND = {
    "✅": "ran; outputs match the FP32 reference within the accuracy threshold (or it is the "
    "reference)",
    "❎": "ran, but failed the accuracy check against the FP32 reference",
    "❌": "failed to run (see error)",
}
_ROW_KEYS = {
    "id": str,
    "artifact": str,
    "backend": str,
    "device": str,
    "batch": int,
    "scope": str,
    "status": str,
}
_STAT_KEYS = ("n", "min", "p50", "p90", "p95", "p99", "p99_9", "max", "mean", "throughput")
_DOC_KEYS = ("schema", "created_utc", "environment", "config", "legend", "results")


def result_problems(doc: Any) -> list[str]:
    """Every way ``doc`` deviates from the schema (empty list: valid)."""
    if not isinstance(doc, dict):
        return ["result is not a JSON object"]
    problems = [f"missing key '{k}'" for k in _DOC_KEYS if k not in doc]
    if doc.get("schema") != SCHEMA:
        problems.append(f"schema is {doc.get('schema')!r}, expected {SCHEMA!r}")
    results = doc.get("results")
    if not isinstance(results, list):
        return [*problems, "'results' is not a list"]
    for i, row in enumerate(results):
        where = f"results[{i}]"
        if not isinstance(row, dict):
            problems.append(f"{where} is not an object")
            continue
        for key, typ in _ROW_KEYS.items():
            if not isinstance(row.get(key), typ):
                problems.append(f"{where}.{key} missing or not {typ.__name__}")
        if row.get("status") not in STATUS_SYMBOL:
            problems.append(f"{where}.status {row.get('status')!r} not in {list(STATUS_SYMBOL)}")
        lat = row.get("latency_ms")
        if row.get("status") != "failed":
            if not isinstance(lat, dict) or any(k not in lat for k in _STAT_KEYS):
                problems.append(f"{where}.latency_ms lacks {list(_STAT_KEYS)}")
        elif not row.get("error"):
            problems.append(f"{where} failed without an error message")
    proj = doc.get("projection")
    if proj is not None and proj.get("kind") != "estimate":
        problems.append("projection.kind must be 'estimate'")
    return problems


def check_result(doc: Any) -> None:
    """Raise ConfigError naming the first schema problem of ``doc``."""
    problems = result_problems(doc)
    if problems:
        raise ConfigError(f"invalid bench result: {problems[0]} ({len(problems)} problem(s)).")


def write_json(path: str | os.PathLike[str], doc: dict[str, Any]) -> Path:
    """Write the full result (raw samples included) atomically."""
    from edgevae._util.artifacts import write_json_atomic

    return write_json_atomic(path, doc)


def append_jsonl(path: str | os.PathLike[str], doc: dict[str, Any]) -> Path:
    """Append one compact line (no raw samples) to a JSONL log; creates the file if needed."""
    slim = dict(doc)
    slim["results"] = [{k: v for k, v in r.items() if k != "samples_ms"} for r in doc["results"]]
    line = json.dumps(slim, sort_keys=True, separators=(",", ":"), default=_default) + "\n"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
    return path


def _default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def fmt_ms(x: float | None) -> str:
    if x is None:
        return "—"
    if x < 1:
        return f"{x:.3f}"
    return f"{x:.2f}" if x < 100 else f"{x:.1f}"


def _fmt(x: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "—" if x is None else f"{x:{spec}}{suffix}"


COLUMNS = (
    "", "Artifact", "Backend", "Batch", "Thr", "n", "p50 ms", "p90 ms", "p95 ms", "p99 ms",
    "max ms", "mean ms", "samples/s", "vs base", "score SQNR dB", "AUROC", "GFLOP/s (% peak)",
    "RSS MiB", "mJ/inf",
)  # fmt: skip


def row_cells(row: dict[str, Any]) -> list[str]:
    """The table cells of one result row, in :data:`COLUMNS` order."""
    lat = row.get("latency_ms") or {}
    ratio = row.get("ratio") or {}
    acc = row.get("accuracy") or {}
    comp = row.get("compute") or {}
    mem = row.get("memory") or {}
    power = row.get("power") or {}
    auroc = acc.get("auroc")
    auroc_cell = "—" if auroc is None else f"{auroc:.4f}"
    if auroc is not None and acc.get("auroc_drop") is not None and not acc.get("is_reference"):
        auroc_cell += f" (Δ{-acc['auroc_drop'] + 0.0:+.4f})"  # + 0.0: no "-0.0000"
    gflops = comp.get("gflops")
    frac = comp.get("fraction_of_peak")
    gcell = "—" if gflops is None else f"{gflops:.1f}" + ("" if frac is None else f" ({frac:.0%})")
    if row.get("id") == row.get("baseline_id"):
        base = "baseline"
    else:
        base = _fmt(ratio.get("p50"), ".2f", "x")
    sqnr_cell = "ref" if acc.get("is_reference") else _fmt(acc.get("score_sqnr_db"), ".1f")
    if not acc.get("is_reference") and acc.get("score_identical"):
        sqnr_cell = "identical"
    name = row.get("artifact_name") or row.get("artifact", "")
    if row.get("precision"):
        name = f"{name} [{row['precision']}]"
    return [
        STATUS_SYMBOL.get(row.get("status", "failed"), "?"),
        name,
        row.get("backend", ""),
        str(row.get("batch", "")),
        str(row.get("threads") or "—"),
        str(lat.get("n", "—")),
        fmt_ms(lat.get("p50")),
        fmt_ms(lat.get("p90")),
        fmt_ms(lat.get("p95")),
        fmt_ms(lat.get("p99")),
        fmt_ms(lat.get("max")),
        fmt_ms(lat.get("mean")),
        _fmt(lat.get("throughput"), ",.1f"),
        base,
        sqnr_cell,
        auroc_cell,
        gcell,
        _fmt(mem.get("peak_rss_mib"), ".0f"),
        _fmt(power.get("mj_per_inference"), ".2f"),
    ]


def to_markdown(doc: dict[str, Any]) -> str:
    """The whole result as markdown: environment line, measured table, legend, stage breakdown,
    notes, and the projection (labelled as an estimate) in its own section."""
    from edgevae.bench.env import summary_line

    cfg = doc.get("config", {})
    lines = [
        "# edgevae bench",
        "",
        f"- Environment: {summary_line(doc.get('environment', {}))}",
        f"- Git revision: {doc.get('environment', {}).get('git_revision') or 'unknown'}; "
        f"created {doc.get('created_utc')}",
        f"- Timing: warm-up ≥ {cfg.get('warmup_s')} s and ≥ {cfg.get('warmup_iters')} iters; "
        f"timed ≥ {cfg.get('duration_s')} s and ≥ {cfg.get('min_iters')} iters per configuration, "
        f"interleaved in {cfg.get('round_s')} s rounds; nearest-rank percentiles on raw samples, "
        "no outlier removal.",
    ]
    peak = doc.get("matmul_peak")
    if peak:
        lines.append(
            f"- Measured FP32 matmul peak: {peak['gflops']:.1f} GFLOP/s ({peak['size']}², "
            f"{peak.get('threads')} threads, {peak.get('library')})"
        )
    lines += ["", "| " + " | ".join(c or "St" for c in COLUMNS) + " |"]
    lines.append("|" + "|".join(["---"] * len(COLUMNS)) + "|")
    for row in doc.get("results", []):
        lines.append("| " + " | ".join(c.replace("|", "/") for c in row_cells(row)) + " |")
    lines += ["", " · ".join(f"{k} {v}" for k, v in doc.get("legend", LEGEND).items())]
    if any((r.get("accuracy") or {}).get("auroc_level") == "clip" for r in doc.get("results", [])):
        lines += [
            "",
            "AUROC here is clip level (a clip is anomalous when any of its frames is) over the "
            "clips fed to the benchmark; it checks that an artifact ranks like the FP32 "
            "reference and is not the frame-level AUROC of `edgevae eval`.",
        ]
    stage_rows = [r for r in doc.get("results", []) if r.get("stages_ms")]
    if stage_rows:
        lines += ["", "## Pipeline stages (p50 / p90 ms)", ""]
        for r in stage_rows:
            parts = ", ".join(
                f"{k} {fmt_ms(v['p50'])} / {fmt_ms(v['p90'])}" for k, v in r["stages_ms"].items()
            )
            lines.append(f"- {r.get('artifact_name')} b{r['batch']}: {parts}")
    failures = [r for r in doc.get("results", []) if r.get("error")]
    disturbed = [r for r in doc.get("results", []) if (r.get("disturbance") or {}).get("redone")]
    notes = list(doc.get("notes", []))
    notes += [
        f"{r.get('artifact_name')} ({r['backend']}, b{r['batch']}): {r['error']}" for r in failures
    ]
    if disturbed:
        total = sum(r["disturbance"]["redone"] for r in disturbed)
        kept = sum(
            r["disturbance"].get("kept_disturbed", 0)
            for r in doc["results"]
            if r.get("disturbance")
        )
        notes.append(
            f"{total} timing slice(s) were redone because other processes used the CPU; "
            f"{kept} disturbed slice(s) were kept after the redo limit."
        )
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    proj = doc.get("projection")
    if proj:
        from edgevae.bench.projection import projection_markdown

        lines += [
            "",
            "## Jetson projection (estimate, not measured)",
            "",
            projection_markdown(proj),
        ]
    return "\n".join(lines) + "\n"


def rich_table(doc: dict[str, Any]) -> Any:
    """A ``rich.table.Table`` of the measured rows (the caption carries the legend). Printing is
    the caller's job."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title="edgevae bench",
        caption=" · ".join(f"{k} {v}" for k, v in doc.get("legend", LEGEND).items()),
        show_lines=False,
    )
    numeric = set(COLUMNS[3:])
    for col in COLUMNS:
        table.add_column(
            col, justify="right" if col in numeric else "left", no_wrap=col != "Artifact"
        )
    for row in doc.get("results", []):
        style = {"failed": "red", "accuracy_failed": "yellow"}.get(row.get("status", ""))
        table.add_row(*(escape(c) for c in row_cells(row)), style=style)
    return table


def projection_table(doc: dict[str, Any]) -> Any | None:
    """A ``rich.table.Table`` of the projection rows, titled as an estimate (None: none)."""
    proj = doc.get("projection")
    if not proj:
        return None
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"Jetson projection — {proj['label']}", caption=proj["method"])
    for col in ("Device", "Prec", "Batch", "Peak T", "GB/s", "est. ms (fused–unfused)", "bound"):
        table.add_column(col)
    for r in proj["rows"]:
        table.add_row(
            escape(r["device_name"]) + (" ⚠" if r["unverified"] else ""),
            r["precision"],
            str(r["batch"]),
            f"{r['peak_tflops']:g}",
            f"{r['bandwidth_gbs']:g}",
            f"{r['latency_ms_fused']:.3g}–{r['latency_ms_unfused']:.3g}",
            r["bound"],
        )
    return table
