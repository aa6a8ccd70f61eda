"""Data benchmark: synthetic generation throughput, loader throughput and loader memory at 1x/10x.

Run from the repository root (about 5-10 minutes on a 2-core machine)::

    python benchmarks/data/bench_data.py            # -> benchmarks/data/results/data.{json,md}
    python benchmarks/data/bench_data.py --quick    # tiny preset, -> results/data-quick.{json,md}

What it measures (every number comes from this run on this machine):

* **generation**: ``synthesize`` of the ``default`` preset (4000 clips) with 1 and 2 worker
  processes; wall time -> clips/s, end to end (simulation, rendering, anomaly injection, shard
  writing, SHA-256 hashing and the train-split statistics pass).
* **loader**: ``make_loader(reader, "train", 64)`` over the train split of that dataset,
  sequential and shuffled, ``num_workers=0``; samples/s of full passes (reading, normalisation
  and tensor conversion included) after one warm-up pass; median of the passes and all of them.
* **memory**: the resident memory of a fresh process iterating the train split once, for that
  train split (1x) and for a dataset 10x larger (the same clips written 10 times, with other video
  ids: the loader's memory does not depend on pixel values). Sampled after every batch; the
  baseline is taken after the first batch (imports, allocator, first shard mapped). Anonymous
  memory (``RssAnon``: what the process allocated) and file-backed memory (``RssFile``: pages of
  the memory-mapped shards, page cache the kernel can drop at any time) are reported apart.

The machine may be shared with other jobs. For every measurement the 1-minute load average
before and after, and the CPU-seconds used by *other* processes while it ran (``/proc/stat`` busy
time minus this process and its children), are recorded; a measurement with other processes
busy is slower than the machine can do. Numbers from different runs should not be compared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BATCH = 64
SCALES = (1, 10)


# -- machine load ----------------------------------------------------------------------------------
class Load:
    """Load average and other processes' CPU time around one measurement."""

    def __init__(self) -> None:
        from edgevae.bench.timing import CpuProbe

        self._probe = CpuProbe()

    def __enter__(self) -> Load:
        self.load_before = round(os.getloadavg()[0], 2)
        self._t0 = time.perf_counter()
        self._cpu0 = self._probe.sample()
        self._own0 = _own_cpu_s()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0
        self.load_after = round(os.getloadavg()[0], 2)
        cpu1 = self._probe.sample()
        self.own_cpu_s = _own_cpu_s() - self._own0
        self.other_cpu_s = None
        if self._cpu0 is not None and cpu1 is not None:
            other = (cpu1[0] - self._cpu0[0]) - self.own_cpu_s
            self.other_cpu_s = round(max(other, 0.0), 2)

    def record(self) -> dict[str, Any]:
        other = self.other_cpu_s
        return {
            "own_cpu_s": round(self.own_cpu_s, 2),
            "load_1min_before_after": [self.load_before, self.load_after],
            "other_processes_cpu_s": other,
            "other_processes_cores": None if other is None else round(other / self.seconds, 2),
        }


