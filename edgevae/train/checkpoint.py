"""Run directories: atomic checkpoints that are safe to load and honest about their version.

A run directory holds::

    model.safetensors   the kept (best-validation) weights; safetensors, never pickled
    model.json          what the weights are: format version, model config, modality specs,
                        normalisation statistics, score statistics, train config, history, data
    train_state.pt      everything needed to resume: last and best weights, optimiser, RNG states,
                        epoch/step counters; loaded with ``torch.load(weights_only=True)``
    model.safetensors.manifest.json   sidecar manifest, written when training finishes

Each file is written atomically (temporary name, fsync, rename). ``train_state.pt`` is written
first and is self-contained, so a kill between the three renames never loses a resumable state;
``model.safetensors`` and ``model.json`` are then at most one checkpoint behind it.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgevae._util.artifacts import atomic_path, write_json_atomic
from edgevae._version import __version__
from edgevae.errors import CheckpointError, ConfigError, OutputExistsError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from edgevae.data.transforms import Normalizer
    from edgevae.modalities import ModalitySet
    from edgevae.model.config import ModelConfig
    from edgevae.model.scoring import ScoreStats
    from edgevae.train.config import TrainConfig

CHECKPOINT_FORMAT = "edgevae-checkpoint"
CHECKPOINT_VERSION = 1
WEIGHTS = "model.safetensors"
MODEL_JSON = "model.json"
TRAIN_STATE = "train_state.pt"
_REQUIRED_KEYS = (
    "model_config",
    "modalities",
    "normalization",
    "score_stats",
    "train_config",
    "history",
    "data",
)


# -- output directory policy -----------------------------------------------------------------------
def is_run_dir(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` holds an edgevae run: its files, or the temporary files of a first
    checkpoint that was killed while being written."""
    path = Path(path)
    names = (MODEL_JSON, TRAIN_STATE, WEIGHTS)
    if any((path / name).is_file() for name in names):
        return True
    return path.is_dir() and any(
        f.name.startswith(f".{name}.") and f.name.endswith(".tmp")
        for f in path.iterdir()
        for name in names
    )


def check_out_dir(out: str | os.PathLike[str], *, resume: bool, overwrite: bool) -> None:
    """Decide whether a run may write to ``out``; raises before anything is touched.

    Raises:
        ConfigError: both ``resume`` and ``overwrite``.
        CheckpointError: ``resume`` but ``out`` holds no checkpoint.
        OutputExistsError: ``out`` is not empty and neither flag is set, or ``overwrite`` is set
            but ``out`` is not an edgevae run directory (never delete a user's other files).
    """
    out = Path(out)
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; pass only one.")
    non_empty = out.exists() and (not out.is_dir() or any(out.iterdir()))
    if resume:
        if not (out / TRAIN_STATE).is_file():
            raise CheckpointError(
                f"nothing to resume: '{out}' has no {TRAIN_STATE}; drop --resume to start a new "
                "run there."
            )
        return
    if not non_empty:
        return
    if not overwrite:
        raise OutputExistsError(
            f"output directory '{out}' is not empty; pass --resume to continue that run, "
            "--overwrite to replace it, or choose another --out."
        )
    if not out.is_dir() or not is_run_dir(out):
        raise OutputExistsError(
            f"'{out}' is not an edgevae run directory (no {MODEL_JSON}); refusing to delete it "
            "with --overwrite. Choose another --out."
        )


def clear_run_dir(out: str | os.PathLike[str]) -> None:
    """Empty ``out`` (checked by :func:`check_out_dir` first) and make sure it exists."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


# -- writing ---------------------------------------------------------------------------------------
def build_meta(
    *,
    model_config: ModelConfig,
    modalities: ModalitySet,
    normalization: dict[str, Any],
    train_config: dict[str, Any],
    history: list[dict[str, Any]],
    data: dict[str, Any],
    score_stats: ScoreStats | None = None,
    status: str = "training",
    best: dict[str, Any] | None = None,
    parameters: int | None = None,
) -> dict[str, Any]:
    """The ``model.json`` document (the one place that defines its schema)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "edgevae_version": __version__,
        "status": status,
        "model_config": model_config.to_dict(),
        "modalities": modalities.to_list(),
        "normalization": normalization,
        "score_stats": score_stats.to_dict() if score_stats is not None else None,
        "train_config": train_config,
        "history": history,
        "best": best or {},
        "parameters": parameters,
        "data": data,
    }


def save_weights(path: str | os.PathLike[str], model: nn.Module) -> Path:
    """Write ``model``'s weights as safetensors, atomically (shared tensors stored once)."""
    from safetensors.torch import save_model

    with atomic_path(path) as tmp:
        save_model(model, str(tmp), metadata={"format": "pt", "edgevae_version": __version__})
    return Path(path)


def save_checkpoint(
    run_dir: str | os.PathLike[str],
    *,
    train_state: dict[str, Any],
    best_model: nn.Module,
    meta: dict[str, Any],
) -> None:
    """Write one checkpoint: ``train_state.pt`` (resume truth) first, then weights, then JSON."""
    import torch

    run_dir = Path(run_dir)
    state = {"format_version": CHECKPOINT_VERSION, **train_state}
    with atomic_path(run_dir / TRAIN_STATE) as tmp:
        torch.save(state, tmp)
    save_weights(run_dir / WEIGHTS, best_model)
    write_json_atomic(run_dir / MODEL_JSON, meta)


def write_meta(run_dir: str | os.PathLike[str], meta: dict[str, Any]) -> Path:
    """Rewrite ``model.json`` (e.g. after fitting score statistics)."""
    return write_json_atomic(Path(run_dir) / MODEL_JSON, meta)


