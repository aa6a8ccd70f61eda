"""How the score parts are combined matters: alternatives to the contract's sum, on one trained run.

Every combination is fitted on the **normal validation split only** (means, standard deviations,
covariances; no labels) and evaluated as frame-level AUROC on the test split, each clip's score
spread over its frames as in ``edgevae eval``.

    python benchmarks/baselines/score_combination.py \
        --run runs/pipeline/train --data runs/pipeline/data

The contract (DESIGN §4) fixes ``score = sum_p weight_p * part_p``; this script measures what a
different rule would buy before anyone proposes changing it (the exported graphs, the CUDA
``anomaly_score`` kernel and the TensorRT plugin all implement the sum).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    args = ap.parse_args()

    from sklearn.metrics import roc_auc_score

    import edgevae
    from edgevae.data.format import open_dataset

    model = edgevae.load(args.run)
    ds = open_dataset(args.data, verify="none")
    stats = json.loads((args.run / "model.json").read_text())["score_stats"]
    mean, std = np.array(stats["mean"]), np.array(stats["std"])

    def raw_parts(split: str) -> tuple[np.ndarray, dict]:
        reader = ds.split(split)
        d = reader.read(np.arange(len(reader)))
        _, parts, _ = model.score({k: d[k] for k in ds.modalities.names}, d["mask"])
        return parts * std + mean, d  # back to raw parts (missing recon parts stay at the mean)

    val, _ = raw_parts("val")
    test, d = raw_parts("test")
    labels = d["frame_labels"]
    frames, flat = labels.shape[1], labels.reshape(-1)
    types = list(ds.anomaly_types)

    def z(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
        return (x - ref.mean(0)) / ref.std(0)

    log_val, log_test = np.log(np.maximum(val, 1e-9)), np.log(np.maximum(test, 1e-9))
    zl = z(log_test, log_val)
    cov = np.cov(z(log_val, log_val).T)
    prec = np.linalg.inv(cov + 1e-3 * np.eye(len(cov)))
    rules = {
        "sum of z (contract)": z(test, val).sum(1),
        "sum of positive z": np.maximum(z(test, val), 0).sum(1),
        "max of z": z(test, val).max(1),
        "sum of z of log parts": zl.sum(1),
        "max of z of log parts": zl.max(1),
        "top-2 z of log parts": np.sort(zl, 1)[:, -2:].sum(1),
        "Mahalanobis of log parts": np.einsum("ni,ij,nj->n", zl, prec, zl),
    }
    ids = sorted(int(t) for t in np.unique(flat) if t > 0)
    names = [types[i] for i in ids]
    print("| rule | overall | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(ids))
    for rule, clip_scores in rules.items():
        f = np.repeat(clip_scores, frames)
        cells = [roc_auc_score(flat > 0, f)]
        for t in ids:
            keep = (flat == 0) | (flat == t)
            cells.append(roc_auc_score(flat[keep] > 0, f[keep]))
        print(f"| {rule} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
