"""Engine manifests: what a ``.plan`` was built for, and the check that refuses a mismatched one.

A serialized TensorRT engine only runs with the TensorRT version and on the compute capability it
was built with (reference/tensorrt.md §5.4). Every engine edgevae builds gets a sidecar
``<engine>.plan.manifest.json`` (DESIGN §2) whose ``details`` record the TensorRT/CUDA/JetPack/L4T
versions, compute capability, precision, mode, profiles, I/O tensors and per-layer precisions;
:func:`check_compatible` compares it with this machine before an engine is deserialized.

A split-mode build also writes ``analyze.<precision>.split.json``: the two engines, the modality
order, the latent size and the score statistics the kernels between the engines need.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevae._util.artifacts import write_json_atomic, write_manifest
from edgevae.errors import EngineMismatchError
from edgevae.trt.probe import TargetInfo
from edgevae.trt.versions import ComputeCapability, parse_trt_version

ENGINE_KIND = "tensorrt-engine"
SPLIT_KIND = "tensorrt-split"
SPLIT_SUFFIX = ".split.json"


@dataclass(frozen=True)
class EngineManifest:
    """The parts of an engine manifest the runtime needs.

    Attributes:
        path: the engine (``.plan``) file.
        role: ``analyze`` (native/plugin), ``encode`` or ``decode`` (split).
        mode, precision: as built.
        target: what it was built for.
        profiles: per input ``{"min": [...], "opt": [...], "max": [...]}``.
        io: per tensor ``{"mode": "input"|"output", "shape": [...], "dtype": "float32"}``.
        plugin_libraries: shared libraries to load before deserializing (plugin mode, C++ route).
        export_dir: the export directory it was built from (for the rebuild hint).
    """

    path: Path
    role: str
    mode: str
    precision: str
    target: TargetInfo
    profiles: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    io: dict[str, dict[str, Any]] = field(default_factory=dict)
    plugin_libraries: list[str] = field(default_factory=list)
    export_dir: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def batch_range(self) -> tuple[int, int] | None:
        """(MIN, MAX) batch of the profile (first input), or None without profiles."""
        for prof in self.profiles.values():
            return prof["min"][0], prof["max"][0]
        return None

    def rebuild_hint(self) -> str:
        src = self.export_dir or "EXPORT_DIR"
        return f"`edgevae build {src} --precision {self.precision} --mode {self.mode}`"


def manifest_path(engine: str | os.PathLike[str]) -> Path:
    """``model.plan`` -> ``model.plan.manifest.json``."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".manifest.json")


def write_engine_manifest(
    engine: str | os.PathLike[str],
    *,
    role: str,
    config: dict[str, Any],
    target: TargetInfo,
    onnx_inputs: dict[str, str],
    profiles: dict[str, dict[str, list[int]]],
    io: dict[str, dict[str, Any]],
    layers: dict[str, Any] | None = None,
    plugin_libraries: list[str] | None = None,
    export_dir: str | None = None,
    build: dict[str, Any] | None = None,
) -> Path:
    """Write the sidecar manifest of an engine (DESIGN §2) and return its path.

    Args:
        engine: the ``.plan`` file (already written).
        role: ``analyze``, ``encode`` or ``decode``.
        config: ``EngineConfig.to_dict()``.
        target: versions and compute capability of this machine.
        onnx_inputs: ONNX files it was built from, ``{name: sha256}``.
        profiles: the optimization profile per input.
        io: engine I/O tensors as TensorRT reports them.
        layers: per-layer precision report from the engine inspector (None when unavailable).
        plugin_libraries: plugin shared libraries the engine needs at run time.
        export_dir: the export directory (recorded for rebuild hints).
        build: build facts (effective workspace, timing cache, seconds, warnings).
    """
    details = {
        "role": role,
        "mode": config.get("mode"),
        "precision": config.get("precision"),
        "target": target.to_dict(),
        "profiles": profiles,
        "io": io,
        "layers": layers,
        "plugin_libraries": plugin_libraries or [],
        "export_dir": export_dir,
        "build": build or {},
    }
    return write_manifest(
        engine, kind=ENGINE_KIND, config=config, inputs=onnx_inputs, details=details, modules=()
    )


