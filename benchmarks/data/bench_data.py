"""Data benchmark: synthetic generation throughput, loader throughput and loader memory.

Run from the repository root::

    python benchmarks/data/bench_data.py                 # writes benchmarks/data/results.json
    python benchmarks/data/bench_data.py --quick         # tiny preset only, for a smoke run

Measures
  * generation: ``synthesize`` of the ``default`` preset (4000 clips) with 1 and 2 worker
    processes, wall time -> clips/s (end to end: rendering, shard writing, hashing, statistics);
  * loader: ``make_loader(reader, "train", 64)`` over the train split, sequential and shuffled,
    samples/s over full passes (normalisation included), after one warm-up pass;
  * memory: resident set size of a fresh process iterating the train split of a dataset and of
    one 10x larger (same clips per video, 10x the videos), sampled after every batch. RSS counts
    both anonymous memory (what the process allocated) and file-backed pages of the memory-mapped
    shards (page cache the kernel can drop at any time); both are reported separately.

Every number is from this machine at the time of the run; the load average before and after each
measurement is recorded because other jobs on a shared machine slow it down.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _status() -> dict[str, int]:
    """VmRSS, RssAnon, RssFile, VmHWM of this process in KiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            out[key] = int(rest.split()[0])
    return out


def _environment() -> dict[str, object]:
    from edgevae._util.artifacts import git_revision, tool_versions

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": mem,
        "platform": platform.platform(),
        "versions": tool_versions("numpy", "torch", "matplotlib"),
        "git_revision": git_revision(),
        "torch_threads": _torch_threads(),
    }


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def bench_generation(preset: str, workers: int, root: Path) -> dict[str, object]:
    from edgevae.data.synth import preset_config, synthesize

    config = preset_config(preset)
    out = root / f"gen-{preset}-w{workers}"
    load0 = _load()
    t0 = time.perf_counter()
    synthesize(out, config, workers=workers, overwrite=True)
    seconds = time.perf_counter() - t0
    clips = config.total_videos * config.clips_per_video
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    shutil.rmtree(out)
    return {
        "preset": preset,
        "workers": workers,
        "clips": clips,
        "seconds": round(seconds, 2),
        "clips_per_s": round(clips / seconds, 1),
        "dataset_mib": round(size / 2**20, 1),
        "load_before_after": [load0, _load()],
    }


def bench_loader(path: Path, shuffle: bool, passes: int) -> dict[str, object]:
    from edgevae.data import open_dataset
    from edgevae.data.loader import make_loader

    reader = open_dataset(path, verify="none")
    loader = make_loader(reader, "train", 64, shuffle=shuffle, seed=0)
    n = len(reader.split("train"))
    for _ in loader:  # warm-up pass (page cache, allocator)
        pass
    rates = []
    load0 = _load()
    for _ in range(passes):
        t0 = time.perf_counter()
        seen = sum(len(b["mask"]) for b in loader)
        rates.append(seen / (time.perf_counter() - t0))
    assert seen == n
    return {
        "split": "train",
        "clips": n,
        "batch_size": 64,
        "shuffle": shuffle,
        "passes": passes,
        "samples_per_s_median": round(statistics.median(rates), 1),
        "samples_per_s_all": [round(r, 1) for r in rates],
        "load_before_after": [load0, _load()],
    }


def memory_child(path: str) -> None:
    """Run in a fresh process: iterate the train split once, print RSS figures as JSON."""
    from edgevae.data import open_dataset
    from edgevae.data.loader import make_loader

    reader = open_dataset(path, verify="none")
    loader = make_loader(reader, "train", 64)
    it = iter(loader)
    next(it)  # first batch: imports, allocator and one shard mapped
    base = _status()
    peak = dict(base)
    batches = 1
    for _ in it:
        batches += 1
        now = _status()
        for k in ("VmRSS", "RssAnon", "RssFile"):
            peak[k] = max(peak[k], now[k])
    size = sum(p.stat().st_size for p in Path(path, "train").rglob("*.npy"))
    print(
        json.dumps(
            {
                "clips": len(reader.split("train")),
                "train_mib": round(size / 2**20, 1),
                "batches": batches,
                "rss_base_mib": round(base["VmRSS"] / 1024, 1),
                "peak_rss_delta_mib": round((peak["VmRSS"] - base["VmRSS"]) / 1024, 1),
                "peak_anon_delta_mib": round((peak["RssAnon"] - base["RssAnon"]) / 1024, 1),
                "peak_file_delta_mib": round((peak["RssFile"] - base["RssFile"]) / 1024, 1),
            }
        )
    )


def bench_memory(root: Path, quick: bool) -> list[dict[str, object]]:
    from edgevae.data.synth import preset_config, synthesize

    base_videos = 4 if quick else 16
    results = []
    for scale in (1, 10):
        config = preset_config(
            "tiny", train_videos=base_videos * scale, val_videos=1, test_videos=3
        )
        path = root / f"mem-x{scale}"
        synthesize(path, config, workers=2, overwrite=True)
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append({"scale": scale, **json.loads(out.stdout.strip().splitlines()[-1])})
        shutil.rmtree(path)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    parser.add_argument("--quick", action="store_true", help="tiny preset only (smoke run)")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return
    preset = "tiny" if args.quick else "default"
    root = Path(tempfile.mkdtemp(prefix="edgevae-bench-data-"))
    try:
        results: dict[str, object] = {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "environment": _environment(),
        }
        gen = [bench_generation(preset, w, root) for w in (1, 2)]
        results["generation"] = gen
        print("generation", json.dumps(gen), flush=True)
        from edgevae.data.synth import preset_config, synthesize

        path = synthesize(root / "loader", preset_config(preset), workers=2)
        loader = [bench_loader(path, shuffle, passes=3) for shuffle in (False, True)]
        results["loader"] = loader
        print("loader", json.dumps(loader), flush=True)
        shutil.rmtree(path)
        memory = bench_memory(root, args.quick)
        results["memory"] = memory
        print("memory", json.dumps(memory), flush=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
