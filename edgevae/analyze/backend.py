"""One model session for analysis, whatever the artifact: a PyTorch run, an ONNX file or a TensorRT
engine, all run through the analyze signature (DESIGN §6: one input per modality + ``mask`` ->
``recon_<m>``, ``score``, ``score_parts``).

The session also carries what turns raw signals into model inputs and back: the modality specs,
the :class:`~edgevae.data.transforms.Normalizer` statistics, the score-part names, the capture
parameters (fps, audio rate; :mod:`edgevae.data.capture`) and the anomaly threshold.

Where the metadata comes from:

* run directory: its ``model.json``;
* ``.onnx`` / ``.plan`` / ``.engine``: the first of ``<artifact>.manifest.json`` ``details`` (keys
  ``modalities``, ``normalization``, ``score_stats``, optionally ``data``), ``model.json`` next to
  the artifact, ``model.json`` in its parent directory.

Threshold (first that applies): the ``threshold`` argument (``--threshold``); ``score_stats``
``threshold`` if the run stores one; ``score_mean + 3 * score_std`` if the run stores the
validation score's mean/std; otherwise a 3-sigma rule that follows from the standardisation (on
normal validation data each part has mean 0 and std 1), over the parts that count for the mask in
use: for the ``max`` combination ``3 * max_p w_p`` (some part is 3 sigma above normal); for the
``sum`` ``3 * sqrt(sum w_p^2)`` (the sum's std if the parts were independent).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgevae.data.capture import Capture, capture_for
from edgevae.data.transforms import Normalizer
from edgevae.errors import CheckpointError, ConfigError, ShapeError
from edgevae.modalities import ModalityKind, ModalitySet
from edgevae.runtime.base import Runner


@dataclass
class Outputs:
    """Decoded model outputs for a batch of B windows."""

    score: np.ndarray  # (B,)
    parts: np.ndarray  # (B, P)
    recon: dict[str, np.ndarray]  # raw units: video uint8 (B, T*C, H, W), others float32


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def find_metadata(artifact: Path) -> tuple[dict[str, Any], Path]:
    """The model metadata (modalities, normalization, score_stats, ...) of an artifact.

    Raises:
        CheckpointError: none found, naming the places searched and the fix.
    """
    if artifact.is_dir():
        meta = _read_json(artifact / "model.json")
        if meta is None:
            raise CheckpointError(
                f"'{artifact / 'model.json'}' is missing or unreadable: '{artifact}' is not a "
                "training run; pass a run directory, an .onnx file or a TensorRT engine."
            )
        return meta, artifact / "model.json"
    manifest = artifact.with_name(artifact.name + ".manifest.json")
    candidates: list[tuple[Path, dict[str, Any] | None]] = []
    doc = _read_json(manifest)
    if doc is not None:
        details = doc.get("details") or {}
        candidates.append((manifest, details.get("model") if "model" in details else details))
    for place in (artifact.parent / "model.json", artifact.parent.parent / "model.json"):
        candidates.append((place, _read_json(place)))
    for place, meta in candidates:
        if isinstance(meta, dict) and {"modalities", "normalization"} <= set(meta):
            return meta, place
    raise CheckpointError(
        f"cannot find the model metadata (modalities, normalization, score_stats) for "
        f"'{artifact}': looked in '{manifest.name}' and model.json next to it and one level up; "
        "keep the export's manifest (or the run's model.json) with the artifact."
    )


def dataset_meta(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """The training dataset's ``index.json`` meta if model.json points at a readable dataset."""
    data = meta.get("data") or {}
    if isinstance(data.get("meta"), Mapping):
        return dict(data["meta"])
    path = data.get("path")
    if not path:
        return None
    index = _read_json(Path(path) / "index.json")
    return None if index is None else dict(index.get("meta") or {})