def read_engine_manifest(engine: str | os.PathLike[str]) -> EngineManifest:
    """Read an engine's sidecar manifest.

    Raises:
        EngineMismatchError: when the manifest is missing, unreadable or not an engine manifest.
    """
    engine = Path(engine)
    path = manifest_path(engine)
    if not path.is_file():
        raise EngineMismatchError(
            f"{engine.name} has no manifest ({path.name}), so edgevae cannot tell what it was "
            "built for; rebuild it with `edgevae build EXPORT_DIR`."
        )
    try:
        raw = json.loads(path.read_text())
        if raw.get("kind") != ENGINE_KIND:
            raise ValueError(f"kind is {raw.get('kind')!r}, not {ENGINE_KIND!r}")
        d = raw["details"]
        target = TargetInfo(**{k: v for k, v in d["target"].items() if k != "extra"})
        return EngineManifest(
            path=engine,
            role=d["role"],
            mode=d["mode"],
            precision=d["precision"],
            target=target,
            profiles=d.get("profiles") or {},
            io=d.get("io") or {},
            plugin_libraries=list(d.get("plugin_libraries") or []),
            export_dir=d.get("export_dir"),
            raw=raw,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise EngineMismatchError(
            f"the manifest {path.name} is not a valid engine manifest ({exc}); rebuild the "
            "engine with `edgevae build EXPORT_DIR`."
        ) from None


def check_compatible(manifest: EngineManifest, here: TargetInfo) -> None:
    """Refuse an engine built for another TensorRT version or compute capability.

    Raises:
        EngineMismatchError: naming what the engine was built for, what this machine has, and
            the ``edgevae build`` command that rebuilds it here.
    """
    built = manifest.target
    problems = []
    if not _same_trt(built.trt_version, here.trt_version):
        problems.append(f"TensorRT {built.trt_version} vs {here.trt_version} here")
    if not _same_cc(built.compute_capability, here.compute_capability):
        problems.append(
            f"compute capability {built.compute_capability} vs {here.compute_capability} here"
        )
    if problems:
        raise EngineMismatchError(
            f"{manifest.path.name} was built for {built.describe()}, but this machine has "
            f"{here.describe()} ({'; '.join(problems)}); engines are not portable: rebuild it "
            f"here with {manifest.rebuild_hint()}."
        )


def _same_trt(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    try:
        return parse_trt_version(a) == parse_trt_version(b)
    except ValueError:
        return a == b


def _same_cc(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    try:
        return ComputeCapability.parse(a) == ComputeCapability.parse(b)
    except ValueError:
        return a == b


@dataclass(frozen=True)
class SplitBundle:
    """A split-mode build: encode engine -> poe_fusion -> decode engine -> anomaly_score.

    Attributes:
        path: the ``*.split.json`` file.
        encode, decode: the two engine files.
        modalities: modality names in mask-column order.
        latent_dim: D of z.
        score_stats: ``ScoreStats.to_dict()`` for the anomaly_score kernel.
        precision: as built.
    """

    path: Path
    encode: Path
    decode: Path
    modalities: list[str]
    latent_dim: int
    score_stats: dict[str, list]
    precision: str


def write_split_bundle(
    path: str | os.PathLike[str],
    *,
    encode: Path,
    decode: Path,
    modalities: list[str],
    latent_dim: int,
    score_stats: dict[str, list],
    precision: str,
    config: dict[str, Any],
    target: TargetInfo,
) -> Path:
    """Write ``analyze.<precision>.split.json`` (+ its sidecar manifest) and return its path."""
    path = Path(path)
    body = {
        "kind": SPLIT_KIND,
        "precision": precision,
        "engines": {"encode": encode.name, "decode": decode.name},
        "modalities": modalities,
        "latent_dim": latent_dim,
        "score_stats": score_stats,
        "target": target.to_dict(),
    }
    write_json_atomic(path, body)
    write_manifest(path, kind=SPLIT_KIND, config=config, details=body, modules=())
    return path


def read_split_bundle(path: str | os.PathLike[str]) -> SplitBundle:
    """Read a ``*.split.json`` bundle.

    Raises:
        EngineMismatchError: when it is missing or malformed.
    """
    path = Path(path)
    try:
        body = json.loads(path.read_text())
        if body.get("kind") != SPLIT_KIND:
            raise ValueError(f"kind is {body.get('kind')!r}")
        return SplitBundle(
            path=path,
            encode=path.with_name(body["engines"]["encode"]),
            decode=path.with_name(body["engines"]["decode"]),
            modalities=list(body["modalities"]),
            latent_dim=int(body["latent_dim"]),
            score_stats=body["score_stats"],
            precision=body["precision"],
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EngineMismatchError(
            f"{path} is not a readable split-engine bundle ({exc}); rebuild it with "
            "`edgevae build EXPORT_DIR --mode split`."
        ) from None
