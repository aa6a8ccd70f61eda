"""Training: the loop, its configuration, checkpoints and score-statistics fitting.

Importing this package is cheap (no torch); ``train`` is imported from
:mod:`edgevae.train.loop` on first access.
"""

from __future__ import annotations

from typing import Any

from edgevae.train.config import TrainConfig

__all__ = ["TrainConfig", "train"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from edgevae.train.loop import train

        return train
    raise AttributeError(f"module 'edgevae.train' has no attribute {name!r}")
