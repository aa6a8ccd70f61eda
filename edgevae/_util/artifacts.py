"""Atomic writes, content hashes and sidecar manifests for every artifact edgevae produces.

An artifact is written to a temporary name in the same directory, fsynced, then renamed, so a
killed process never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgevae._version import __version__


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync it and rename it into place.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; artifacts follow the umask
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON atomically (stable bytes for equal content)."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"
    return write_bytes_atomic(path, text.encode())


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def git_revision(cwd: str | os.PathLike[str] | None = None) -> str | None:
    """The current git commit of ``cwd`` (default: this package's checkout), or None."""
    cwd = Path(cwd) if cwd else Path(__file__).resolve().parents[2]
    if not shutil.which("git"):
        return None
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def tool_versions(*modules: str) -> dict[str, str]:
    """Versions of edgevae, Python and the named modules that are importable (never imports new ones
    beyond those named)."""
    import importlib.metadata as md

    versions = {"edgevae": __version__, "python": platform.python_version()}
    for name in modules:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return versions


def write_manifest(
    artifact: str | os.PathLike[str],
    *,
    kind: str,
    config: dict[str, Any] | None = None,
    inputs: dict[str, str] | None = None,
    details: dict[str, Any] | None = None,
    checks: dict[str, Any] | None = None,
    modules: tuple[str, ...] = ("numpy", "torch"),
) -> Path:
    """Write ``<artifact>.manifest.json`` next to an artifact (DESIGN §2 contract).

    Args:
        artifact: the file or directory the manifest describes.
        kind: what the artifact is (e.g. ``"dataset"``, ``"checkpoint"``, ``"onnx"``).
        config: the configuration that produced it.
        inputs: input artifacts as ``{name: sha256}``.
        details: what it is (tensor names/shapes/dtypes, precision actually used, ...).
        checks: measured checks (parity, accuracy gate, ...).
        modules: distributions whose versions are recorded.

    Returns:
        The manifest path.
    """
    artifact = Path(artifact)
    manifest = {
        "artifact": artifact.name,
        "kind": kind,
        "created_by": {
            "tool_versions": tool_versions(*modules),
            "git_revision": git_revision(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        },
        "config": config or {},
        "inputs": inputs or {},
        "details": details or {},
        "checks": checks or {},
    }
    if artifact.is_file():
        manifest["sha256"] = sha256_file(artifact)
        manifest["bytes"] = artifact.stat().st_size
    return write_json_atomic(artifact.with_name(artifact.name + ".manifest.json"), manifest)
