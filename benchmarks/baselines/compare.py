"""What multimodality buys: the multimodal VAE vs the concat-ae and camera-only baselines.

Trains each model with the same trainer, data, seed and epoch budget (epochs, not minutes, so a
busy machine cannot favour one model), evaluates each with ``edgevae eval``, and writes a per
anomaly type AUROC table.

    python benchmarks/baselines/compare.py --data DATA --runs RUNS --epochs 15 --lr 0.003 \
        --out benchmarks/baselines/results

Runs that already exist in RUNS are reused (delete them to retrain).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

KINDS = ("mvae", "concat-ae", "unimodal")


def _run(cmd: list[str]) -> float:
    print("+", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--preset", default="nano")
    ap.add_argument("--lr", type=float, default=3e-3, help="learning rate (the pipeline's)")
    args = ap.parse_args()

    from edgevae._util.artifacts import write_json_atomic
    from edgevae._util.mdtable import markdown_table
    from edgevae.bench.env import capture_environment

    exe = [sys.executable, "-m", "edgevae"]
    results: dict[str, dict] = {}
    for kind in KINDS:
        run = args.runs / kind
        seconds = {}
        if not (run / "model.json").is_file():
            seconds["train"] = _run(
                [
                    *exe,
                    "train",
                    "--data",
                    str(args.data),
                    "--out",
                    str(run),
                    "--preset",
                    args.preset,
                    "--model",
                    kind,
                    "--epochs",
                    str(args.epochs),
                    "--lr",
                    str(args.lr),
                    "--patience",
                    "0",
                    "--quiet",
                    "--overwrite",
                ]
            )
        seconds["eval"] = _run(
            [
                *exe,
                "eval",
                str(run),
                "--data",
                str(args.data),
                "--overwrite",
                "--no-figures",
                "--quiet",
            ]
        )
        metrics = json.loads((run / "eval" / "metrics.json").read_text())
        metrics["seconds"] = seconds
        results[kind] = metrics

    types = results["mvae"]["anomaly_types"][1:]  # [0] is "normal"
    headers = ["anomaly type", *KINDS, "mvae - best baseline"]
    rows = []
    for name in ["overall", *types]:
        vals = []
        for kind in KINDS:
            m = results[kind]
            src = m["overall"] if name == "overall" else m["per_type"].get(name, {})
            vals.append(src.get("auroc"))
        margin = None if None in vals else vals[0] - max(vals[1:])
        rows.append(
            [
                name,
                *(f"{v:.3f}" if v is not None else "-" for v in vals),
                f"{margin:+.3f}" if margin is not None else "-",
            ]
        )
    env = capture_environment()
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {
        "preset": args.preset,
        "epochs": args.epochs,
        "lr": args.lr,
        "data": str(args.data),
        "environment": env,
        "models": {
            k: {
                "parameters": v["model"]["parameters"],
                "overall": v["overall"],
                "per_type": v["per_type"],
                "camera_masked": {c: r["overall"] for c, r in v["camera_masked"].items()},
                "imputation": v["imputation"],
                "seconds": v["seconds"],
            }
            for k, v in results.items()
        },
    }
    write_json_atomic(args.out / "compare.json", summary)
    params = ", ".join(f"{k} {v['model']['parameters']:,}" for k, v in results.items())
    md = "\n".join(
        [
            f"# Frame-level AUROC per anomaly type: {args.preset}, {args.epochs} epochs each, "
            f"lr {args.lr:g}",
            "",
            f"Data: `{args.data}` (built-in benchmark). Parameters: {params}.",
            "Same trainer, data, seed and epoch budget for every model; `unimodal` sees the "
            "cameras only; `concat-ae` is an early-fusion autoencoder over all modalities.",
            "",
            markdown_table(headers, rows),
            "",
            f"Machine: {env.get('cpu', {}).get('model', '?')}; reproduce with "
            "`python benchmarks/baselines/compare.py --data DATA --runs RUNS "
            f"--epochs {args.epochs} --lr {args.lr:g}`.",
        ]
    )
    (args.out / "compare.md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
