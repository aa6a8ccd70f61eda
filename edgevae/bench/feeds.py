"""Inputs for benchmarks: random or dataset feeds with realistic masks, the ``pipeline`` stages
(raw sensor data -> Normalizer -> model -> scoring), and output-accuracy metrics.

Random feeds follow the input contract (DESIGN §3): video in [0, 1], other modalities standard
normal, a mask whose rows are mostly "all present" with some "one missing" and "only one present"
rows (never all missing), and zeros in every missing modality's tensor.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgevae.errors import ConfigError, ShapeError
from edgevae.modalities import ModalityKind, ModalitySet
from edgevae.runtime.base import Runner, TensorInfo

# fraction of rows per mask pattern in a random feed: all present / one missing / only one present
MASK_MIX = (0.7, 0.2, 0.1)


def realistic_mask(batch: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """(batch, m) float32 mask drawn from :data:`MASK_MIX`; no row is all zeros."""
    mask = np.ones((batch, m), np.float32)
    if m == 1:
        return mask
    kind = rng.choice(3, size=batch, p=MASK_MIX)
    for i in range(batch):
        if kind[i] == 1:
            mask[i, rng.integers(m)] = 0.0
        elif kind[i] == 2:
            mask[i] = 0.0
            mask[i, rng.integers(m)] = 1.0
    return mask


def concrete_shape(info: TensorInfo, batch: int) -> tuple[int, ...]:
    """``info.shape`` with the leading symbolic dimension set to ``batch``.

    Raises:
        ConfigError: a symbolic dimension other than the first (the feed cannot be guessed).
    """
    dims: list[int] = []
    for i, d in enumerate(info.shape):
        if isinstance(d, int):
            dims.append(d)  # a fixed batch is checked before feeds are made
        elif i == 0:
            dims.append(batch)
        else:
            raise ConfigError(
                f"input '{info.name}' has a symbolic dimension '{d}' besides the batch; "
                "benchmark it with --data DIR so real inputs decide the shape."
            )
    return tuple(dims)


def random_feed(
    inputs: dict[str, TensorInfo],
    batch: int,
    rng: np.random.Generator,
    modalities: ModalitySet | None = None,
) -> dict[str, np.ndarray]:
    """A random feed for ``inputs`` at ``batch`` (see module docstring)."""
    video = {s.name for s in modalities or () if s.kind is ModalityKind.video}
    feed: dict[str, np.ndarray] = {}
    for name, info in inputs.items():
        shape = concrete_shape(info, batch)
        if name == "mask":
            feed[name] = realistic_mask(batch, shape[1], rng).astype(info.dtype)
        elif info.dtype == np.uint8:
            feed[name] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        elif np.issubdtype(info.dtype, np.floating):
            x = rng.random(shape) if name in video else rng.standard_normal(shape)
            feed[name] = x.astype(info.dtype)
        else:
            feed[name] = np.zeros(shape, info.dtype)
    return _zero_missing(feed, modalities)


def _zero_missing(feed: dict[str, np.ndarray], modalities: ModalitySet | None) -> dict:
    mask = feed.get("mask")
    if mask is None or modalities is None:
        return feed
    for i, spec in enumerate(modalities):
        x = feed.get(spec.name)
        if x is not None and x.shape[0] == mask.shape[0]:
            feed[spec.name] = x * mask[:, i].reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype)
    return feed


@dataclass
class DataSample:
    """Clips read from a dataset: raw arrays, normalised arrays, mask and clip labels."""

    modalities: ModalitySet
    normalization: dict[str, Any]
    raw: dict[str, np.ndarray]
    normalized: dict[str, np.ndarray]
    labels: np.ndarray | None
    split: str
    path: str

    def __len__(self) -> int:
        return int(self.raw["mask"].shape[0])

    def take(self, start: int, n: int, *, raw: bool = False) -> dict[str, np.ndarray]:
        """``n`` consecutive clips from ``start`` (wrapping around), raw or normalised."""
        src = self.raw if raw else self.normalized
        idx = (np.arange(start, start + n) % len(self)).astype(np.int64)
        keys = [*self.modalities.names, "mask"]
        return {k: np.ascontiguousarray(src[k][idx]) for k in keys}


def load_data(path: str | os.PathLike[str], split: str | None, n: int) -> DataSample:
    """Read up to ``n`` clips of ``split`` (default: ``test``, else ``val``, else ``train``).

    Raises:
        DatasetError: a missing or corrupt dataset (from :func:`open_dataset`).
        ConfigError: an empty split.
    """
    from edgevae.data.format import open_dataset
    from edgevae.data.transforms import Normalizer

    reader = open_dataset(path, verify="size")
    name = split or next((s for s in ("test", "val", "train") if s in reader.splits), None)
    if name is None:
        raise ConfigError(f"dataset '{path}' has no splits to benchmark on.")
    sr = reader.split(name)
    if len(sr) == 0:
        raise ConfigError(f"split '{name}' of '{path}' is empty; pick another with --split.")
    raw = sr.read(np.arange(min(n, len(sr))))
    normalized = Normalizer(reader.modalities, reader.normalization).batch(raw)
    labels = None
    if "frame_labels" in raw:
        fl = np.asarray(raw["frame_labels"]).reshape(len(raw["mask"]), -1)
        labels = (fl > 0).any(axis=1).astype(np.int64)  # clip is anomalous if any frame is
    raw = {k: np.asarray(v) for k, v in raw.items()}
    return DataSample(
        reader.modalities, reader.normalization, raw, normalized, labels, name, str(path)
    )


def check_data_matches(data: DataSample, inputs: dict[str, TensorInfo], artifact: str) -> None:
    """Raise ShapeError unless the dataset's modalities are exactly the model's inputs (+ mask)."""
    want = {n: i for n, i in inputs.items() if n != "mask"}
    have = {s.name: s.shape for s in data.modalities}
    fix = "benchmark with the dataset the model was trained on."
    if set(want) != set(have):
        raise ShapeError(
            f"data directory '{data.path}' modalities {sorted(have)} do not match the inputs of "
            f"'{artifact}' {sorted(want)}; {fix}"
        )
    for name, info in want.items():
        dims = info.shape[1:]
        if len(dims) != len(have[name]) or any(
            isinstance(d, int) and d != s for d, s in zip(dims, have[name], strict=False)
        ):
            raise ShapeError(
                f"data directory '{data.path}': modality '{name}' has shape {have[name]}, "
                f"'{artifact}' expects {tuple(dims)}; {fix}"
            )


def identity_normalization(modalities: ModalitySet) -> dict[str, Any]:
    """Statistics that leave values unchanged (uint8 video still scaled by 1/255): used to time the
    pipeline when no real statistics are known (the work done is the same)."""
    stats: dict[str, Any] = {}
    for s in modalities:
        if s.kind is ModalityKind.video:
            stats[s.name] = {"scale": 1.0 / 255.0} if s.dtype == "uint8" else {}
        else:
            one = [1] * len(s.shape)
            stats[s.name] = {"shape": one, "mean": [0.0], "std": [1.0]}
    return stats


def random_raw(
    modalities: ModalitySet, normalizer: Any, batch: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Raw (un-normalised) sensor data: uint8 video frames, denormalised standard-normal others."""
    raw: dict[str, np.ndarray] = {}
    for s in modalities:
        shape = (batch, *s.shape)
        if s.kind is ModalityKind.video and s.dtype == "uint8":
            raw[s.name] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        else:
            y = rng.standard_normal(shape).astype(np.float32)
            raw[s.name] = normalizer.denormalize(s.name, y).astype(np.float32)
    raw["mask"] = realistic_mask(batch, len(modalities), rng)
    return raw


