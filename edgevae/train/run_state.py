"""The state of one training run: counters, what a checkpoint holds, and resuming it safely.

:class:`RunState` is what :func:`edgevae.train.loop.train` works on; :meth:`RunState.train_state`
is exactly what ``train_state.pt`` holds and :meth:`RunState.restore` puts it back.
:func:`load_resume_state` refuses to resume anything but the same run on the same data.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgevae._util.artifacts import sha256_file
from edgevae.data.format import DatasetReader
from edgevae.data.transforms import Normalizer
from edgevae.errors import CheckpointError, ConfigError, DatasetError
from edgevae.modalities import ModalitySet
from edgevae.model.config import ModelConfig
from edgevae.train import checkpoint as ckpt
from edgevae.train.config import RESUMABLE_KEYS, TrainConfig, config_differences
from edgevae.train.distributed import Dist

STATE_KEYS = (
    "model",
    "best_model",
    "optimizer",
    "rng",
    "counters",
    "history",
    "model_config",
    "train_config",
    "modalities",
    "data",
)


@dataclass
class Counters:
    """Loop position and early-stopping state; checkpointed in ``train_state.pt``."""

    epoch: int = 0  # 0-based epoch in progress (== completed epochs at an epoch boundary)
    step_in_epoch: int = 0  # optimiser steps already done in that epoch (mid-epoch resume)
    global_step: int = 0
    best_val: float = math.inf
    best_epoch: int = 0  # 1-based epoch of the kept weights (0 = none yet)
    bad_epochs: int = 0


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices/kernels only (not on biases and norm scales)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr)


def describe_data(reader: DatasetReader, world_size: int = 1) -> dict[str, Any]:
    """What a run records about its dataset (path, index hash, split sizes).

    Raises:
        DatasetError: an empty train/val split, or one with fewer clips than processes.
    """
    for split in ("train", "val"):
        n = len(reader.split(split))
        if n == 0:
            raise DatasetError(f"dataset '{reader.path}' has no clips in its '{split}' split.")
        if n < world_size:  # every rank needs a share of both splits
            raise DatasetError(
                f"the '{split}' split of '{reader.path}' has {n} clip(s), fewer than the "
                f"{world_size} processes; use at most {n} processes or add clips."
            )
    return {
        "path": str(Path(reader.path).resolve()),
        "index_sha256": sha256_file(Path(reader.path) / "index.json"),
        "train_clips": len(reader.split("train")),
        "val_clips": len(reader.split("val")),
    }


def load_resume_state(
    out: Path,
    reader: DatasetReader,
    model_config: ModelConfig,
    cfg: TrainConfig,
    data_info: dict[str, Any],
) -> dict[str, Any]:
    """Load ``train_state.pt`` and refuse to resume anything but the same run on the same data."""
    state = ckpt.load_train_state(out)
    missing = [k for k in STATE_KEYS if k not in state]
    if missing:
        raise CheckpointError(
            f"'{out / ckpt.TRAIN_STATE}' lacks {missing}; it is damaged. Start a new run with "
            "--overwrite."
        )
    ModalitySet.from_list(state["modalities"]).check_compatible(
        reader.modalities,
        "dataset",
        "Resume with the dataset this run was trained on, or start a new run.",
    )
    diffs = [
        f"model.{d}" for d in config_differences(state["model_config"], model_config.to_dict())
    ]
    diffs += config_differences(state["train_config"], cfg.to_dict(), ignore=RESUMABLE_KEYS)
    if diffs:
        raise ConfigError(
            f"cannot resume '{out}' with a different configuration: {'; '.join(diffs)}. Pass the "
            "original values (or omit them), or start a new run with --overwrite."
        )
    if state["data"]["index_sha256"] != data_info["index_sha256"]:
        raise ConfigError(
            f"cannot resume '{out}' on different data: the index.json of '{data_info['path']}' "
            f"differs from the one of '{state['data']['path']}' the run was trained on. Resume "
            "with the original --data or start a new run with --overwrite."
        )
    return state


class RunState:
    """The state of one training run; :meth:`train_state` is exactly what a checkpoint holds."""

    def __init__(
        self,
        out: Path,
        reader: DatasetReader,
        model: nn.Module,
        model_config: ModelConfig,
        cfg: TrainConfig,
        dist: Dist,
        data_info: dict[str, Any],
    ) -> None:
        self.out, self.reader, self.model, self.device = out, reader, model, dist.device
        self.model_config, self.cfg, self.data_info, self.dist = model_config, cfg, data_info, dist
        device = dist.device
        self.normalizer = Normalizer(reader.modalities, reader.normalization)
        self.optimizer = make_optimizer(model, cfg)
        # the loss's subsets, dropout and noise; reseeded every step from (seed, step, rank)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(cfg.seed)
        self.best_model = copy.deepcopy(model)  # the kept (best validation) weights
        self.counters = Counters()
        self.history: list[dict[str, Any]] = []
        self.n_params = sum(p.numel() for p in model.parameters())

    def restore(self, state: dict[str, Any]) -> None:
        """Put everything a checkpoint holds back in place (weights, optimiser, RNGs, counters)."""
        self.model.load_state_dict(state["model"])
        self.best_model.load_state_dict(state["best_model"])
        self.optimizer.load_state_dict(state["optimizer"])
        rng = state["rng"]
        self.generator.set_state(rng["generator"].to(self.generator.get_state().device))
        torch.set_rng_state(rng["torch"])
        if self.device.type == "cuda" and rng.get("cuda") is not None:
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.counters = Counters(**state["counters"])
        self.history = list(state["history"])

    def train_state(self) -> dict[str, Any]:
        cuda = self.device.type == "cuda"
        return {
            "model": self.model.state_dict(),
            "best_model": self.best_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "generator": self.generator.get_state(),
                "cuda": torch.cuda.get_rng_state(self.device) if cuda else None,
            },
            "counters": vars(self.counters).copy(),
            "history": self.history,
            "model_config": self.model_config.to_dict(),
            "train_config": self.cfg.to_dict(),
            "modalities": self.reader.modalities.to_list(),
            "data": self.data_info,
            "distributed": self.dist.describe(),
        }

    def meta(self, status: str, score_stats: Any = None, **extra: Any) -> dict[str, Any]:
        best_val = self.counters.best_val
        doc = ckpt.build_meta(
            model_config=self.model_config,
            modalities=self.reader.modalities,
            normalization=self.normalizer.to_dict(),
            train_config=self.cfg.to_dict(),
            history=self.history,
            data=self.data_info,
            score_stats=score_stats,
            status=status,
            best={
                "epoch": self.counters.best_epoch or None,
                "val_loss": best_val if math.isfinite(best_val) else None,
            },
            parameters=self.n_params,
        )
        return {**doc, "distributed": self.dist.describe(), **extra}

    def save(self) -> None:
        ckpt.save_checkpoint(
            self.out,
            train_state=self.train_state(),
            best_model=self.best_model,
            meta=self.meta("training"),
        )

    def patience_spent(self) -> bool:
        return self.cfg.patience > 0 and self.counters.bad_epochs >= self.cfg.patience

    def record_validation(self, val_loss: float, partial: bool) -> bool:
        """Keep the weights if they are the best so far; count epochs without improvement."""
        c = self.counters
        improved = val_loss < c.best_val - self.cfg.min_delta
        if improved:
            c.best_val, c.best_epoch, c.bad_epochs = val_loss, c.epoch + 1, 0
            self.best_model.load_state_dict(self.model.state_dict())
        elif not partial:  # a partial epoch (time budget) never counts against patience
            c.bad_epochs += 1
        return improved
