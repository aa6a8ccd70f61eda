"""How the score parts are combined matters: alternative rules on one trained run, no retraining.

Every rule is fitted on the **normal validation split only** (means, standard deviations,
covariances; no labels) and evaluated as frame-level AUROC on the test split, each clip's score
spread over its frames as in ``edgevae eval`` (the per-frame rules score each frame itself).

    python benchmarks/baselines/score_combination.py \\
        --run runs/pipeline/train --data runs/pipeline/data

DESIGN §4 first proposed ``score = sum_p weight_p * part_p``; this script measured what other rules
would buy. Its result (the max of the standardised parts, +0.03) is now the default rule
(``ScoreStats.combine``; ``edgevae train --score-combine``), in every backend. The script
recomputes the raw parts with the model, so it gives the same table for a run of either rule.

Rules beyond the clip-level parts, measured and not adopted:

* ``per-expert cross``: ``cross_modal`` split into one KL(q_m || PoE of the others) part per
  modality, so the max can pick the one expert that disagrees (each is also printed alone: how
  much cross-modal signal each expert carries);
* ``per-frame``: each frame gets its own reconstruction parts (a camera's error on that frame,
  the motion steps and log-mel frames that fall in it), standardised on normal validation frames,
  max'ed with its clip's KL parts; this removes the clip-level cap on frame AUROC.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def per_frame_errors(x, r, frames: int):
    """Squared error per video frame: (B, T, H, W) video, (B, C, F, W) spectrogram (time last),
    (B, steps, dims) series -> (B, T); time axes must divide by T."""
    e = (x.float() - r.float()).pow(2)
    if e.ndim == 4 and e.shape[1] == frames:  # video: frames stacked as channels
        return e.flatten(2).mean(2)
    if e.ndim == 4:  # spectrogram: its last axis is time
        b, _, _, f = e.shape
        return e.reshape(b, -1, frames, f // frames).mean(dim=(1, 3))
    b, steps, dims = e.shape  # series over steps
    return e.reshape(b, frames, steps // frames, dims).mean(dim=(2, 3))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    args = ap.parse_args()

    import torch
    from sklearn.metrics import roc_auc_score

    from edgevae.data.format import open_dataset
    from edgevae.data.loader import make_loader
    from edgevae.model.fusion import cross_modal_kl
    from edgevae.train.checkpoint import load_checkpoint
    from edgevae.train.score_fit import score_batch

    ckpt = load_checkpoint(args.run)
    model = ckpt.model.eval()
    names = list(model.modalities.names)
    ds = open_dataset(args.data, verify="none")

    def collect(split: str) -> tuple[np.ndarray, ...]:
        clip, cross, frame, labels = [], [], [], []
        for b in make_loader(ds, split, 64, normalizer=ckpt.normalizer):
            inputs = {n: b[n] for n in names}
            t = b["frame_labels"].shape[1]
            raw, mask, out = score_batch(model, inputs, b["mask"])
            cross.append(cross_modal_kl(out.expert_mu, out.expert_logvar, mask).numpy())
            errs = [per_frame_errors(inputs[n], out.recon[n], t) for n in names]
            frame.append(torch.stack(errs, 2).numpy())  # (B, T, M)
            clip.append(raw.numpy())
            labels.append(b["frame_labels"].numpy())
        return tuple(np.concatenate(a) for a in (clip, cross, frame, labels))

    val, cross_val, frame_val, _ = collect("val")  # the val split is normal data only
    test, cross_test, frame_test, labels = collect("test")
    n_clips, frames = labels.shape
    flat = labels.reshape(-1)
    m = len(names)
    types = list(ds.anomaly_types)

    def z(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
        return (x - ref.mean(0)) / ref.std(0)

    zc = z(test, val)  # (N, P) clip parts
    log_val, log_test = np.log(np.maximum(val, 1e-9)), np.log(np.maximum(test, 1e-9))
    zl = z(log_test, log_val)
    cov = np.cov(z(log_val, log_val).T)
    prec = np.linalg.inv(cov + 1e-3 * np.eye(len(cov)))
    per_expert = np.concatenate([zc[:, : m + 1], z(cross_test, cross_val)], 1)
    zf = z(frame_test.reshape(-1, m), frame_val.reshape(-1, m)).reshape(n_clips, frames, m)
    smooth = zf.copy()
    smooth[:, 1:-1] = (zf[:, :-2] + zf[:, 1:-1] + zf[:, 2:]) / 3  # 3-frame moving average
    clip_kl = np.repeat(zc[:, None, m:], frames, 1)  # (N, T, 2)
    clip_rules = {
        "sum of z (first DESIGN proposal)": zc.sum(1),
        "sum of positive z": np.maximum(zc, 0).sum(1),
        "max of z (the default rule)": zc.max(1),
        "sum of z of log parts": zl.sum(1),
        "max of z of log parts": zl.max(1),
        "top-2 z of log parts": np.sort(zl, 1)[:, -2:].sum(1),
        "Mahalanobis of log parts": np.einsum("ni,ij,nj->n", zl, prec, zl),
        "max of z, per-expert cross": per_expert.max(1),
    }
    zx = z(cross_test, cross_val)
    clip_rules.update(
        {f"cross_{n} alone (one expert vs the others)": zx[:, i] for i, n in enumerate(names)}
    )
    rules = {k: np.repeat(v, frames) for k, v in clip_rules.items()}
    rules["max of z, per-frame recon"] = np.concatenate([zf, clip_kl], 2).max(2).reshape(-1)
    rules["max of z, per-frame recon, 3-frame smoothing"] = (
        np.concatenate([smooth, clip_kl], 2).max(2).reshape(-1)
    )
    ids = sorted(int(t) for t in np.unique(flat) if t > 0)
    print("| rule | overall | " + " | ".join(types[i] for i in ids) + " |")
    print("|---|---|" + "---|" * len(ids))
    for rule, f in rules.items():
        cells = [roc_auc_score(flat > 0, f)]
        for t in ids:
            keep = (flat == 0) | (flat == t)
            cells.append(roc_auc_score(flat[keep] > 0, f[keep]))
        print(f"| {rule} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