class PipelineRun:
    """One end-to-end iteration: raw batch -> Normalizer -> runner -> post-processing.

    Post-processing is what an application does with the outputs: the per-sample score and the
    anomaly flag (``score > threshold``) as host arrays, and reconstructed video back to uint8
    frames; without a ``score`` output, per-modality reconstruction MSE is the score.
    Calling it returns ``{"pre": s, "infer": s, "post": s}``.
    """

    def __init__(
        self,
        runner: Runner,
        modalities: ModalitySet,
        normalizer: Any,
        raw: dict[str, np.ndarray],
        threshold: float = 0.0,
    ) -> None:
        self.runner = runner
        self.modalities = modalities
        self.normalizer = normalizer
        self.raw = raw
        self.threshold = threshold
        self.last: dict[str, np.ndarray] = {}

    def __call__(self) -> dict[str, float]:
        t0 = time.perf_counter()
        feed = self.normalizer.batch(self.raw)
        t1 = time.perf_counter()
        out = self.runner.run(feed)
        t2 = time.perf_counter()
        self.last = self.postprocess(out, feed)
        t3 = time.perf_counter()
        return {"pre": t1 - t0, "infer": t2 - t1, "post": t3 - t2}

    def postprocess(self, out: dict[str, np.ndarray], feed: dict[str, np.ndarray]) -> dict:
        result: dict[str, np.ndarray] = {}
        if "score" in out:
            score = np.asarray(out["score"], np.float64)
        else:
            n = len(feed["mask"])
            errs = [
                ((out[f"recon_{s.name}"] - feed[s.name]) ** 2).reshape(n, -1).mean(1)
                for s in self.modalities
                if f"recon_{s.name}" in out
            ]
            score = np.sum(errs, axis=0) if errs else np.zeros(len(feed["mask"]))
        result["score"] = score
        result["anomaly"] = score > self.threshold
        for s in self.modalities:
            key = f"recon_{s.name}"
            if s.kind is ModalityKind.video and key in out:
                frames = self.normalizer.denormalize(s.name, out[key])
                result[key] = np.clip(np.rint(frames), 0, 255).astype(np.uint8)
        return result


def output_metrics(ref: np.ndarray, out: np.ndarray) -> dict[str, Any]:
    """SQNR (dB), cosine similarity, max and mean absolute error of ``out`` against ``ref``.

    Identical outputs have no finite SQNR: ``sqnr_db`` is None and ``identical`` True (the result
    stays strict JSON, which has no Infinity).
    """
    a = np.asarray(ref, np.float64).ravel()
    b = np.asarray(out, np.float64).ravel()
    if a.shape != b.shape:
        return {"sqnr_db": None, "cosine": None, "max_abs": None, "mean_abs": None,
                "identical": False}  # fmt: skip
    err = b - a
    signal, noise = float(np.dot(a, a)), float(np.dot(err, err))
    sqnr = 10.0 * math.log10(signal / noise) if noise > 0 and signal > 0 else None
    na, nb = math.sqrt(signal), float(np.linalg.norm(b))
    cosine = float(np.dot(a, b) / (na * nb)) if na > 0 and nb > 0 else (1.0 if na == nb else 0.0)
    return {
        "sqnr_db": sqnr,
        "cosine": cosine,
        "max_abs": float(np.max(np.abs(err))) if err.size else 0.0,
        "mean_abs": float(np.mean(np.abs(err))) if err.size else 0.0,
        "identical": noise == 0.0,
    }


def auroc(labels: np.ndarray | None, scores: np.ndarray) -> float | None:
    """ROC AUC of ``scores`` for binary ``labels``; None without labels or with one class only."""
    if labels is None or len(np.unique(labels)) < 2:
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, np.asarray(scores, np.float64)))
