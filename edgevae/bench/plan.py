"""What a benchmark will run: artifacts (with what their manifests say), artifact x backend pairs,
and the batch sizes each runner or engine profile accepts.

These checks run before anything slow, so bad input (a missing artifact, a backend that cannot run
an artifact, a batch outside a profile) fails at once with one line that says what to do.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevae.errors import ConfigError, EngineMismatchError
from edgevae.modalities import ModalitySet
from edgevae.runtime.base import Runner
from edgevae.runtime.registry import BACKENDS_FOR_KIND, artifact_kind, backend_for


@dataclass
class Artifact:
    """One artifact as given on the command line, with what edgevae knows about it.

    ``modalities``/``normalization`` come from a run's ``model.json`` or from an ONNX/engine
    sidecar manifest (``details`` or ``config`` block) when present.
    """

    given: str
    path: Path
    kind: str  # "onnx" | "run" | "engine"
    name: str
    precision: str | None
    modalities: ModalitySet | None = None
    normalization: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None


@dataclass
class Pair:
    """An artifact on one backend; its runner is shared by every batch size."""

    art: Artifact
    backend: str
    runner: Runner | None = None
    error: str | None = None
    accuracy: dict[str, Any] | None = field(default=None)

    @property
    def inner_backend(self) -> str:
        """The backend that runs the model (``pipeline`` wraps the artifact's default one)."""
        return self.backend if self.backend != "pipeline" else BACKENDS_FOR_KIND[self.art.kind][0]


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The sidecar ``<artifact>.manifest.json`` (DESIGN §2), or None when absent/unreadable."""
    side = path.with_name(path.name + ".manifest.json")
    try:
        return json.loads(side.read_text()) if side.is_file() else None
    except (OSError, ValueError):
        return None


_PRECISION_TOKENS = (
    (".int8.cpu", "int8-cpu"),
    (".int8.trt", "int8-trt"),
    (".int8", "int8"),
    (".fp16", "fp16"),
)


def guess_precision(path: Path, kind: str, manifest: dict[str, Any] | None) -> str | None:
    """Precision from the manifest (``details``/``config`` ``precision``), else the file name
    (``analyze.fp16.onnx`` -> ``fp16``); runs are ``fp32``."""
    for block in ("details", "config"):
        p = ((manifest or {}).get(block) or {}).get("precision")
        if isinstance(p, str):
            return p
    if kind == "run":
        return "fp32"
    name = path.name.lower()
    for token, precision in _PRECISION_TOKENS:
        if token in name:
            return precision
    return "fp32" if kind == "onnx" else None


def load_artifact(given: str) -> Artifact:
    """Resolve one artifact argument.

    Raises:
        ConfigError: missing path or not a runnable artifact.
        CheckpointError: a run directory with an unreadable ``model.json``.
    """
    path = Path(given)
    kind = artifact_kind(path)
    art = Artifact(given, path, kind, path.name, None)
    if kind == "run":
        from edgevae.runtime.registry import read_run_metadata

        meta = read_run_metadata(path)
        art.modalities = ModalitySet.from_list(meta["modalities"])
        art.normalization = meta.get("normalization")
        art.name = path.name + "/"
    else:
        art.manifest = read_manifest(path)
        for block in ("details", "config"):
            d = (art.manifest or {}).get(block) or {}
            if art.modalities is None and isinstance(d.get("modalities"), list):
                art.modalities = ModalitySet.from_list(d["modalities"])
            if art.normalization is None and isinstance(d.get("normalization"), dict):
                art.normalization = d["normalization"]
    art.precision = guess_precision(path, kind, art.manifest)
    return art


def load_artifacts(given: Sequence[str], baseline: str | None) -> tuple[list[Artifact], Artifact]:
    """All artifacts (the baseline appended when not among them) and the baseline one.

    Raises:
        ConfigError: no artifacts, or one that is missing / not runnable.
    """
    if not given:
        raise ConfigError("no artifacts to benchmark; pass .onnx files, run dirs or engines.")
    items = [str(g) for g in given]
    if baseline is not None and all(Path(baseline).resolve() != Path(g).resolve() for g in items):
        items.append(str(baseline))  # the baseline is always measured in the same run
    arts = [load_artifact(g) for g in items]
    names = [a.name for a in arts]
    for a in arts:  # two runs' analyze.onnx -> "run_a/analyze.onnx", "run_b/analyze.onnx"
        if names.count(a.name) > 1:
            a.name = f"{a.path.parent.name}/{a.name}"
    base = arts[0]
    if baseline is not None:
        base = next(a for a in arts if a.path.resolve() == Path(baseline).resolve())
    return arts, base


def plan_pairs(arts: Sequence[Artifact], backends: Sequence[str]) -> list[Pair]:
    """Artifact x backend pairs. With several backends, each artifact runs on those that fit it.

    Raises:
        ConfigError: an artifact that none of the requested backends can run (names the fix).
    """
    pairs: list[Pair] = []
    for art in arts:
        wanted = list(backends) or [BACKENDS_FOR_KIND[art.kind][0]]
        fit = [b for b in wanted if b == "pipeline" or b in BACKENDS_FOR_KIND[art.kind]]
        if not fit:
            backend_for(art.path, wanted[0])  # raises the ConfigError that names the fix
        pairs.extend(Pair(art, b) for b in fit)
    return pairs


def engine_batch_range(path: Path) -> tuple[int, int] | None:
    """(min, max) batch of an engine's optimization profile from its manifest (``details.profiles``,
    first input), or None when the manifest does not say. Needs no TensorRT."""
    profiles = ((read_manifest(path) or {}).get("details") or {}).get("profiles") or {}
    for prof in profiles.values():
        try:
            return int(prof["min"][0]), int(prof["max"][0])
        except (KeyError, IndexError, TypeError, ValueError):
            return None
    return None


def batch_limits(runner: Runner) -> tuple[int, int | None]:
    """(min, max) batch a runner accepts: its ``batch_range`` (engines), a fixed leading input
    dimension (a statically exported ONNX), or (1, None) for a dynamic batch axis."""
    rng = getattr(runner, "batch_range", None)
    rng = rng() if callable(rng) else rng
    if rng:
        return int(rng[0]), int(rng[1])
    fixed = {i.shape[0] for i in runner.inputs.values() if i.shape and isinstance(i.shape[0], int)}
    if len(fixed) == 1:
        n = fixed.pop()
        return n, n
    return 1, None


def check_batch(
    batch: int, limits: tuple[int, int | None], artifact: str, *, engine: bool = False
) -> None:
    """Raise a one-line error when ``batch`` is outside ``limits``.

    Raises:
        EngineMismatchError: outside an engine's optimization profile (with the rebuild hint).
        ConfigError: a model exported with a fixed batch (with the re-export hint).
    """
    lo, hi = limits
    if lo <= batch and (hi is None or batch <= hi):
        return
    if engine:
        raise EngineMismatchError(
            f"batch {batch} is outside the optimization profile of '{artifact}' (batch "
            f"{lo}..{hi}); pick --batch within it or rebuild the engine with a profile that "
            f"covers {batch} (`edgevae build EXPORT_DIR`)."
        )
    if lo == hi:
        raise ConfigError(
            f"'{artifact}' has a fixed batch of {lo}; use --batch {lo} or re-export it with "
            "`edgevae export RUN --batch dynamic`."
        )
    raise ConfigError(f"batch {batch} is outside {lo}..{hi} for '{artifact}'; pick one inside.")
