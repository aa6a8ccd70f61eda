"""Make the reference quantization gate report of an export (``nano-gate.{md,json}``).

Runs, on a copy of the export directory (the original is left as it is):

1. ``edgevae quantize --precision fp16`` and ``--precision int8 --target both`` (library calls,
   default recipe and settings), each gated on the test split of ``--data``;
2. ``edgevae bench`` of ``analyze.onnx`` against ``analyze.int8.cpu.onnx`` (ONNX Runtime CPU,
   batch 1, 2 threads, interleaved), for the measured CPU INT8 speed ratio;

and writes ``OUT.json`` (both gate results, the bench summary, the environment) and ``OUT.md``.

Usage::

    python benchmarks/quantization/nano_gate.py --export /tmp/meas/nano/export --data /tmp/syn \\
        --work /tmp/nano-quant --out benchmarks/quantization/nano-gate
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgevae._util.artifacts import write_bytes_atomic, write_json_atomic
from edgevae.bench.env import capture_environment, summary_line
from edgevae.quant import QuantConfig, quantize
from edgevae.quant.report import markdown


def _copy_export(src: Path, work: Path) -> None:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for path in src.iterdir():
        derived = ".int8." in path.name or ".fp16." in path.name
        if path.name.endswith((".onnx", ".onnx.manifest.json")) and not derived:
            shutil.copy2(path, work / path.name)
    if (src / "score_stats.json").is_file():
        shutil.copy2(src / "score_stats.json", work / "score_stats.json")


def _bench(work: Path, data: Path, duration: float) -> dict[str, Any]:
    out = work / "bench.json"
    cmd = [
        sys.executable, "-m", "edgevae", "bench", str(work / "analyze.onnx"),
        str(work / "analyze.int8.cpu.onnx"), "--backend", "ort", "--batch", "1", "--threads", "2",
        "--duration", str(duration), "--min-iters", "500", "--data", str(data), "--json", str(out),
        "--quiet", "--no-projection",
    ]  # fmt: skip
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    doc = json.loads(out.read_text())
    rows = []
    for r in doc["results"]:
        lat = r["latency_ms"]
        rows.append(
            {
                "artifact": r["artifact_name"],
                "n": lat["n"],
                "p50_ms": lat["p50"],
                "p90_ms": lat["p90"],
                "min_ms": lat["min"],
                "ratio_p50": (r.get("ratio") or {}).get("p50"),
                "other_cpu_mean_cores": (r.get("disturbance") or {}).get("other_cpu_mean_cores"),
                "kept_disturbed_slices": (r.get("disturbance") or {}).get("kept_disturbed"),
            }
        )
    lines = [
        "| artifact | n | p50 ms | p90 ms | min ms | speed vs FP32 (p50) | other CPU load |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(rows):
        ratio = "baseline" if i == 0 else f"{r['ratio_p50']:.2f}x"
        lines.append(
            f"| {r['artifact']} | {r['n']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
            f"{r['min_ms']:.2f} | {ratio} | {r['other_cpu_mean_cores']:.2f} cores |"
        )
    command = " ".join(["edgevae", *cmd[3:]])
    md = "\n".join(lines) + f"\n\nCommand: `{command}`\n"
    return {"command": command, "rows": rows, "markdown": md}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True, help="scratch copy of the export")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/quantization/nano-gate"))
    ap.add_argument("--duration", type=float, default=5.0)
    args = ap.parse_args(argv)

    _copy_export(args.export, args.work)
    results = {}
    for precision in ("fp16", "int8"):
        result = quantize(
            args.work, QuantConfig(precision=precision), args.data,
            progress=lambda line: print(line, file=sys.stderr),
        )  # fmt: skip
        results[precision] = result.to_dict()
    speed = _bench(args.work, args.data, args.duration)
    env = capture_environment()
    doc = {"export": str(args.export), "results": results, "cpu_speed": speed, "environment": env}
    write_json_atomic(args.out.with_name(args.out.name + ".json"), doc)
    summary = {
        "machine": summary_line(env),
        "cpu_isa": (env.get("cpu") or {}).get("isa"),
        "libraries": env.get("libraries"),
        "git_revision": env.get("git_revision"),
    }
    parts = [markdown(results["fp16"]), markdown(results["int8"], summary, speed)]
    write_bytes_atomic(args.out.with_name(args.out.name + ".md"), "\n".join(parts).encode())
    verdicts = {p: r["verdict"] for p, r in results.items()}
    print(f"wrote {args.out}.json and {args.out}.md; verdicts {verdicts}")
    return 0 if set(verdicts.values()) == {"passed"} else 1


if __name__ == "__main__":
    raise SystemExit(main())