def _own_cpu_s() -> float:
    """CPU-seconds of this process and its finished children (worker pools, memory children)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# -- measurements ----------------------------------------------------------------------------------
def bench_generation(preset: str, workers: int, out: Path) -> dict[str, Any]:
    """Generate ``preset`` into ``out`` with ``workers`` processes; clips/s end to end."""
    from edgevae.data.synth import preset_config, synthesize

    config = preset_config(preset)
    with Load() as load:
        synthesize(out, config, workers=workers, overwrite=True)
    clips = config.total_videos * config.clips_per_video
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {
        "preset": preset,
        "workers": workers,
        "clips": clips,
        "seconds": round(load.seconds, 2),
        "clips_per_s": round(clips / load.seconds, 1),
        "clips_per_cpu_s": round(clips / max(load.own_cpu_s, 1e-9), 1),
        "dataset_mib": round(size / 2**20, 1),
        **load.record(),
    }


def bench_loader(path: Path, shuffle: bool, passes: int) -> dict[str, Any]:
    """Samples/s of full passes over the train split (after one warm-up pass)."""
    from edgevae.data import open_dataset
    from edgevae.data.loader import make_loader

    reader = open_dataset(path, verify="none")
    loader = make_loader(reader, "train", BATCH, shuffle=shuffle, seed=0)
    n = len(reader.split("train"))
    for _ in loader:  # warm-up pass: page cache, allocator
        pass
    rates = []
    with Load() as load:
        for _ in range(passes):
            t0 = time.perf_counter()
            seen = sum(len(b["mask"]) for b in loader)
            rates.append(seen / (time.perf_counter() - t0))
            if seen != n:
                raise RuntimeError(f"a pass saw {seen} samples, the split has {n}")
    return {
        "split": "train",
        "clips": n,
        "batch_size": BATCH,
        "num_workers": 0,
        "shuffle": shuffle,
        "passes": passes,
        "samples_per_s_median": round(statistics.median(rates), 1),
        "samples_per_s_all": [round(r, 1) for r in rates],
        **load.record(),
    }


def _status() -> dict[str, int]:
    """VmRSS, RssAnon, RssFile of this process in KiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(rest.split()[0])
    return out


def memory_child(path: str) -> None:
    """In a fresh process: iterate the train split once; print memory figures (MiB) as JSON."""
    import torch

    from edgevae.data import open_dataset
    from edgevae.data.loader import make_loader

    torch.set_num_threads(1)
    reader = open_dataset(path, verify="none")
    it = iter(make_loader(reader, "train", BATCH))
    next(it)  # first batch: imports, allocator, one shard mapped
    base = _status()
    peak = dict(base)
    batches = 1
    for _ in it:
        batches += 1
        now = _status()
        peak = {k: max(peak[k], now[k]) for k in peak}
    end = _status()
    size = sum(p.stat().st_size for p in Path(path, "train").rglob("*.npy"))

    def mib(kib: float) -> float:
        return round(kib / 1024, 1)

    print(
        json.dumps(
            {
                "clips": len(reader.split("train")),
                "train_mib": round(size / 2**20, 1),
                "batches": batches,
                "rss_after_first_batch_mib": mib(base["VmRSS"]),
                "anon_after_first_batch_mib": mib(base["RssAnon"]),
                "peak_anon_mib": mib(peak["RssAnon"]),
                "peak_anon_growth_mib": mib(peak["RssAnon"] - base["RssAnon"]),
                "peak_file_growth_mib": mib(peak["RssFile"] - base["RssFile"]),
                "peak_rss_growth_mib": mib(peak["VmRSS"] - base["VmRSS"]),
                "rss_at_end_mib": mib(end["VmRSS"]),
            }
        )
    )


def replicate_train(src: Path, out: Path, times: int) -> Path:
    """A dataset whose train split is ``src``'s train split written ``times`` times."""
    from edgevae.data import DatasetWriter, open_dataset

    reader = open_dataset(src, verify="none")
    split = reader.split("train")
    with DatasetWriter(
        out,
        reader.modalities,
        anomaly_types=reader.anomaly_types,
        label_frames=reader.label_frames,
        meta={"source": f"{src.name} train split x{times}"},
        overwrite=True,
    ) as writer:
        for k in range(times):
            for batch in split.iter_batches(256):
                arrays = {name: batch[name] for name in reader.modalities.names}
                writer.add(
                    "train",
                    arrays,
                    mask=batch["mask"],
                    frame_labels=batch["frame_labels"],
                    video_id=batch["video_id"] + 100_000 * k,
                    clip_index=batch["clip_index"],
                )
    return out


