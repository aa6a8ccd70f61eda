"""Benchmark edgevae's CUDA kernels against the eager PyTorch op sequences they replace (GPU only).

    python benchmarks/kernels/bench_kernels.py [--out results.json] [--quick]

Measures, on the current CUDA GPU, with CUDA events around every call (scope ``gpu_e2e``: what
the GPU timeline spends from the call's first to its last operation, launch gaps included):

* device-to-device copy bandwidth (``copy_`` of a 256 MiB buffer; read + write bytes / time);
* ``poe_fusion`` and ``anomaly_score`` vs their eager sequences at B = 1, 8, 64, 1024;
* ``preprocess`` vs its eager sequence at 640x480 and 1280x720 RGB frames (3 cameras, 8 frames,
  to 64x64 gray), at the batch sizes that fit in memory;
* the analyze pipeline: eager PyTorch vs PyTorch + kernels vs PyTorch + kernels in one CUDA graph.

Each configuration runs in interleaved rounds (eager, kernel, eager, kernel, ...) after a warm-up,
until both a minimum count and a minimum duration are reached; latencies are nearest-rank
percentiles of the raw per-call samples, speed-ups are ratios of p50s measured in the same run,
and achieved bandwidth is bytes / p50 time as a fraction of the measured copy bandwidth (the
bytes model of each kernel is stored with the result). Prints a table and writes JSON with the
environment. Nothing here runs without a GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import socket
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

BATCHES = (1, 8, 64, 1024)
PREPROCESS_FRAMES = {"640x480": (480, 640), "1280x720": (720, 1280)}


# --------------------------------------------------------------------------- statistics
def nearest_rank(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile of raw samples (no interpolation)."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def summarize(samples_ms: list[float]) -> dict[str, float]:
    return {
        "n": len(samples_ms),
        "min": min(samples_ms),
        "p50": nearest_rank(samples_ms, 50),
        "p90": nearest_rank(samples_ms, 90),
        "p99": nearest_rank(samples_ms, 99),
        "max": max(samples_ms),
        "mean": float(np.mean(samples_ms)),
    }


# --------------------------------------------------------------------------- bytes models
def preprocess_bytes(b: int, cams: int, t: int, in_hw: tuple[int, int], c_in: int,
                     out_hw: tuple[int, int], c_out: int) -> dict[str, int]:  # fmt: skip
    """``nominal``: every input byte + output; ``sectors``: the 32-byte DRAM sectors the bilinear
    taps touch (unique source rows x unique sectors per row, perfect caching) + output."""
    from edgevae.kernels.reference import bilinear_taps_ref

    frames = b * cams * t
    out = frames * c_out * out_hw[0] * out_hw[1] * 4
    y0, y1, _, _ = bilinear_taps_ref(in_hw[0], out_hw[0])
    x0, x1, _, _ = bilinear_taps_ref(in_hw[1], out_hw[1])
    rows = len(np.unique(np.concatenate([y0, y1])))
    cols = np.unique(np.concatenate([x0, x1]))
    offsets = (cols[:, None] * c_in + np.arange(c_in)[None, :]).ravel()
    sectors = len(np.unique(offsets // 32))
    return {
        "nominal": frames * in_hw[0] * in_hw[1] * c_in + out,
        "sectors": frames * rows * sectors * 32 + out,
    }


def poe_bytes(b: int, m: int, d: int) -> int:
    """Read mu, logvar (B, M, D) and mask; write z_mu, z_logvar (B, D), kl (B,), cross (B, M)."""
    return 4 * (2 * b * m * d + b * m + 2 * b * d + b + b * m)


def score_bytes(b: int, numels: list[int]) -> int:
    """Read inputs and reconstructions, mask, KLs; write raw, parts (B, M + 2) and score."""
    m = len(numels)
    return 4 * (2 * b * sum(numels) + 2 * b * m + b + 2 * b * (m + 2) + b)


# --------------------------------------------------------------------------- timing
def time_interleaved(fns: dict[str, Callable[[], Any]], *, min_count: int, min_seconds: float,
                     warmup: int, round_size: int = 10) -> dict[str, dict[str, float]]:  # fmt: skip
    """Per-call CUDA-event latencies (ms) of each function, interleaved in rounds."""
    import torch

    for fn in fns.values():
        for _ in range(warmup):
            fn()
    torch.cuda.synchronize()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    start = time.perf_counter()
    while (min(len(s) for s in samples.values()) < min_count
           or time.perf_counter() - start < min_seconds):  # fmt: skip
        for name, fn in fns.items():
            events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                      for _ in range(round_size)]  # fmt: skip
            for begin, end in events:
                begin.record()
                fn()
                end.record()
            torch.cuda.synchronize()
            samples[name] += [b.elapsed_time(e) for b, e in events]
    return {k: summarize(v) for k, v in samples.items()}


def copy_bandwidth(mib: int = 256, reps: int = 20) -> float:
    """Device-to-device copy bandwidth in GB/s (bytes read + written per second)."""
    import torch

    src = torch.empty(mib << 20, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    best = float("inf")
    for _ in range(reps):
        begin.record()
        dst.copy_(src)
        end.record()
        torch.cuda.synchronize()
        best = min(best, begin.elapsed_time(end))
    return 2 * src.numel() / (best * 1e-3) / 1e9


def fits(nbytes: int, fraction: float = 0.5) -> bool:
    import torch

    free, _ = torch.cuda.mem_get_info()
    return nbytes < fraction * free


# --------------------------------------------------------------------------- benchmarks
def bench_poe(args: argparse.Namespace, bw: float) -> list[dict[str, Any]]:
    import torch

    from edgevae.kernels import eager, torch_ops

    rows = []
    m, d = 5, 32
    for b in args.batches:
        g = torch.Generator(device="cuda").manual_seed(b)
        mu = torch.randn(b, m, d, device="cuda", generator=g)
        lv = torch.randn(b, m, d, device="cuda", generator=g)
        mask = (torch.rand(b, m, device="cuda", generator=g) < 0.8).float()
        stats = time_interleaved(
            {"eager": partial(eager.poe_fusion_eager, mu, lv, mask),
             "kernel": partial(torch_ops.poe_fusion, mu, lv, mask)},
            min_count=args.min_count, min_seconds=args.min_seconds, warmup=args.warmup,
        )  # fmt: skip
        nbytes = poe_bytes(b, m, d)
        rows.append(_row("poe_fusion", {"B": b, "M": m, "D": d}, stats, nbytes, bw))
    return rows


def bench_score(args: argparse.Namespace, bw: float) -> list[dict[str, Any]]:
    import torch

    from edgevae.kernels import eager, torch_ops

    shapes = [(8, 64, 64)] * 3 + [(1, 32, 32), (16, 18)]
    m = len(shapes)
    rows = []
    for b in args.batches:
        need = 2 * b * sum(math.prod(s) for s in shapes) * 4 * 3  # inputs + eager temporaries
        if not fits(need):
            rows.append({"kernel": "anomaly_score", "config": {"B": b}, "skipped":
                         f"needs ~{need / 2**30:.1f} GiB"})  # fmt: skip
            continue
        xs = [torch.rand(b, *s, device="cuda") for s in shapes]
        rs = [x + 0.1 * torch.randn_like(x) for x in xs]
        mask = torch.ones(b, m, device="cuda")
        kl, cross = torch.rand(b, device="cuda"), torch.rand(b, m, device="cuda")
        mean, std, weight = (torch.rand(m + 2, device="cuda") + 0.5 for _ in range(3))
        score_args = (xs, rs, mask, kl, cross, mean, std, weight)
        stats = time_interleaved(
            {"eager": partial(eager.anomaly_score_eager, *score_args),
             "kernel": partial(torch_ops.anomaly_score, *score_args)},
            min_count=args.min_count, min_seconds=args.min_seconds, warmup=args.warmup,
        )  # fmt: skip
        nbytes = score_bytes(b, [math.prod(s) for s in shapes])
        rows.append(_row("anomaly_score", {"B": b, "shapes": shapes}, stats, nbytes, bw))
    return rows


def bench_preprocess(args: argparse.Namespace, bw: float) -> list[dict[str, Any]]:
    import torch

    from edgevae.kernels import eager, torch_ops

    cams, t, out_hw = 3, 8, (64, 64)
    rows = []
    for label, in_hw in PREPROCESS_FRAMES.items():
        for b in args.batches:
            cfg = {"B": b, "frames": label, "cams": cams, "T": t, "out": "64x64 gray"}
            raw = b * cams * t * in_hw[0] * in_hw[1] * 3
            if not fits(raw * 5):  # uint8 frames + the eager path's float32 copy
                rows.append({"kernel": "preprocess", "config": cfg,
                             "skipped": f"needs ~{raw * 5 / 2**30:.1f} GiB"})  # fmt: skip
                continue
            frames = torch.randint(0, 256, (b, cams, t, *in_hw, 3), dtype=torch.uint8,
                                   device="cuda")  # fmt: skip
            out = torch.empty(b, cams, t, *out_hw, device="cuda")
            stats = time_interleaved(
                {"eager": partial(eager.preprocess_eager, frames, out_hw, 1),
                 "kernel": partial(torch_ops.preprocess, frames, out_hw, 1, out=out)},
                min_count=args.min_count, min_seconds=args.min_seconds, warmup=args.warmup,
            )  # fmt: skip
            nb = preprocess_bytes(b, cams, t, in_hw, 3, out_hw, 1)
            row = _row("preprocess", cfg, stats, nb["sectors"], bw)
            row["bytes_nominal"] = nb["nominal"]
            row["bandwidth_fraction_nominal"] = (
                nb["nominal"] / (stats["kernel"]["p50"] * 1e-3) / (bw * 1e9)
            )
            rows.append(row)
            del frames, out
            torch.cuda.empty_cache()
    return rows


def bench_pipeline(args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch

    from edgevae.model.config import ModelConfig, default_modalities
    from edgevae.model.scoring import ScoreStats
    from edgevae.model.vae import build_model
    from edgevae.runtime.gpu_pipeline import EagerAnalyzePipeline, GpuAnalyzePipeline

    torch.manual_seed(0)
    mods = default_modalities(cameras=3, frames=8, size=64)
    model = build_model(mods, ModelConfig.from_preset(args.preset)).cuda().eval()
    stats = ScoreStats.identity(list(mods.names))
    pipe = GpuAnalyzePipeline(model, stats)
    eager_pipe = EagerAnalyzePipeline(model, stats)
    in_h, in_w = args.pipeline_frame
    rows = []
    for b in args.batches:
        cfg = {"B": b, "preset": args.preset, "frames": f"{in_w}x{in_h}", "cams": 3, "T": 8}
        need = b * 3 * 8 * in_h * in_w * 3 * 6
        if not fits(need):
            rows.append({"kernel": "pipeline", "config": cfg,
                         "skipped": f"needs ~{need / 2**30:.1f} GiB"})  # fmt: skip
            continue
        frames = torch.randint(0, 256, (b, 3, 8, in_h, in_w, 3), dtype=torch.uint8, device="cuda")
        others = {"audio": torch.randn(b, 1, 32, 32, device="cuda"),
                  "motion": torch.randn(b, 16, 18, device="cuda")}  # fmt: skip
        mask = torch.ones(b, 5, device="cuda")
        with torch.no_grad():
            captured = pipe.capture(frames, others, mask)
            timing = time_interleaved(
                {"eager": partial(eager_pipe.run, frames, others, mask),
                 "kernels": partial(pipe.run, frames, others, mask),
                 "kernels+graph": partial(captured.replay, frames, others, mask)},
                min_count=max(20, args.min_count // 10), min_seconds=args.min_seconds,
                warmup=args.warmup,
            )  # fmt: skip
        rows.append({
            "kernel": "pipeline", "config": cfg, "latency_ms": timing,
            "speedup_kernels": timing["eager"]["p50"] / timing["kernels"]["p50"],
            "speedup_graph": timing["eager"]["p50"] / timing["kernels+graph"]["p50"],
        })  # fmt: skip
        del frames, others, mask, captured
        torch.cuda.empty_cache()
    return rows


def _row(kernel: str, cfg: dict, stats: dict, nbytes: int, bw: float) -> dict[str, Any]:
    p50 = stats["kernel"]["p50"]
    return {
        "kernel": kernel,
        "config": cfg,
        "latency_ms": stats,
        "speedup": stats["eager"]["p50"] / p50,
        "bytes": nbytes,
        "achieved_GBps": nbytes / (p50 * 1e-3) / 1e9,
        "bandwidth_fraction": nbytes / (p50 * 1e-3) / (bw * 1e9),
    }


# --------------------------------------------------------------------------- environment
def environment() -> dict[str, Any]:
    import torch

    from edgevae._util.artifacts import git_revision, tool_versions

    props = torch.cuda.get_device_properties(0)
    env = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "gpu": props.name,
        "compute_capability": f"{props.major}.{props.minor}",
        "gpu_memory_GiB": round(props.total_memory / 2**30, 1),
        "sm_count": props.multi_processor_count,
        "torch_cuda": torch.version.cuda,
        "versions": tool_versions("torch", "numpy", "cuda-python", "cuda-bindings", "pycuda"),
        "git_revision": git_revision(),
        "command": " ".join(sys.argv),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        from edgevae.kernels.build import probe_toolkit

        env["nvcc"] = probe_toolkit().version
    except Exception as exc:  # informational only
        env["nvcc"] = f"unavailable ({exc})"
    nv = Path("/etc/nv_tegra_release")
    if nv.exists():
        env["jetson"] = nv.read_text().strip()[:200]
    return env


def _print_table(result: dict[str, Any]) -> None:
    print(f"GPU: {result['environment']['gpu']}  copy bandwidth: "
          f"{result['copy_bandwidth_GBps']:.1f} GB/s")  # fmt: skip
    for r in result["results"]:
        cfg = ", ".join(f"{k}={v}" for k, v in r["config"].items() if k != "shapes")
        if "skipped" in r:
            print(f"{r['kernel']:14s} {cfg:60s} skipped: {r['skipped']}")
        elif r["kernel"] == "pipeline":
            lat = r["latency_ms"]
            print(f"{r['kernel']:14s} {cfg:60s} eager {lat['eager']['p50']:.3f} ms  kernels "
                  f"{lat['kernels']['p50']:.3f} ms  graph {lat['kernels+graph']['p50']:.3f} ms  "
                  f"x{r['speedup_graph']:.2f}")  # fmt: skip
        else:
            lat = r["latency_ms"]
            print(f"{r['kernel']:14s} {cfg:60s} eager {lat['eager']['p50']:.4f} ms  kernel "
                  f"{lat['kernel']['p50']:.4f} ms  x{r['speedup']:.2f}  "
                  f"{100 * r['bandwidth_fraction']:.1f}% of copy BW")  # fmt: skip


def _hw(text: str) -> tuple[int, int]:
    """'160x120' (W x H) -> (120, 160) (H, W)."""
    w, h = (int(v) for v in text.lower().split("x"))
    return h, w


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=None, help="JSON output (default: results/...)")
    p.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    p.add_argument("--only", nargs="+", default=["poe_fusion", "anomaly_score", "preprocess",
                                                  "pipeline"])  # fmt: skip
    p.add_argument("--preset", default="nano", help="model preset of the pipeline benchmark")
    p.add_argument("--pipeline-frame", type=_hw, default=(120, 160),
                   help="camera frame WxH fed to the pipeline (default 160x120)")  # fmt: skip
    p.add_argument("--min-count", type=int, default=200)
    p.add_argument("--min-seconds", type=float, default=2.0)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="short runs (smoke test, not for reports)")
    args = p.parse_args(argv)
    if args.quick:
        args.min_count, args.min_seconds, args.warmup = 20, 0.1, 3
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("bench_kernels: no CUDA GPU visible to PyTorch; this benchmark only runs on a GPU.",
              file=sys.stderr)  # fmt: skip
        return 2
    torch.backends.cudnn.benchmark = False
    bw = copy_bandwidth()
    results: list[dict[str, Any]] = []
    benches = {"poe_fusion": bench_poe, "anomaly_score": bench_score,
               "preprocess": bench_preprocess}  # fmt: skip
    for name, fn in benches.items():
        if name in args.only:
            results += fn(args, bw)
    if "pipeline" in args.only:
        results += bench_pipeline(args)
    result = {
        "kind": "edgevae-kernel-benchmark",
        "scope": "gpu_e2e (CUDA events around each call)",
        "environment": environment(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "copy_bandwidth_GBps": bw,
        "results": results,
    }
    out = args.out or Path(__file__).with_name("results") / (
        f"{result['environment']['gpu'].replace(' ', '_')}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    _print_table(result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
