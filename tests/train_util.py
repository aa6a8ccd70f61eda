"""Tiny seeded datasets and model configs for trainer and API tests (seconds, not minutes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgevae.data import from_arrays
from edgevae.modalities import ModalitySpec

# Every modality kind but vector, a camera share group, and tiny shapes.
TINY_SPECS = [
    ModalitySpec("cam0", "video", (2, 8, 8), dtype="uint8", share="cams"),
    ModalitySpec("cam1", "video", (2, 8, 8), dtype="uint8", share="cams"),
    ModalitySpec("audio", "spectrogram", (1, 8, 8)),
    ModalitySpec("motion", "series", (4, 3)),
]


def tiny_arrays(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Raw arrays with some cross-modal structure (audio/motion follow the cameras' brightness)."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(0, 1, size=(n, 1, 1, 1))
    cam0 = np.clip(level * 200 + rng.normal(0, 20, (n, 2, 8, 8)), 0, 255).astype(np.uint8)
    cam1 = np.clip(level * 180 + rng.normal(0, 20, (n, 2, 8, 8)), 0, 255).astype(np.uint8)
    audio = (level * 3 + rng.normal(0, 0.5, (n, 1, 8, 8))).astype(np.float32)
    motion = (level[:, :, 0, 0][:, :, None] * 2 + rng.normal(0, 0.3, (n, 4, 3))).astype(np.float32)
    return {"cam0": cam0, "cam1": cam1, "audio": audio, "motion": motion}


def make_tiny_dataset(out: Path, n_train: int = 48, n_val: int = 16, seed: int = 0) -> Path:
    """A dataset with train/val (normal) and a test split with labelled anomalies."""
    test = tiny_arrays(16, seed + 2)
    labels = np.zeros(16, np.uint8)
    labels[8:] = 1
    test["audio"][8:] += 5.0  # an audio anomaly
    return from_arrays(
        out,
        {"train": tiny_arrays(n_train, seed), "val": tiny_arrays(n_val, seed + 1), "test": test},
        specs=TINY_SPECS,
        frame_labels={"test": labels},
    )


def tiny_model_config(kind: str = "mvae", **overrides):
    """A few-thousand-parameter model of ``kind`` for the tiny shapes."""
    from edgevae.model.config import ModelConfig

    knobs = {
        "width": 4,
        "max_width": 8,
        "decoder_width": 4,
        "mlp_hidden": 16,
        "latent_dim": 4,
        "kl_warmup_steps": 4,
    }
    return ModelConfig.from_preset("nano", kind=kind, **{**knobs, **overrides})


def tiny_train_config(**overrides):
    """Two CPU epochs of batch 8."""
    from edgevae.train import TrainConfig

    return TrainConfig(**{"epochs": 2, "batch_size": 8, "device": "cpu", **overrides})
