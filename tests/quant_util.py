"""A tiny trained-and-exported model for the quantization tests (built once per test session).

The shapes are the smallest that give every graph a layer that is neither first nor last nor
below TensorRT's 8-channel alignment (16x16 cameras: two conv stages; channels 8 and 16), so the
INT8 TensorRT artifact of every graph quantizes something.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edgevae.modalities import ModalitySpec

SPECS = [
    ModalitySpec("cam0", "video", (2, 16, 16), dtype="uint8", share="cams"),
    ModalitySpec("cam1", "video", (2, 16, 16), dtype="uint8", share="cams"),
    ModalitySpec("audio", "spectrogram", (1, 16, 16)),
    ModalitySpec("motion", "series", (8, 3)),
]
_CACHE: dict[str, Path] = {}


def arrays(n: int, seed: int) -> dict[str, np.ndarray]:
    """Raw clips whose modalities share one latent 'level' (audio/motion follow the cameras)."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(0, 1, size=(n, 1, 1, 1))
    cam0 = np.clip(level * 200 + rng.normal(0, 20, (n, 2, 16, 16)), 0, 255).astype(np.uint8)
    cam1 = np.clip(level * 180 + rng.normal(0, 20, (n, 2, 16, 16)), 0, 255).astype(np.uint8)
    audio = (level * 3 + rng.normal(0, 0.5, (n, 1, 16, 16))).astype(np.float32)
    motion = (level[:, :, 0, 0][:, :, None] * 2 + rng.normal(0, 0.3, (n, 8, 3))).astype(np.float32)
    return {"cam0": cam0, "cam1": cam1, "audio": audio, "motion": motion}


def make_dataset(out: Path) -> Path:
    """train 64 / val 16 normal clips; test 32 clips, the last 12 with an audio anomaly."""
    from edgevae.data import from_arrays

    test = arrays(32, 2)
    labels = np.zeros(32, np.uint8)
    labels[20:] = 1
    test["audio"][20:] += 4.0
    return from_arrays(
        out,
        {"train": arrays(64, 0), "val": arrays(16, 1), "test": test},
        specs=SPECS,
        frame_labels={"test": labels},
    )


def _build(root: Path) -> Path:
    from edgevae.export import export
    from edgevae.model.config import ModelConfig
    from edgevae.train import TrainConfig, train

    data = make_dataset(root / "data")
    model = ModelConfig.from_preset(
        "nano", width=8, max_width=16, decoder_width=8, mlp_hidden=16, latent_dim=4,
        kl_warmup_steps=4,
    )  # fmt: skip
    run = train(data, root / "run", model, TrainConfig(epochs=3, batch_size=16, device="cpu"))
    export(run, root / "export")
    return root


def tiny_export(factory: pytest.TempPathFactory, dest: Path) -> tuple[Path, Path]:
    """A fresh copy of the session's tiny export in ``dest`` and its dataset: ``(export, data)``."""
    if "root" not in _CACHE:
        _CACHE["root"] = _build(factory.mktemp("quant-model"))
    root = _CACHE["root"]
    shutil.copytree(root / "export", dest)
    return dest, root / "data"
