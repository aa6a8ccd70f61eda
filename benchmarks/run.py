"""Run the benchmark matrix (``benchmarks/matrix.toml``) over pipeline outputs.

Usage::

    python benchmarks/run.py --runs RUNS [--suite cpu-analyze] [--preset nano] [--quick]
                             [--out benchmarks/results/<machine>] [--dry-run] [--skip-missing]

``RUNS/<preset>/`` is what ``edgevae pipeline --out RUNS/<preset>`` leaves behind. Each suite x
preset is one :func:`edgevae.bench.driver.benchmark` call (configurations interleaved, ratios to
the suite's baseline from the same run); results go to ``OUT/<suite>-<preset>.{json,md,png}`` and
one line per run is appended to ``OUT/bench-log.jsonl``. A suite whose ``requires`` (tensorrt,
cuda) is not met here is skipped and says so. Exit code: 0 ok, 1 a configuration failed, 2 bad
input (missing artifacts without --skip-missing, unknown suite, bad matrix).
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
SUITE_KEYS = {"name", "presets", "artifacts", "backends", "batches", "baseline", "data", "requires"}


@dataclass
class Job:
    """One benchmark call: a suite on one preset."""

    suite: str
    preset: str
    artifacts: list[str]
    baseline: str | None
    config: dict[str, Any]
    missing: list[str] = field(default_factory=list)
    skip_reason: str | None = None

    @property
    def stem(self) -> str:
        return f"{self.suite}-{self.preset}"


def load_matrix(path: Path) -> dict[str, Any]:
    """Parse and check the matrix file; raises ValueError naming the problem."""
    try:
        matrix = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read matrix '{path}': {exc}") from None
    if matrix.get("schema") != 1:
        raise ValueError(f"matrix '{path}' has schema {matrix.get('schema')!r}; expected 1.")
    artifacts = matrix.get("artifacts") or {}
    names = set()
    for suite in matrix.get("suite") or []:
        unknown = set(suite) - SUITE_KEYS - set(_config_keys())
        if unknown:
            raise ValueError(f"suite {suite.get('name')!r}: unknown keys {sorted(unknown)}.")
        if suite.get("name") in names or not suite.get("name"):
            raise ValueError(
                f"suite names must be unique and non-empty; got {suite.get('name')!r}."
            )
        names.add(suite["name"])
        for key in [*suite.get("artifacts", []), suite.get("baseline")]:
            if key is not None and key not in artifacts:
                raise ValueError(
                    f"suite {suite['name']!r} uses artifact {key!r}, which [artifacts] does not "
                    f"define (defined: {', '.join(sorted(artifacts))})."
                )
    if not names:
        raise ValueError(f"matrix '{path}' has no [[suite]] entries.")
    return matrix


def _config_keys() -> tuple[str, ...]:
    from edgevae.bench.driver import BenchConfig

    return tuple(BenchConfig.__dataclass_fields__)


def _have(requirement: str) -> bool:
    if requirement == "tensorrt":
        return importlib.util.find_spec("tensorrt") is not None
    if requirement == "cuda":
        try:
            import torch

            return bool(torch.cuda.is_available())
        except ImportError:
            return False
    raise ValueError(f"unknown requirement {requirement!r}; use tensorrt or cuda.")


def expand(
    matrix: dict[str, Any],
    runs: Path,
    *,
    suites: list[str] | None = None,
    presets: list[str] | None = None,
    quick: bool = False,
) -> list[Job]:
    """Jobs for the selected suites and presets, with resolved paths and the BenchConfig fields."""
    all_names = [s["name"] for s in matrix["suite"]]
    for name in suites or []:
        if name not in all_names:
            raise ValueError(f"unknown suite {name!r}; the matrix has: {', '.join(all_names)}.")
    jobs = []
    for suite in matrix["suite"]:
        if suites and suite["name"] not in suites:
            continue
        for preset in suite.get("presets", []):
            if presets and preset not in presets:
                continue
            path_of = {
                k: v.format(runs=runs, preset=preset) for k, v in matrix["artifacts"].items()
            }
            config = {**matrix.get("defaults", {}), **(matrix.get("quick", {}) if quick else {})}
            config.update({k: v for k, v in suite.items() if k not in SUITE_KEYS})
            config["backends"] = list(suite.get("backends", []))
            config["batches"] = list(suite.get("batches", [1]))
            if suite.get("data"):
                config["data"] = path_of["data"]
            baseline = path_of[suite["baseline"]] if suite.get("baseline") else None
            if baseline is not None:
                config["baseline"] = baseline
            arts = [path_of[k] for k in suite["artifacts"]]
            job = Job(suite["name"], preset, arts, baseline, config)
            needed = [*arts, *([config["data"]] if "data" in config else [])]
            job.missing = [p for p in needed if not Path(p).exists()]
            unmet = [r for r in suite.get("requires", []) if not _have(r)]
            if unmet:
                job.skip_reason = f"needs {', '.join(unmet)}, not available here"
            jobs.append(job)
    return jobs


def drop_missing(job: Job) -> str | None:
    """Leave missing artifacts out of ``job``; the reason to skip it entirely, or None."""
    essential = [p for p in (job.baseline, job.config.get("data")) if p is not None]
    lost = [p for p in job.missing if p in essential]
    if lost:
        return f"missing {', '.join(lost)} (baseline or data)"
    job.artifacts = [a for a in job.artifacts if a not in job.missing]
    return None if job.artifacts else "every artifact is missing"


def machine_name() -> str:
    return f"{platform.machine()}-{platform.node() or 'host'}".lower().replace(" ", "-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, required=True, help="directory of pipeline runs")
    parser.add_argument("--matrix", type=Path, default=HERE / "matrix.toml")
    parser.add_argument("--suite", action="append", help="run only this suite (repeatable)")
    parser.add_argument("--preset", action="append", help="run only this preset (repeatable)")
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    parser.add_argument("--quick", action="store_true", help="short smoke settings")
    parser.add_argument("--dry-run", action="store_true", help="print the plan only")
    parser.add_argument("--skip-missing", action="store_true", help="skip jobs with missing files")
    args = parser.parse_args(argv)

    from edgevae.errors import EdgeVAEError

    try:
        jobs = expand(load_matrix(args.matrix), args.runs, suites=args.suite,
                      presets=args.preset, quick=args.quick)  # fmt: skip
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = args.out or HERE / "results" / machine_name()
    missing = [j for j in jobs if j.missing and not j.skip_reason]  # checked before any run
    if missing and not args.skip_missing and not args.dry_run:
        j = missing[0]
        hint = f"run `edgevae pipeline --out {args.runs / j.preset}` first, or pass --skip-missing"
        print(f"error: {j.stem}: missing {', '.join(j.missing)}; {hint}.", file=sys.stderr)
        return 2
    status = 0
    for job in jobs:
        if job.missing and args.skip_missing and not job.skip_reason:
            job.skip_reason = drop_missing(job)
        if job.skip_reason:
            print(f"skip {job.stem}: {job.skip_reason}")
            continue
        if job.missing:
            print(f"note {job.stem}: left out missing {', '.join(job.missing)}")
        gaps = f" ({len(job.missing)} file(s) missing)" if job.missing and args.dry_run else ""
        print(f"run  {job.stem}: {len(job.artifacts)} artifact(s) x {job.config['backends']} "
              f"x batch {job.config['batches']} -> {out / job.stem}.json{gaps}")  # fmt: skip
        if args.dry_run:
            continue
        try:
            status = max(status, run_job(job, out, argv))
        except EdgeVAEError as exc:
            print(f"error: {job.stem}: {exc}", file=sys.stderr)
            return exc.exit_code
    return status


def run_job(job: Job, out: Path, argv: list[str] | None) -> int:
    """Benchmark one job and write its JSON, markdown, plot and log line; 1 if a row failed."""
    from edgevae._util.artifacts import write_bytes_atomic
    from edgevae.bench.driver import BenchConfig, benchmark
    from edgevae.bench.plot import plot_latency
    from edgevae.bench.report import append_jsonl, to_markdown, write_json

    config = BenchConfig.from_dict(job.config)
    command = " ".join(["python benchmarks/run.py", *map(shlex.quote, argv or sys.argv[1:])])
    result = benchmark(job.artifacts, config, command=command)
    write_json(out / f"{job.stem}.json", result.doc)
    write_bytes_atomic(out / f"{job.stem}.md", to_markdown(result.doc).encode())
    if config.keep_samples:
        plot_latency(result.doc, out / f"{job.stem}.png")
    append_jsonl(out / "bench-log.jsonl", result.doc)
    for row in result.rows:
        lat = row["latency_ms"] or {}
        ratio = (row.get("ratio") or {}).get("p50")
        vs = "" if ratio is None else f"{ratio:.2f}x vs baseline"
        print(f"  {row['artifact_name']:<28} {row['backend']:<14} b{row['batch']:<3} "
              f"p50 {lat.get('p50', float('nan')):9.3f} ms  {vs} {row['status']}")  # fmt: skip
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
