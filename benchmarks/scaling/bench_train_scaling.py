"""Training throughput of 1 process vs 2 data-parallel processes (torchrun, gloo) on this machine.

Every configuration trains the same model on the same data with the same *global* batch through
the real CLI (``edgevae train``; ``--nproc 2`` launches torchrun), and its throughput is read from
the run's own history: samples/s of the training loop of every epoch but the first (warm-up),
validation excluded. Configurations run in interleaved rounds so drift hits all alike, and each
round records the 1-minute load average and the CPU time *other* processes used while it ran
(machine busy time from ``/proc/stat`` minus this script's and its children's), because the
machine may be shared.

Configurations (T = torch threads per process, cores = how many the configuration may keep busy):

* ``1proc-1thread``: one process, one core: the per-process share of the 2-process run.
* ``1proc-2threads``: one process using both cores through intra-op threads.
* ``2proc-1thread``: ``edgevae train --nproc 2`` (torchrun + DDP over gloo), one thread each.
* ``1proc-1thread-halfbatch``: one process, one core, the *per-process* batch of the 2-process
  run (a different optimisation: a diagnostic for throughput only). It separates the effect of
  the smaller per-process batch from the cost of communication.

Scaling efficiency = throughput(2proc-1thread) / (2 x throughput(1proc-1thread)); at equal
per-process work = throughput(2proc-1thread) / (2 x throughput(1proc-1thread-halfbatch)).

A run during which other processes used more than ``--disturbed`` cores on average is redone (up
to ``--retries`` times); the JSON keeps every attempt's disturbance and says which were redone.

Usage::

    python benchmarks/scaling/bench_train_scaling.py --rounds 3
    python benchmarks/scaling/bench_train_scaling.py --quick      # a smoke run, not numbers
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CONFIGS = {  # name -> (processes, threads per process, global batch divisor)
    "1proc-1thread": (1, 1, 1),
    "1proc-2threads": (1, 2, 1),
    "2proc-1thread": (2, 1, 1),
    "1proc-1thread-halfbatch": (1, 1, 2),
}


def _cpu_seconds() -> tuple[float | None, float]:
    """(machine busy CPU-s or None, this process + its waited-for children CPU-s)."""
    from edgevae.bench.timing import CpuProbe

    sample = CpuProbe().sample()
    mine = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = mine.ru_utime + mine.ru_stime + kids.ru_utime + kids.ru_stime
    return (sample[0] if sample else None), own


def run_config(name: str, data: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train once with configuration ``name``; returns throughput and disturbance of the run."""
    nproc, threads, divisor = CONFIGS[name]
    batch = args.batch // divisor
    cmd = [sys.executable, "-m", "edgevae", "train", "--data", str(data), "--out", str(out)]
    cmd += ["--overwrite", "--quiet", "--device", "cpu", "--preset", args.preset]
    cmd += ["--batch-size", str(batch), "--epochs", str(args.epochs), "--patience", "0"]
    cmd += ["--seed", "0"]
    if nproc > 1:
        cmd += ["--nproc", str(nproc), "--backend", "gloo"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    load_before = os.getloadavg()[0]
    busy0, own0 = _cpu_seconds()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    busy1, own1 = _cpu_seconds()
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    history = json.loads((out / "model.json").read_text())["history"]
    timed = history[1:] or history  # drop the warm-up epoch
    samples = sum(h["samples_per_s"] * h["seconds"] for h in timed)
    seconds = sum(h["seconds"] for h in timed)
    other = None if busy0 is None or busy1 is None else (busy1 - busy0) - (own1 - own0)
    return {
        "config": name,
        "processes": nproc,
        "threads_per_process": threads,
        "global_batch": batch,
        "samples_per_s": samples / seconds,
        "timed_samples": round(samples),
        "timed_seconds": seconds,
        "wall_s": wall,
        "world_size": history[-1].get("world_size", 1),
        "load1_before": load_before,
        "load1_after": os.getloadavg()[0],
        "other_cpu_s": other,
        "other_cores": None if other is None else other / wall,
    }


def summarize(rounds: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Median throughput per configuration over its undisturbed runs (all runs when every one
    was disturbed) and the scaling ratios."""
    per = {name: [r for rnd in rounds for r in rnd if r["config"] == name] for name in CONFIGS}
    quiet = {n: [r for r in rs if not r["disturbed_kept"]] for n, rs in per.items()}
    used = {n: quiet[n] or rs for n, rs in per.items() if rs}
    med = {n: statistics.median(r["samples_per_s"] for r in rs) for n, rs in used.items()}
    one, two = med.get("1proc-1thread"), med.get("2proc-1thread")
    both, half = med.get("1proc-2threads"), med.get("1proc-1thread-halfbatch")
    return {
        "median_samples_per_s": med,
        "undisturbed_runs": {n: len(quiet[n]) for n in used},
        "scaling_efficiency": two / (2 * one) if one and two else None,
        "scaling_efficiency_equal_per_process_batch": two / (2 * half) if half and two else None,
        "speedup_2proc_vs_1proc_1thread": two / one if one and two else None,
        "speedup_2proc_vs_1proc_2threads": two / both if both and two else None,
        "per_round_ratio_2proc_vs_1proc_1thread": [
            _ratio(rnd, "2proc-1thread", "1proc-1thread") for rnd in rounds
        ],
        "load1_range": [
            min(r["load1_before"] for rnd in rounds for r in rnd),
            max(r["load1_after"] for rnd in rounds for r in rnd),
        ],
    }


def _ratio(rnd: list[dict[str, Any]], a: str, b: str) -> float | None:
    by = {r["config"]: r["samples_per_s"] for r in rnd}
    return by[a] / by[b] if a in by and b in by else None


def write_markdown(doc: dict[str, Any], path: Path) -> None:
    s, p = doc["summary"], doc["params"]
    lines = [
        "# Training throughput: 1 vs 2 data-parallel processes",
        "",
        f"Measured {doc['measured_at']} on {doc['environment']['cpu'].get('model', '?')} "
        f"({doc['environment']['cpu'].get('logical_cpus', '?')} logical CPUs). Model "
        f"`{p['preset']}` mvae, synth `{p['data_preset']}` data ({p['train_clips']} train clips), "
        f"global batch {p['batch']}, {p['epochs']} epochs (the first is warm-up and not timed), "
        f"{p['rounds']} interleaved rounds. **The machine was shared with other jobs**: the "
        "1-minute load average and the CPU time other processes used are recorded per run.",
        "",
        "| round | config | processes x threads | global batch | samples/s "
        "| load1 before/after | other procs (cores) | redone |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, rnd in enumerate(doc["rounds"], 1):
        for r in rnd:
            other = "-" if r["other_cores"] is None else f"{r['other_cores']:.2f}"
            lines.append(
                f"| {i} | {r['config']} | {r['processes']} x {r['threads_per_process']} "
                f"| {r['global_batch']} | {r['samples_per_s']:.1f} "
                f"| {r['load1_before']:.2f} / {r['load1_after']:.2f} | {other} "
                f"| {len(r['disturbed_attempts'])} |"
            )
    med = s["median_samples_per_s"]
    lines += [
        "",
        "| config | median samples/s | over undisturbed runs |",
        "|---|---|---|",
        *(
            f"| {n} | {v:.1f} | {s['undisturbed_runs'][n] or 'none (all runs)'} |"
            for n, v in med.items()
        ),
        "",
        f"- scaling efficiency (2 procs vs 2 x 1 proc with 1 thread, same global batch): "
        f"**{_fmt(s['scaling_efficiency'])}**",
        f"- scaling efficiency at equal per-process batch (vs 2 x 1 proc with the half batch): "
        f"**{_fmt(s['scaling_efficiency_equal_per_process_batch'])}**",
        f"- speed-up 2 procs vs 1 proc 1 thread: {_fmt(s['speedup_2proc_vs_1proc_1thread'])} "
        f"(per round: {', '.join(_fmt(x) for x in s['per_round_ratio_2proc_vs_1proc_1thread'])})",
        f"- speed-up 2 procs vs 1 proc using both cores (2 threads): "
        f"{_fmt(s['speedup_2proc_vs_1proc_2threads'])}",
        f"- runs redone because other processes used > {p['disturbed_threshold_cores']} cores: "
        f"{sum(len(r['disturbed_attempts']) for rnd in doc['rounds'] for r in rnd)}; disturbed "
        f"runs kept after {p['retries']} redos: "
        f"{sum(r['disturbed_kept'] for rnd in doc['rounds'] for r in rnd)}",
        f"- 1-minute load average over the runs: {s['load1_range'][0]:.2f} .. "
        f"{s['load1_range'][1]:.2f} (2 cores)",
        "",
        f"Reproduce: `{doc['command']}`",
        "",
    ]
    path.write_text("\n".join(lines))


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32, help="global batch")
    ap.add_argument("--preset", default="nano", help="model preset")
    ap.add_argument("--data", type=Path, help="dataset (default: synth tiny, made and deleted)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--quick", action="store_true", help="1 round, 2 epochs (smoke run)")
    ap.add_argument("--disturbed", type=float, default=0.25, help="other procs' cores to redo")
    ap.add_argument("--retries", type=int, default=2, help="redos per disturbed run")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.epochs = 1, 2

    from edgevae.bench.env import capture_environment
    from edgevae.data.format import open_dataset

    work = Path(tempfile.mkdtemp(prefix="edgevae-scaling-"))
    try:
        data = args.data
        if data is None:
            from edgevae.data.synth import preset_config, synthesize

            data = synthesize(work / "data", preset_config("tiny", seed=0), workers=1)
        train_clips = len(open_dataset(data, verify="none").split("train"))
        names = list(CONFIGS)
        rounds = []
        for i in range(args.rounds):
            order = names[i % len(names) :] + names[: i % len(names)]  # rotate who goes first
            rnd = []
            for name in order:
                disturbed = []
                while True:
                    r = run_config(name, data, work / name, args)
                    busy = r["other_cores"] is not None and r["other_cores"] > args.disturbed
                    if not busy or len(disturbed) >= args.retries:
                        break
                    disturbed.append({k: r[k] for k in ("samples_per_s", "other_cores")})
                r["disturbed_attempts"] = disturbed
                r["disturbed_kept"] = busy
                other = r["other_cores"] or 0.0
                print(
                    f"round {i + 1} {name}: {r['samples_per_s']:.1f} samples/s "
                    f"(load1 {r['load1_before']:.2f}, other procs {other:.2f} cores)",
                    flush=True,
                )
                rnd.append(r)
            rounds.append(rnd)
        doc = {
            "benchmark": "train_scaling",
            "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": "python benchmarks/scaling/bench_train_scaling.py "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "params": {
                "preset": args.preset,
                "data_preset": "tiny" if args.data is None else str(args.data),
                "train_clips": train_clips,
                "batch": args.batch,
                "epochs": args.epochs,
                "rounds": args.rounds,
                "backend": "gloo",
                "disturbed_threshold_cores": args.disturbed,
                "retries": args.retries,
            },
            "environment": capture_environment(),
            "rounds": rounds,
            "summary": summarize(rounds),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "train_scaling" + ("-quick" if args.quick else "")
    (args.out / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")
    write_markdown(doc, args.out / f"{stem}.md")
    print(json.dumps(doc["summary"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
