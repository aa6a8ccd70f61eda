"""Model/objective ablation at a fixed wall-clock budget: what makes nano learn in minutes.

Each variant trains the nano mvae for ``--minutes`` on the same data and seed (a time budget, not an
epoch budget: the question is what a user gets in the time the pipeline allows, so run it on a
quiet machine, one variant at a time), is evaluated with ``edgevae eval`` (no figures, no masked
cameras) and reported as frame AUROC overall / per type plus camera imputation PSNR.

    python benchmarks/baselines/ablation.py --data DATA --runs RUNS --minutes 8 \\
        --variant 'v1-defaults={"subsets_k": 2, "dense_max_elements": 0}|{"lr": 0.001}' \\
        --variant 'k0-lr3={"subsets_k": 0, "dense_max_elements": 0}|{"lr": 0.003}' \\
        --out benchmarks/baselines/results/ablation.json

A variant is ``name=MODEL_OVERRIDES|TRAIN_OVERRIDES`` (JSON objects: ModelConfig / TrainConfig
fields). Existing runs in RUNS are reused (delete them to retrain). The JSON written to ``--out``
holds one record per variant; the markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def _variant(text: str) -> tuple[str, dict, dict]:
    name, _, rest = text.partition("=")
    model_json, _, train_json = rest.partition("|")
    return name, json.loads(model_json or "{}"), json.loads(train_json or "{}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--variant", action="append", required=True, type=_variant)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    from edgevae._util.artifacts import write_json_atomic
    from edgevae.bench.env import capture_environment
    from edgevae.evaluate.run import EvalConfig, evaluate
    from edgevae.model.config import ModelConfig
    from edgevae.train import TrainConfig
    from edgevae.train.loop import train

    records = []
    for name, model_over, train_over in args.variant:
        run = args.runs / name / "run"
        cfg = ModelConfig.from_preset(model_over.pop("preset", "nano"), **model_over)
        tcfg = TrainConfig(
            **{"epochs": 1000, "max_minutes": args.minutes, "patience": 0, **train_over}
        )
        seconds = None
        if not (run / "model.json").is_file():
            t0 = time.perf_counter()
            train(args.data, run, cfg, tcfg, overwrite=True)
            seconds = time.perf_counter() - t0
        ev = args.runs / name / "eval"
        evaluate(
            run,
            args.data,
            EvalConfig(figures=False, mask_cameras=False, overwrite=True),
            out_dir=ev,
        )
        metrics = json.loads((ev / "metrics.json").read_text())
        history = json.loads((run / "model.json").read_text())["history"]
        records.append(
            {
                "variant": name,
                "model_overrides": model_over,
                "train_overrides": train_over,
                "train_seconds": seconds,
                "epochs": len(history),
                "steps": sum(e["steps"] for e in history),
                "val": history[-1]["val"],
                "auroc": metrics["overall"]["auroc"],
                "per_type": {t: v["auroc"] for t, v in metrics["per_type"].items()},
                "imputation_psnr": {
                    c: [v["model_psnr"], v["mean_frame_psnr"]]
                    for c, v in metrics["imputation"].items()
                },
            }
        )
    types = list(records[0]["per_type"])
    print("| variant | epochs | steps | AUROC | " + " | ".join(types) + " | cam0 imp. dB |")
    print("|---|---|---|---|" + "---|" * len(types) + "---|")
    for r in records:
        cells = " | ".join(f"{r['per_type'][t]:.3f}" for t in types)
        imp = r["imputation_psnr"].get("cam0", [float("nan")] * 2)
        print(
            f"| {r['variant']} | {r['epochs']} | {r['steps']} | {r['auroc']:.3f} | {cells} | "
            f"{imp[0]:.2f} (mean frame {imp[1]:.2f}) |"
        )
    write_json_atomic(
        args.out,
        {"minutes": args.minutes, "records": records, "environment": capture_environment()},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
