"""Tables of a quantization result (``QuantResult.to_dict()``): terminal (rich) and Markdown.

One row per artifact::

    ✅/❎/❌  artifact  layers  worst output (SQNR, cosine)  score SQNR
            AUROC FP32 -> artifact (drop)  worst camera PSNR drop

then one note line per artifact that did not pass (its first failed check, the suggested
``--exclude``, or the build error).

Legend: ✅ passed the gate, ❎ built but failed the gate (written, marked in its manifest; do not
deploy), ❌ failed (not built, nothing written).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

LEGEND = "✅ passed · ❎ built but failed the accuracy gate · ❌ failed (not built)"
COLUMNS = (
    "", "artifact", "layers", "worst output", "score SQNR", "AUROC fp32 → art (drop)",
    "PSNR drop",
)  # fmt: skip


def _num(value: Any, spec: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value  # "inf"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return format(value, spec)


def _worst_output(outputs: Mapping[str, Any]) -> str:
    if not outputs:
        return "-"

    def sqnr(o: Mapping[str, Any]) -> float:
        s = o.get("sqnr_db")
        return math.inf if s in (None, "inf") else (-math.inf if s == "-inf" else float(s))

    name, o = min(outputs.items(), key=lambda kv: (kv[1]["passed"], sqnr(kv[1])))
    return f"{name} {_num(o.get('sqnr_db'), '.1f')} dB, cos {_num(o.get('cosine'), '.4f')}"


def row(a: Mapping[str, Any]) -> list[str]:
    """The table cells of one artifact entry."""
    gate = a.get("gate") or {}
    outputs = gate.get("outputs") or {}
    task = gate.get("task") or {}
    layers = "-"
    details = a.get("details") or {}
    if "quantized_count" in details:
        layers = f"{details['quantized_count']} int8"
    elif "fp16_nodes" in details:
        layers = f"{details['fp16_nodes']} fp16"
    score = _num((outputs.get("score") or {}).get("sqnr_db"), ".1f")
    score = f"{score} dB" if score != "-" else score
    auroc = "-"
    if "auroc" in task:
        t = task["auroc"]
        auroc = (
            f"{_num(t['fp32'], '.4f')} → {_num(t['artifact'], '.4f')} ({_num(t['drop'], '+.4f')})"
        )
    psnr = "-"
    if "psnr" in task:
        psnr = f"{_num(task['psnr']['worst_drop_db'], '+.3f')} dB"
    return [a["symbol"], a["artifact"], layers, _worst_output(outputs), score, auroc, psnr]


def note(a: Mapping[str, Any]) -> str | None:
    """Why an artifact did not pass (None when it passed)."""
    gate = a.get("gate") or {}
    if a["verdict"] == "error":
        return f"{a['symbol']} {a['artifact']}: {a.get('error')}"
    if a["verdict"] == "failed":
        text = f"{a['symbol']} {a['artifact']}: {gate.get('first_failure') or ''}"
        hint = (gate.get("layers") or {}).get("suggested_exclude")
        return text + (f"; try --exclude '{hint}'" if hint else "")
    return None


def table(result: Mapping[str, Any]) -> Any:
    """A rich Table of ``result``."""
    from rich.table import Table

    t = Table(
        title=f"edgevae quantize {result['precision']}: accuracy gate on "
        f"{result['gate_data']['clips']} test clips",
        caption=LEGEND,
    )
    for col in COLUMNS:
        t.add_column(col, overflow="fold", no_wrap=col in ("", "artifact", "score SQNR"))
    for a in result["artifacts"]:
        t.add_row(*row(a))
    return t


def notes(result: Mapping[str, Any]) -> list[str]:
    """The note lines of the artifacts that did not pass."""
    return [n for n in (note(a) for a in result["artifacts"]) if n]


def layer_table(artifact: Mapping[str, Any]) -> Any | None:
    """A rich Table of an INT8 artifact's per-layer report (None when it has none)."""
    from rich.table import Table

    layers = ((artifact.get("gate") or {}).get("layers")) or {}
    if not layers.get("layers"):
        return None
    t = Table(title=f"{artifact['artifact']}: layers losing most (on {layers['rows']} clips)")
    for col in ("node", "op", "int8", "SQNR dB", "in dB", "loss dB"):
        t.add_column(col, overflow="fold")
    for r in layers["layers"][:5]:
        t.add_row(
            r["node"], r["op_type"], "yes" if r["quantized"] else "no",
            _num(r["sqnr_db"], ".1f"), _num(r["input_sqnr_db"], ".1f"), _num(r["loss_db"], ".1f"),
        )  # fmt: skip
    return t


def markdown(
    result: Mapping[str, Any],
    environment: Mapping[str, Any] | None = None,
    speed: Mapping[str, Any] | None = None,
) -> str:
    """A Markdown report: the gate table, per-layer tables of INT8 artifacts, the measured CPU
    speed (when given) and the environment."""
    lines = [
        f"# Quantization gate: {result['precision']} ({result['export_dir']})",
        "",
        f"Legend: {LEGEND}. Gate data: {result['gate_data']['clips']} clips "
        f"({result['gate_data']['frames']} frames, {result['gate_data']['anomalous_frames']} "
        f"anomalous) of the test split of `{result['gate_data']['data']}`.",
        "",
        "| " + " | ".join(c or "verdict" for c in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for a in result["artifacts"]:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row(a)) + " |")
    for n in notes(result):
        lines.append(f"\n{n.replace('|', '/')}")
    calib = result.get("calibration") or {}
    if result.get("recipe"):
        r = result["recipe"]
        lines += [
            "",
            f"Calibration: recipe `{r['name']}`, method `{result['config']['method']}`, "
            f"{calib.get('samples')} samples from the `{calib.get('split')}` split, patterns "
            f"{calib.get('patterns')}.",
        ]
    for a in result["artifacts"]:
        layers = ((a.get("gate") or {}).get("layers")) or {}
        if not layers.get("layers"):
            continue
        lines += ["", f"## {a['artifact']}: layers losing most ({layers['rows']} clips)", ""]
        lines += ["| node | op | int8 | SQNR (dB) | loss (dB) |", "|---|---|---|---|---|"]
        for r in layers["layers"][:5]:
            lines.append(
                f"| `{r['node']}` | {r['op_type']} | {'yes' if r['quantized'] else 'no'} | "
                f"{_num(r['sqnr_db'], '.1f')} | {_num(r['loss_db'], '.1f')} |"
            )
        if layers.get("suggested_exclude"):
            lines.append(
                f"\nSuggested if the gate fails: `--exclude '{layers['suggested_exclude']}'`"
            )
    if speed:
        lines += ["", "## Measured CPU speed", "", str(speed.get("markdown", "")).strip()]
    if environment:
        lines += ["", "## Environment", "", "```"]
        lines += [f"{k}: {v}" for k, v in environment.items()]
        lines += ["```"]
    return "\n".join(lines) + "\n"
