"""Reference points for the model's numbers: linear PCA reconstruction and clip-level ceilings.

    python benchmarks/baselines/references.py --data runs/pipeline/data

Prints (1) the validation MSE (standardised units) of a k-component PCA fitted on the train split
for each non-video modality, and cam0's PSNR for a PCA fitted on 1500 train clips; (2) the
frame-level AUROC on the test split of two oracle clip scores spread over their frames as
``edgevae eval`` does: "any anomalous frame" (a perfect clip detector) and "anomalous fraction".
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    args = ap.parse_args()

    from sklearn.metrics import roc_auc_score

    from edgevae.data.format import open_dataset

    ds = open_dataset(args.data, verify="none")
    train, val = ds.split("train"), ds.split("val")
    names = [s.name for s in ds.modalities if s.kind.value != "video"]
    a = train.read(np.arange(len(train)), fields=[*names, "cam0"])
    b = val.read(np.arange(len(val)), fields=[*names, "cam0"])
    for name in names:
        st = ds.normalization[name]
        mean = np.array(st["mean"]).reshape(st["shape"])
        std = np.array(st["std"]).reshape(st["shape"])
        x = ((a[name] - mean) / std).reshape(len(a[name]), -1)
        v = ((b[name] - mean) / std).reshape(len(b[name]), -1)
        mu = x.mean(0)
        _, _, vt = np.linalg.svd(x - mu, full_matrices=False)
        for k in (8, 16, 32):
            rec = (v - mu) @ vt[:k].T @ vt[:k] + mu
            print(f"{name}: PCA-{k} val MSE {((rec - v) ** 2).mean():.3f}")
    c = a["cam0"].reshape(len(a["cam0"]), -1).astype(np.float32) / 255
    cv = b["cam0"].reshape(len(b["cam0"]), -1).astype(np.float32) / 255
    mu = c.mean(0)
    print(f"cam0: mean frame val PSNR {-10 * np.log10(((cv - mu) ** 2).mean()):.2f} dB")
    _, _, vt = np.linalg.svd(c[:1500] - mu, full_matrices=False)
    for k in (8, 32, 128):
        rec = (cv - mu) @ vt[:k].T @ vt[:k] + mu
        print(f"cam0: PCA-{k} val PSNR {-10 * np.log10(((rec - cv) ** 2).mean()):.2f} dB")

    test = ds.split("test")
    labels = test.read(np.arange(len(test)), fields=["frame_labels"])["frame_labels"]
    flat = labels.reshape(-1) > 0
    for rule, clip in (
        ("any anomalous frame", (labels > 0).any(1).astype(float)),
        ("anomalous fraction", (labels > 0).mean(1)),
    ):
        auc = roc_auc_score(flat, np.repeat(clip, labels.shape[1]))
        print(f"oracle clip score '{rule}': frame AUROC {auc:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