class ModelSession:
    """Runs batches of raw windows through any artifact and decodes the outputs.

    Args:
        artifact: a training run directory, an ``.onnx`` file or a ``.plan``/``.engine`` file.
        device: ``cpu`` or ``cuda``.
        threads: intra-op threads of the backend (None: its default).
        fps, sample_rate: override the capture parameters (default: from the training dataset's
            metadata, else 10 fps / 8 kHz).
        runner: use this runner instead of building one (tests, custom backends).

    Raises:
        ConfigError: an artifact that is not runnable, or a model without cameras.
        CheckpointError: missing metadata or weights.
        MissingDependencyError: TensorRT asked for where it is not installed.
    """

    def __init__(
        self,
        artifact: str | os.PathLike[str],
        *,
        device: str = "cpu",
        threads: int | None = None,
        fps: float | None = None,
        sample_rate: int | None = None,
        runner: Runner | None = None,
    ) -> None:
        from edgevae.runtime.registry import artifact_kind, runner_for

        self.artifact = Path(artifact)
        self.kind = artifact_kind(self.artifact)
        meta, self.meta_path = find_metadata(self.artifact)
        try:
            self.modalities = ModalitySet.from_list(meta["modalities"])
            self.normalizer = Normalizer(self.modalities, meta["normalization"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"model metadata '{self.meta_path}' is incomplete ({exc}); re-export the model."
            ) from None
        self.score_stats: dict[str, Any] = dict(meta.get("score_stats") or {})
        # score_parts column names (edgevae.model.scoring.part_names, without importing torch)
        default_parts = [f"recon_{n}" for n in self.modalities.names] + ["kl_prior", "cross_modal"]
        self.part_names = list(self.score_stats.get("names") or default_parts)
        self.capture, self.capture_source = capture_for(
            self.modalities, fps=fps, sample_rate=sample_rate, dataset_meta=dataset_meta(meta)
        )
        self.runner = runner or runner_for(self.artifact, device=device, threads=threads)
        expected = [*self.modalities.names, "mask"]
        outputs = [*(f"recon_{n}" for n in self.modalities.names), "score", "score_parts"]
        lacking = [n for n in outputs if n not in self.runner.outputs]
        if sorted(self.runner.inputs) != sorted(expected) or lacking:
            raise CheckpointError(
                f"'{self.artifact}' is not an analyze graph (inputs "
                f"{', '.join(self.runner.inputs)}; outputs {', '.join(self.runner.outputs)}; "
                "needed: one input per modality + mask -> recon_<modality>, score, score_parts); "
                "pass analyze.onnx (not encode/decode), an engine built from it, or a run dir."
            )

    @property
    def cameras(self) -> list[str]:
        """Names of the video modalities, in spec order."""
        return [s.name for s in self.modalities if s.kind is ModalityKind.video]

    def threshold(self, mask: np.ndarray, override: float | None = None) -> tuple[float, str]:
        """The anomaly threshold for windows with ``mask`` (M,), and how it was chosen."""
        if override is not None:
            if not math.isfinite(override):
                raise ConfigError(f"--threshold must be a finite number, got {override}.")
            return float(override), "given (--threshold)"
        st = self.score_stats
        if st.get("threshold") is not None:
            return float(st["threshold"]), "stored with the model (score_stats.threshold)"
        if st.get("score_mean") is not None and st.get("score_std") is not None:
            value = float(st["score_mean"]) + 3.0 * float(st["score_std"])
            return value, "validation score mean + 3 std (stored with the model)"
        m = len(self.modalities)
        weights = np.asarray(st.get("weight") or [1.0] * len(self.part_names), np.float64)
        counts = np.concatenate([np.asarray(mask, np.float64), np.ones(len(weights) - m)])
        if st.get("combine", "sum") == "max":
            value = 3.0 * float(np.max(weights[counts > 0]))
            return value, "3 * largest part weight: some standardised part is 3 sigma above normal"
        value = 3.0 * float(np.sqrt(np.sum((weights * counts) ** 2)))
        return value, (
            "3 * sqrt(sum of squared part weights): the 3-sigma rule for standardised, "
            "independent parts"
        )

    def run(self, raw: Mapping[str, np.ndarray], mask: np.ndarray) -> Outputs:
        """Score a batch: ``raw[name]`` (B, *shape) in raw units, ``mask`` (B, M) 1 = present.

        Raises:
            ShapeError: arrays that do not match the model's specs.
        """
        mask = np.ascontiguousarray(mask, np.float32)
        feed: dict[str, np.ndarray] = {}
        for i, spec in enumerate(self.modalities):
            a = np.asarray(raw[spec.name])
            if a.shape[1:] != spec.shape:
                raise ShapeError(
                    f"window of '{spec.name}' has shape {a.shape[1:]}, the model expects "
                    f"{spec.shape}."
                )
            feed[spec.name] = np.ascontiguousarray(
                self.normalizer.numpy(spec.name, a, mask[:, i]), np.float32
            )
        feed["mask"] = mask
        out = self.runner.run(feed)
        recon = {}
        for spec in self.modalities:
            y = self.normalizer.denormalize(spec.name, out[f"recon_{spec.name}"])
            if spec.dtype == "uint8":
                y = np.clip(np.rint(y), 0, 255).astype(np.uint8)
            recon[spec.name] = y
        return Outputs(
            np.asarray(out["score"], np.float32).reshape(-1),
            np.asarray(out["score_parts"], np.float32),
            recon,
        )


def describe_capture(capture: Capture) -> str:
    return (
        f"{capture.clip_frames} frames at {capture.fps:g} fps, {capture.width}x{capture.height} "
        f"{'gray' if capture.channels == 1 else 'RGB'}, audio {capture.sample_rate} Hz"
    )