# -- reading ---------------------------------------------------------------------------------------
def read_meta(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate ``model.json``.

    Raises:
        CheckpointError: missing directory or file, unparsable JSON, not an edgevae checkpoint,
            another format version, or missing keys.
    """
    run_dir = Path(run_dir)
    path = run_dir / MODEL_JSON
    if not run_dir.is_dir():
        raise CheckpointError(
            f"run directory '{run_dir}' does not exist; train one with `edgevae train --out "
            f"{run_dir}`."
        )
    if not path.is_file():
        raise CheckpointError(f"'{path}' is missing: '{run_dir}' is not an edgevae run directory.")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot parse '{path}': {exc}; the checkpoint is corrupt.") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"'{path}' is not an edgevae checkpoint description.")
    version = meta.get("format_version")
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"'{path}' has checkpoint format version {version!r} (written by edgevae "
            f"{meta.get('edgevae_version', '?')}); this edgevae ({__version__}) reads version "
            f"{CHECKPOINT_VERSION}. Retrain, or load it with the edgevae version that wrote it."
        )
    missing = [k for k in _REQUIRED_KEYS if k not in meta]
    if missing:
        raise CheckpointError(f"'{path}' lacks {missing}; the checkpoint is damaged.")
    return meta


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load safetensors weights into ``model`` in place (strict: every key, every shape).

    Raises:
        CheckpointError: missing, truncated or corrupt file, or weights of another architecture.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"'{path}' is missing; the run directory is incomplete.")
    device = next((p.device for p in model.parameters()), "cpu")
    try:
        load_model(model, path, strict=True, device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot read '{path}' ({_first_line(exc)}); the file is truncated or corrupt. "
            "Restore it or retrain."
        ) from None
    except RuntimeError as exc:
        raise CheckpointError(
            f"'{path}' does not fit the model described by {MODEL_JSON} ({_first_line(exc)}); "
            "the files come from different runs."
        ) from None


def load_train_state(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Load ``train_state.pt`` with ``weights_only=True`` (tensors and plain containers only).

    Raises:
        CheckpointError: missing, truncated, corrupt, unsafe (would need arbitrary unpickling) or
            of another format version.
    """
    import torch

    path = Path(run_dir) / TRAIN_STATE
    if not path.is_file():
        raise CheckpointError(f"'{path}' is missing; the run cannot be resumed.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refusing to load '{path}': it holds objects other than tensors and plain data "
            f"({_first_line(exc)}); it was not written by edgevae."
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"cannot read '{path}' ({_first_line(exc)}); the file is truncated or corrupt. "
            "Start a new run with --overwrite."
        ) from None
    if not isinstance(state, dict) or state.get("format_version") != CHECKPOINT_VERSION:
        version = state.get("format_version") if isinstance(state, dict) else None
        raise CheckpointError(
            f"'{path}' has train-state format version {version!r}; this edgevae ({__version__}) "
            f"resumes version {CHECKPOINT_VERSION}. Start a new run with --overwrite."
        )
    return state


@dataclass
class Checkpoint:
    """A loaded run: the model (eval mode) and everything needed to feed it and score with it."""

    model: nn.Module
    model_config: ModelConfig
    modalities: ModalitySet
    normalizer: Normalizer
    score_stats: ScoreStats | None
    meta: dict[str, Any]
    path: Path


def model_from_meta(meta: dict[str, Any]) -> tuple[nn.Module, ModelConfig, ModalitySet]:
    """Build an (untrained) model from a ``model.json`` document.

    Raises:
        CheckpointError: the stored config or modality specs are invalid for this edgevae.
    """
    from edgevae.modalities import ModalitySet
    from edgevae.model.config import ModelConfig
    from edgevae.model.vae import build_model

    try:
        config = ModelConfig.from_dict(meta["model_config"])
        modalities = ModalitySet.from_list(meta["modalities"])
    except ConfigError as exc:
        raise CheckpointError(f"the checkpoint's configuration is not valid here: {exc}") from None
    return build_model(modalities, config), config, modalities


def load_checkpoint(
    run_dir: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> Checkpoint:
    """Load a run directory for inference (never unpickles: JSON + safetensors only).

    Args:
        run_dir: a directory written by :func:`edgevae.train.train`.
        device: where to put the model.

    Raises:
        CheckpointError: missing/corrupt/incompatible files.
    """
    from edgevae.data.transforms import Normalizer
    from edgevae.errors import DatasetError
    from edgevae.model.scoring import ScoreStats

    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    model, config, modalities = model_from_meta(meta)
    model.to(device)
    load_weights(model, run_dir / WEIGHTS)
    model.eval()
    try:
        normalizer = Normalizer(modalities, meta["normalization"])
    except (DatasetError, KeyError, ValueError) as exc:
        raise CheckpointError(
            f"'{run_dir / MODEL_JSON}' has unusable normalisation statistics ({exc})."
        ) from None
    stats = meta.get("score_stats")
    score_stats = ScoreStats.from_dict(stats) if stats else None
    return Checkpoint(model, config, modalities, normalizer, score_stats, meta, run_dir)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def read_configs(run_dir: str | os.PathLike[str]) -> tuple[ModelConfig, TrainConfig]:
    """The model and train configurations stored in a run (for ``--resume`` defaults).

    Raises:
        CheckpointError: missing/corrupt ``model.json`` or configs invalid for this edgevae.
    """
    from edgevae.model.config import ModelConfig
    from edgevae.train.config import TrainConfig

    meta = read_meta(run_dir)
    try:
        return ModelConfig.from_dict(meta["model_config"]), TrainConfig.from_dict(
            meta["train_config"]
        )
    except ConfigError as exc:
        raise CheckpointError(f"the checkpoint's configuration is not valid here: {exc}") from None
