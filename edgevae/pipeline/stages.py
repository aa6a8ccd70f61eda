"""Resumable stages: a stage whose outputs exist and whose fingerprint matches is skipped.

A stage's fingerprint is the SHA-256 of its configuration and of the fingerprints of the stages it
depends on. After a stage succeeds, ``<run>/stages/<name>.json`` records the fingerprint and its
outputs (with sizes). On the next run a stage is skipped when the record exists, the fingerprint
matches and every output is still there with the recorded size; otherwise it runs again, and so
does everything downstream (their fingerprints include its fingerprint).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevae._util.artifacts import write_json_atomic


@dataclass
class Stage:
    """One pipeline step.

    Args:
        name: short identifier (also the record file name).
        config: JSON-ready settings that change its outputs.
        run: does the work and returns the output paths it produced.
        after: names of the stages whose outputs it consumes.
    """

    name: str
    config: dict[str, Any]
    run: Callable[[], Sequence[Path]]
    after: tuple[str, ...] = ()


@dataclass
class StageResult:
    name: str
    status: str  # "ran" | "skipped"
    seconds: float
    outputs: list[str] = field(default_factory=list)


def _fingerprint(stage: Stage, upstream: dict[str, str]) -> str:
    payload = {
        "name": stage.name,
        "config": stage.config,
        "upstream": {n: upstream[n] for n in stage.after},
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _is_current(record_path: Path, fingerprint: str) -> bool:
    if not record_path.is_file():
        return False
    try:
        record = json.loads(record_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if record.get("fingerprint") != fingerprint:
        return False
    for out in record.get("outputs", []):
        p = Path(out["path"])
        if not p.exists() or (p.is_file() and p.stat().st_size != out["bytes"]):
            return False
    return True


def run_stages(
    run_dir: Path,
    stages: Sequence[Stage],
    *,
    force: bool = False,
    on_start: Callable[[Stage], None] | None = None,
    on_done: Callable[[StageResult], None] | None = None,
) -> list[StageResult]:
    """Run ``stages`` in order, skipping the current ones (unless ``force``).

    Returns one :class:`StageResult` per stage. An exception in a stage propagates; the stages
    before it keep their records, so the next run resumes there.
    """
    records = run_dir / "stages"
    upstream: dict[str, str] = {}
    results = []
    for stage in stages:
        fp = _fingerprint(stage, upstream)
        upstream[stage.name] = fp
        record_path = records / f"{stage.name}.json"
        if not force and _is_current(record_path, fp):
            outputs = [o["path"] for o in json.loads(record_path.read_text())["outputs"]]
            result = StageResult(stage.name, "skipped", 0.0, outputs)
        else:
            if on_start:
                on_start(stage)
            t0 = time.perf_counter()
            paths = [Path(p) for p in stage.run()]
            seconds = time.perf_counter() - t0
            outputs = [
                {"path": str(p), "bytes": p.stat().st_size if p.is_file() else 0} for p in paths
            ]
            write_json_atomic(
                record_path, {"fingerprint": fp, "outputs": outputs, "seconds": round(seconds, 3)}
            )
            result = StageResult(stage.name, "ran", seconds, [str(p) for p in paths])
        results.append(result)
        if on_done:
            on_done(result)
    return results
