"""The measuring steps of a benchmark run, outside the timing loop itself: accuracy against the
reference, per-configuration feeds and a trial run, peak memory, MAC counts, power sampling, and
turning raw timings into result rows (schema in :mod:`edgevae.bench.report`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgevae.bench import feeds
from edgevae.bench.plan import Artifact, Pair, batch_limits
from edgevae.bench.stats import LatencyStats, speedup, summarize
from edgevae.bench.timing import TimingConfig, TimingResult
from edgevae.errors import EdgeVAEError
from edgevae.runtime.base import Runner

Say = Callable[[str, dict[str, Any]], None]


@dataclass
class Conf:
    """One timed configuration: a pair at one batch size, ready to run."""

    pair: Pair
    batch: int
    fn: Callable[[], Any] | None = None
    error: str | None = None
    memory: dict[str, Any] = field(default_factory=dict)
    macs: int | None = None
    normalization_source: str | None = None


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


# ----------------------------------------------------------------------------- accuracy


def _outputs(runner: Runner, feed_list: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {}
    for feed in feed_list:
        for k, v in runner.run(feed).items():
            parts.setdefault(k, []).append(np.asarray(v))
    return {k: np.concatenate(v) for k, v in parts.items()}


def _same_inputs(a: Runner, b: Runner) -> bool:
    return {n: (i.shape[1:], i.dtype) for n, i in a.inputs.items()} == {
        n: (i.shape[1:], i.dtype) for n, i in b.inputs.items()
    }


def accuracy_block(
    out: dict[str, np.ndarray],
    ref_out: dict[str, np.ndarray],
    samples: int,
    labels: np.ndarray | None,
    ref_auroc: float | None,
    is_ref: bool,
) -> dict[str, Any]:
    """The ``accuracy`` block of a row: per-output SQNR/cosine/errors vs the reference, the score's
    SQNR, and AUROC (with its drop vs the reference) when labels exist."""
    per = {k: feeds.output_metrics(ref_out[k], out[k]) for k in out if k in ref_out}
    score = per.get("score", {})
    sqnrs = [m["sqnr_db"] for m in per.values() if m["sqnr_db"] is not None]
    auc = None
    if "score" in out and labels is not None:
        auc = feeds.auroc(labels[: len(out["score"])], out["score"])
    return {
        "is_reference": is_ref,
        "samples": samples,
        "score_sqnr_db": score.get("sqnr_db"),
        "score_identical": score.get("identical"),
        "score_cosine": score.get("cosine"),
        "worst_sqnr_db": min(sqnrs) if sqnrs else None,
        "outputs": per,
        "auroc": auc,
        "auroc_level": "clip" if auc is not None else None,
        "auroc_drop": (ref_auroc - auc) if auc is not None and ref_auroc is not None else None,
    }


def run_accuracy(
    pairs: Sequence[Pair],
    ref: Pair,
    data: feeds.DataSample | None,
    *,
    samples: int,
    seed: int,
    say: Say,
    notes: list[str],
) -> None:
    """Fill ``pair.accuracy`` for every pair by running the same inputs through it and ``ref``.

    Inputs come from ``data`` (normalised clips) or are random (seeded, identical for all pairs).
    A pipeline pair shares the result of the model it wraps. A pair that raises gets ``error``.
    """
    assert ref.runner is not None  # the caller picks a reference with a runner
    lo, hi = batch_limits(ref.runner)
    chunk = lo if lo == hi else max(lo, min(hi or 32, 32))
    rng = np.random.default_rng(seed + 1)
    n = min(samples, len(data)) if data is not None else samples
    feed_list = [
        data.take(start, chunk)
        if data is not None
        else feeds.random_feed(ref.runner.inputs, chunk, rng, ref.art.modalities)
        for start in range(0, n, chunk)
    ]
    labels = None
    if data is not None and data.labels is not None:
        labels = np.concatenate(
            [data.labels[np.arange(s, s + chunk) % len(data)] for s in range(0, n, chunk)]
        )
    say("accuracy", {"message": f"reference outputs from {ref.art.name}"})
    try:
        ref_out = _outputs(ref.runner, feed_list)
    except EdgeVAEError:
        raise
    except Exception as exc:
        ref.error = one_line(exc)
        notes.append(f"no accuracy: the reference {ref.art.name} failed ({ref.error}).")
        return
    ref_auroc = feeds.auroc(labels, ref_out["score"]) if "score" in ref_out else None
    total = sum(len(f["mask"]) for f in feed_list)
    done: dict[tuple[int, str], dict[str, Any] | None] = {}
    for pair in pairs:
        if pair.runner is None:
            continue
        key = (id(pair.art), pair.inner_backend)
        if key not in done:
            is_ref = key == (id(ref.art), ref.inner_backend)
            if not is_ref and not _same_inputs(pair.runner, ref.runner):
                notes.append(
                    f"no accuracy for {pair.art.name}: its inputs differ from the reference."
                )
                done[key] = None
            else:
                say("accuracy", {"message": f"{pair.art.name} ({pair.inner_backend})"})
                try:
                    out = ref_out if is_ref else _outputs(pair.runner, feed_list)
                    done[key] = accuracy_block(out, ref_out, total, labels, ref_auroc, is_ref)
                except EdgeVAEError:
                    raise
                except Exception as exc:
                    pair.error = one_line(exc)
                    done[key] = None
        pair.accuracy = done[key]


# ----------------------------------------------------------------------------- configurations


def memory_probe(fn: Callable[[], Any], device: str, iters: int = 3) -> dict[str, Any]:
    """Peak resident memory (process-wide VmHWM) while running ``fn`` a few times; the GPU peak
    through torch on CUDA."""
    reset = False
    try:
        with open("/proc/self/clear_refs", "w") as f:  # "5" resets VmHWM (Linux >= 4.0)
            f.write("5")
        reset = True
    except OSError:
        pass
    torch = sys.modules.get("torch")
    cuda = device == "cuda" and torch is not None and torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for _ in range(iters):
        fn()
    hwm = None
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return {
        "peak_rss_mib": hwm,
        "gpu_peak_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "method": "process VmHWM over 3 runs after a reset (shared by all loaded configurations)"
        if reset
        else "process VmHWM since start (reset not permitted)",
    }


def torch_macs(runner: Runner, rng: np.random.Generator) -> int | None:
    """MACs per sample of a TorchRunner's module (torch's FLOP counter at batch 1), else None."""
    module = getattr(runner, "module", None)
    if module is None:
        return None
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    feed = feeds.random_feed(runner.inputs, 1, rng)
    device = getattr(runner, "device", "cpu")
    args = [torch.from_numpy(feed[n]).to(device) for n in runner.inputs]
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        module(*args)
    return int(counter.get_total_flops()) // 2


def prepare(
    conf: Conf, data: feeds.DataSample | None, device: str, rng: np.random.Generator
) -> None:
    """Build the configuration's feed and callable, run it once and probe its memory.

    A non-edgevae exception marks the configuration failed (``conf.error``).
    """
    from edgevae.data.transforms import Normalizer

    pair = conf.pair
    if pair.runner is None or pair.error:
        conf.error = pair.error or "the runner could not be built"
        return
    runner, b = pair.runner, conf.batch
    if pair.backend == "pipeline":
        mods = pair.art.modalities or (data.modalities if data is not None else None)
        assert mods is not None  # checked by the driver before
        if data is not None:
            stats, conf.normalization_source = data.normalization, "dataset"
        elif pair.art.normalization is not None:
            stats, conf.normalization_source = pair.art.normalization, "artifact"
        else:
            stats = feeds.identity_normalization(mods)
            conf.normalization_source = "identity (no statistics found; timing only)"
        normalizer = Normalizer(mods, stats)
        raw = (
            data.take(0, b, raw=True)
            if data is not None
            else feeds.random_raw(mods, normalizer, b, rng)
        )
        fn: Callable[[], Any] = feeds.PipelineRun(runner, mods, normalizer, raw)
    else:
        feed = (
            data.take(0, b)
            if data is not None
            else feeds.random_feed(runner.inputs, b, rng, pair.art.modalities)
        )

        def fn(runner: Runner = runner, feed: dict[str, np.ndarray] = feed) -> None:
            runner.run(feed)

    try:
        fn()
        conf.memory = memory_probe(fn, device)
    except EdgeVAEError:
        raise
    except Exception as exc:
        conf.error = one_line(exc)
        return
    conf.fn = fn


# ----------------------------------------------------------------------------- rows


def _settings(runner: Runner | None) -> dict[str, Any] | None:
    if runner is None:
        return None
    settings = getattr(runner, "settings", None)
    if isinstance(settings, dict):
        return dict(settings)
    return {
        "name": getattr(runner, "name", None),
        "device": getattr(runner, "device", None),
        "threads": getattr(runner, "threads", None),
    }


def build_row(
    row_id: str,
    conf: Conf,
    timing: TimingResult | None,
    timing_config: TimingConfig,
    *,
    device: str,
    threads: int | None,
    min_score_sqnr_db: float,
    keep_samples: bool,
    peak: dict[str, Any] | None,
    power: dict[str, Any] | None,
) -> dict[str, Any]:
    """One result row (see :mod:`edgevae.bench.report`)."""
    from edgevae.bench.matmul_peak import fraction_of_peak

    pair, art = conf.pair, conf.pair.art
    row: dict[str, Any] = {
        "id": row_id,
        "artifact": art.given,
        "artifact_name": art.name,
        "kind": art.kind,
        "precision": art.precision,
        "backend": pair.backend,
        "device": device,
        "batch": conf.batch,
        "threads": threads,
        "scope": "pipeline" if pair.backend == "pipeline" else "host_e2e",
        "status": "ok",
        "error": None,
        "latency_ms": None,
        "stages_ms": None,
        "baseline_id": None,
        "ratio": None,
        "accuracy": pair.accuracy,
        "compute": None,
        "memory": conf.memory or None,
        "disturbance": None,
        "warmup": None,
        "power": None,
        "truncated": False,
        "runner": _settings(pair.runner),
        "normalization": conf.normalization_source,
    }
    error = conf.error or (timing.error if timing is not None else "not timed")
    if error is None and timing is not None and not timing.samples_s:
        error = "no timed iterations (time limit reached during warm-up?)"
    if error is not None or timing is None:
        row.update(status="failed", error=error)
        return row
    lat = summarize([s * 1e3 for s in timing.samples_s], conf.batch)
    row["latency_ms"] = lat.to_dict()
    if timing.stages_s:
        row["stages_ms"] = {
            k: summarize([s * 1e3 for s in v], conf.batch).to_dict()
            for k, v in timing.stages_s.items()
        }
    row["disturbance"] = timing.disturbance(timing_config)
    row["warmup"] = {"iters": timing.warmup_iters, "seconds": timing.warmup_s}
    row["truncated"] = timing.truncated
    if conf.macs:
        infer_p50 = row["stages_ms"]["infer"]["p50"] if row["stages_ms"] else lat.p50
        comp = fraction_of_peak(conf.macs, conf.batch, infer_p50, (peak or {}).get("gflops") or 0.0)
        if not peak:
            comp["gflops"] = 2.0 * conf.macs * conf.batch / (infer_p50 / 1e3) / 1e9
        row["compute"] = {"macs_per_sample": conf.macs, **comp}
    row["power"] = power
    acc = pair.accuracy
    if acc and not acc["is_reference"]:
        key = acc["score_sqnr_db"] if acc["score_sqnr_db"] is not None else acc["worst_sqnr_db"]
        if key is not None and key < min_score_sqnr_db:
            row["status"] = "accuracy_failed"
    if keep_samples:
        row["samples_ms"] = [round(s * 1e3, 6) for s in timing.samples_s]
    return row


def add_ratios(rows: list[dict[str, Any]], confs: Sequence[Conf], base: Artifact) -> None:
    """Set ``baseline_id`` and ``ratio`` (speed-up vs the baseline at the same batch) in place."""
    base_pair = next((c.pair for c in confs if c.pair.art is base), None)
    by_batch = {
        c.batch: r
        for c, r in zip(confs, rows, strict=True)
        if base_pair is not None and c.pair is base_pair
    }
    for row in rows:
        b = by_batch.get(row["batch"])
        if b is None:
            continue
        row["baseline_id"] = b["id"]
        if row["latency_ms"] and b["latency_ms"] and row is not b:
            row["ratio"] = speedup(
                LatencyStats.from_dict(row["latency_ms"]), LatencyStats.from_dict(b["latency_ms"])
            )


def make_projection(
    arts: Sequence[Artifact], base: Artifact, batches: Sequence[int], notes: list[str]
) -> dict[str, Any] | None:
    """The Jetson roofline estimate from the FP32 ONNX among ``arts`` (the baseline first)."""
    from edgevae.bench.projection import onnx_cost, project

    ordered = [base, *[a for a in arts if a is not base]]
    onnx = [a for a in ordered if a.kind == "onnx"]
    pick = next((a for a in onnx if a.precision in ("fp32", None)), onnx[0] if onnx else None)
    if pick is None:
        notes.append("no Jetson projection: it counts MACs and bytes from an .onnx artifact.")
        return None
    proj = project(onnx_cost(pick.path), batches=batches)
    proj["from_artifact"] = pick.given
    return proj