def bench_memory(src: Path, root: Path) -> list[dict[str, Any]]:
    """Loader memory of a fresh process over ``src``'s train split at each of ``SCALES``."""
    results = []
    for scale in SCALES:
        path = src if scale == 1 else replicate_train(src, root / f"x{scale}", scale)
        with Load() as load:
            out = subprocess.run(
                [sys.executable, __file__, "--memory-child", str(path)],
                capture_output=True,
                text=True,
                check=True,
            )
        row = {"scale": scale, **json.loads(out.stdout.strip().splitlines()[-1])}
        row["seconds"] = round(load.seconds, 2)
        results.append({**row, **load.record()})
        if path != src:
            shutil.rmtree(path)
    return results


# -- report ----------------------------------------------------------------------------------------
def _uncommitted() -> list[str] | None:
    """Files under edgevae/ with uncommitted changes (the measured code is not HEAD's)."""
    root = HERE.parents[1]
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--", "edgevae"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return sorted(line[3:] for line in out.stdout.splitlines() if line.strip())


def _machine_note(env: dict[str, Any]) -> str:
    cpu = env.get("cpu") or {}
    return (
        f"{cpu.get('model')} ({cpu.get('usable_cpus')} usable CPUs), "
        f"{env.get('memory_mib')} MiB RAM; shared with other jobs while measured"
    )


def to_markdown(doc: dict[str, Any]) -> str:
    """The result document as a markdown report."""
    env = doc["environment"]
    libs = env.get("libraries", {})
    lines = [
        "# Data benchmark",
        "",
        f"`{doc['command']}` at {doc['created_utc']} (git {str(env.get('git_revision'))[:10]}).",
        "",
        f"Machine: {_machine_note(env)}. Python {libs.get('python')}, numpy {libs.get('numpy')}, "
        f"torch {libs.get('torch')} ({doc['torch_threads']} threads).",
        "",
        *_dirty_note(doc),
        "**This machine was shared with other jobs.** Each row records the 1-minute load average "
        "before/after and the CPU-seconds other processes used while it ran (as mean busy cores); "
        "rows measured under load are slower than the machine can do. Compare numbers only within "
        "this run.",
        "",
        "## Generation (`synthesize`, end to end)",
        "",
        "*clips per CPU-second* divides by the CPU time this process and its workers used: less "
        "sensitive to other jobs than wall-clock clips/s.",
        "",
        "| preset | workers | clips | seconds | clips/s | clips per CPU-s | dataset MiB "
        "| load 1-min before/after | other procs (cores) |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for g in doc["generation"]:
        lines.append(
            f"| {g['preset']} | {g['workers']} | {g['clips']} | {g['seconds']} | "
            f"**{g['clips_per_s']}** | {g['clips_per_cpu_s']} | {g['dataset_mib']} | {_pair(g)} | "
            f"{g['other_processes_cores']} |"
        )
    lines += [
        "",
        f"## Loader (`make_loader(reader, 'train', {BATCH})`, `num_workers=0`)",
        "",
        "| order | clips | passes | samples/s (median) | all passes | load 1-min before/after "
        "| other procs (cores) |",
        "|---|---:|---:|---:|---|---|---:|",
    ]
    for r in doc["loader"]:
        lines.append(
            f"| {'shuffled' if r['shuffle'] else 'sequential'} | {r['clips']} | {r['passes']} | "
            f"**{r['samples_per_s_median']}** | {', '.join(map(str, r['samples_per_s_all']))} | "
            f"{_pair(r)} | {r['other_processes_cores']} |"
        )
    lines += [
        "",
        "## Loader memory, 1x vs 10x dataset (fresh process, one sequential pass)",
        "",
        "Growth is peak minus the value after the first batch. *anon* = memory the process "
        "allocated; *file* = mapped shard pages (page cache, reclaimable).",
        "",
        "| scale | train clips | train MiB | RSS after 1st batch | peak anon | anon growth "
        "| file growth | RSS growth |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in doc["memory"]:
        lines.append(
            f"| {m['scale']}x | {m['clips']} | {m['train_mib']} | "
            f"{m['rss_after_first_batch_mib']} | {m['peak_anon_mib']} | "
            f"**{m['peak_anon_growth_mib']}** | {m['peak_file_growth_mib']} | "
            f"{m['peak_rss_growth_mib']} |"
        )
    lines += ["", "All memory figures in MiB.", ""]
    lines += [f"- {note}" for note in doc["notes"]]
    return "\n".join(lines) + "\n"


def _dirty_note(doc: dict[str, Any]) -> list[str]:
    files = doc.get("uncommitted_changes")
    if not files:
        return []
    data = [f for f in files if f.startswith("edgevae/data/")]
    shown = ", ".join(f"`{f}`" for f in data) or "none under edgevae/data/"
    return [
        f"Measured on a working tree with uncommitted changes to {len(files)} file(s) under "
        f"`edgevae/`; data code among them: {shown}.",
        "",
    ]


def _pair(row: dict[str, Any]) -> str:
    a, b = row["load_1min_before_after"]
    return f"{a} / {b}"


def _notes(doc: dict[str, Any]) -> list[str]:
    """Plain statements computed from the numbers (nothing here is written by hand)."""
    gen = {g["workers"]: g for g in doc["generation"]}
    notes = []
    if 1 in gen and 2 in gen:
        ratio = gen[2]["clips_per_s"] / gen[1]["clips_per_s"]
        notes.append(f"2 workers generated {ratio:.2f}x the clips/s of 1 worker in this run.")
    mem = {m["scale"]: m for m in doc["memory"]}
    if 1 in mem and 10 in mem:
        a, b = mem[1], mem[10]
        notes.append(
            f"With a 10x larger train split ({a['clips']} -> {b['clips']} clips, "
            f"{a['train_mib']} -> {b['train_mib']} MiB), the loader's anonymous memory grew by "
            f"{a['peak_anon_growth_mib']} vs {b['peak_anon_growth_mib']} MiB over a pass (peak "
            f"{a['peak_anon_mib']} vs {b['peak_anon_mib']} MiB); mapped shard pages (file-backed, "
            f"reclaimable) grew by {a['peak_file_growth_mib']} vs {b['peak_file_growth_mib']} MiB."
        )
    return notes


def _step(name: str, rows: Any) -> None:
    print(name, json.dumps(rows), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", type=Path, default=HERE / "results")
    parser.add_argument("--quick", action="store_true", help="tiny preset (a smoke run)")
    parser.add_argument("--passes", type=int, default=3, help="timed loader passes")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return
    import torch

    from edgevae.bench.env import capture_environment

    torch.set_num_threads(1)  # the loader does no heavy torch math; keep it off the other core
    preset = "tiny" if args.quick else "default"
    name = "data-quick" if args.quick else "data"
    root = Path(tempfile.mkdtemp(prefix="edgevae-bench-data-"))
    doc: dict[str, Any] = {
        "benchmark": "edgevae.data",
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": " ".join(["python", *sys.argv]),
        "environment": capture_environment(),
        "torch_threads": torch.get_num_threads(),
        "uncommitted_changes": _uncommitted(),
        "shared_machine": True,
    }
    try:
        data = root / "gen"
        doc["generation"] = [bench_generation(preset, w, data) for w in (1, 2)]
        _step("generation", doc["generation"])
        doc["loader"] = [bench_loader(data, s, args.passes) for s in (False, True)]
        _step("loader", doc["loader"])
        doc["memory"] = bench_memory(data, root)
        _step("memory", doc["memory"])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    doc["notes"] = _notes(doc)
    from edgevae._util.artifacts import write_bytes_atomic, write_json_atomic

    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out_dir / f"{name}.json", doc)
    write_bytes_atomic(args.out_dir / f"{name}.md", to_markdown(doc).encode())
    print(f"wrote {args.out_dir / name}.json and .md")


if __name__ == "__main__":
    main()
