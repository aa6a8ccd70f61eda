"""The training loop: readable top to bottom, no globals, sampler and device injected.

One call of :func:`train` = one invocation of ``edgevae train``::

    check the output dir / the checkpoint to resume     (all bad input raises before any write)
    build the model (seeded) and AdamW; restore state when resuming
    for each epoch:
        for each batch (order from the injected sampler, skipping what a mid-epoch resume did):
            loss = training_loss(...); stop with NumericalError on NaN/Inf; backward; clip; step
            stop at this step boundary when the time budget is spent
        validation loss -> keep the best weights, early stopping by patience
        atomic checkpoint (train_state.pt, model.safetensors, model.json), then a progress event
    fit the score statistics on normal validation data; final model.json + manifest

Data-parallel training plugs in without rewriting this file: inject a ``DistributedSampler``
through ``sampler_factory`` (its ``set_epoch`` is called every epoch), set ``device`` per rank in
the :class:`TrainConfig`, wrap the model where it is built (``training_loss`` calls the model's
submodules, so a DDP wrapper needs a ``forward`` that computes the loss), checkpoint on rank 0
only, and all-reduce the sums that :func:`evaluate` returns before dividing.

Randomness lives in explicit generators whose states are checkpointed, and the global torch RNG
is forked (the caller's RNG is untouched), so a resumed run continues bit-identically on the CPU.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from edgevae._util.artifacts import sha256_file, write_manifest
from edgevae.data.format import DatasetReader, open_dataset
from edgevae.data.loader import ClipDataset, make_loader
from edgevae.data.transforms import Normalizer
from edgevae.errors import CheckpointError, ConfigError, DatasetError, NumericalError
from edgevae.modalities import ModalitySet
from edgevae.model.config import ModelConfig
from edgevae.model.losses import training_loss
from edgevae.model.vae import build_model
from edgevae.train import checkpoint as ckpt
from edgevae.train.config import (
    RESUMABLE_KEYS,
    TrainConfig,
    config_differences,
    resolve_device,
)
from edgevae.train.progress import Clock, ProgressEvent, ProgressFn
from edgevae.train.sampling import ResumableSampler, SamplerFactory, SeededEpochSampler
from edgevae.train.score_fit import fit_score_stats

# Validation loss is measured at the full KL weight, past any warm-up, so epochs compare fairly.
FULL_KL_STEP = 10**9
_VAL_SEED_OFFSET = 1_000_003  # validation randomness: fixed per run, independent of training
_STATE_KEYS = (
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
class _Counters:
    """Loop position and early-stopping state; checkpointed in ``train_state.pt``."""

    epoch: int = 0  # 0-based epoch in progress (== completed epochs at an epoch boundary)
    step_in_epoch: int = 0  # optimiser steps already done in that epoch (mid-epoch resume)
    global_step: int = 0
    best_val: float = math.inf
    best_epoch: int = 0  # 1-based epoch of the kept weights (0 = none yet)
    bad_epochs: int = 0


# -- small pure pieces ---------------------------------------------------------------------------
def learning_rate(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """Learning rate at optimiser step ``step`` (0-based): linear warm-up, then the schedule."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(total_steps - cfg.warmup_steps, 1)
    t = min(max((step - cfg.warmup_steps) / span, 0.0), 1.0)
    floor = cfg.lr * cfg.min_lr_fraction
    return floor + 0.5 * (cfg.lr - floor) * (1.0 + math.cos(math.pi * t))


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices/kernels only (not on biases and norm scales)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr)


def split_batch(
    batch: Mapping[str, Tensor], modalities: ModalitySet, device: torch.device
) -> tuple[dict[str, Tensor], Tensor]:
    """Loader batch -> (modality inputs on ``device``, mask (B, M) on ``device``)."""
    inputs = {n: batch[n].to(device, non_blocking=True) for n in modalities.names}
    return inputs, batch["mask"].to(device, non_blocking=True)


def _as_floats(parts: Mapping[str, Tensor], total: Tensor) -> dict[str, float]:
    # One device sync for every part.
    keys = [k for k in parts if k != "total"]
    values = torch.stack([total.detach().float(), *(parts[k].detach().float() for k in keys)])
    return dict(zip(["total", *keys], values.cpu().tolist(), strict=True))


def nonfinite_error(
    parts: Mapping[str, float],
    inputs: Mapping[str, Tensor],
    mask: Tensor,
    modalities: ModalitySet,
    where: str,
) -> NumericalError:
    """Name the cause of a NaN/Inf loss: a non-finite present input, else the first bad term."""
    for i, name in enumerate(modalities.names):
        bad = ~torch.isfinite(inputs[name].flatten(1)).all(dim=1) & (mask[:, i] > 0)  # (B,)
        if bad.any():
            return NumericalError(
                f"input modality '{name}' holds NaN/Inf in {int(bad.sum())} clip(s) of the batch "
                f"at {where}; clean the {name} data (or mark those clips missing) and retrain."
            )
    terms = [k for k in parts if k != "total"] + ["total"]
    term = next(k for k in terms if not math.isfinite(parts[k]))
    kind = "NaN" if math.isnan(parts[term]) else "Inf"
    modality = next((m for m in modalities.names if term.endswith(f"_{m}")), None)
    data = f"the {modality} data" if modality else "the data"
    return NumericalError(
        f"loss term '{term}' became {kind} at {where}; lower --lr or check {data}. "
        "The last checkpoint is kept."
    )


# -- one step, one evaluation --------------------------------------------------------------------
def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: dict[str, Tensor],
    mask: Tensor,
    *,
    step: int,
    lr: float,
    grad_clip: float,
    generator: torch.Generator,
    where: str,
) -> dict[str, float]:
    """One optimiser step; returns the loss parts as floats (``total`` first).

    Raises:
        NumericalError: a NaN/Inf loss term or gradient; the weights are left untouched.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    out = training_loss(model, inputs, mask, step=step, generator=generator)
    parts = _as_floats(out.parts, out.total)
    if not all(math.isfinite(v) for v in parts.values()):
        raise nonfinite_error(parts, inputs, mask, model.modalities, where)
    optimizer.zero_grad(set_to_none=True)
    out.total.backward()
    max_norm = grad_clip if grad_clip > 0 else math.inf
    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
    if not math.isfinite(grad_norm):
        raise NumericalError(
            f"gradients became NaN/Inf at {where} although the loss was finite "
            f"({parts['total']:.4g}); lower --lr. The last checkpoint is kept."
        )
    optimizer.step()
    return parts


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: Any, device: torch.device, *, seed: int
) -> tuple[dict[str, float], int]:
    """Sum of each loss part over a split (full KL weight, fixed randomness) and the clip count.

    Returns sums rather than means so data-parallel ranks can all-reduce them before dividing.
    """
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    sums: dict[str, float] = {}
    count = 0
    for batch in loader:
        inputs, mask = split_batch(batch, model.modalities, device)
        out = training_loss(model, inputs, mask, step=FULL_KL_STEP, generator=generator)
        n = len(mask)
        for k, v in _as_floats(out.parts, out.total).items():
            sums[k] = sums.get(k, 0.0) + v * n
        count += n
    model.train(was_training)
    return sums, count


# -- the entry point -----------------------------------------------------------------------------
def train(
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    sampler_factory: SamplerFactory | None = None,
) -> Path:
    """Train a model on a dataset and write a run directory (see :mod:`edgevae.train.checkpoint`).

    Args:
        data_dir: dataset with ``train`` and ``val`` splits.
        out_dir: run directory to create (or to continue with ``resume``).
        model_config: the model; on resume it must equal the stored one.
        train_config: how to train; on resume only ``epochs``, ``device``, ``max_minutes`` and
            ``num_workers`` may differ from the stored one.
        resume: continue the run in ``out_dir`` from its last checkpoint.
        overwrite: replace an existing run in ``out_dir``.
        progress: called with a :class:`ProgressEvent` at start, every step, every epoch, end.
        sampler_factory: ``(train dataset, seed) -> sampler``; default :class:`SeededEpochSampler`.

    Returns:
        ``out_dir``.

    Raises:
        OutputExistsError: ``out_dir`` not empty without ``resume``/``overwrite``.
        CheckpointError: nothing to resume, or a corrupt/incompatible checkpoint.
        ConfigError: resume with a different configuration (names the keys), or bad device.
        ShapeError: the dataset's modalities do not match the run being resumed.
        DatasetError: a missing/corrupt dataset or one without train/val clips.
        NumericalError: a NaN/Inf loss (names the term and modality); checkpoints are kept.
    """
    out = Path(out_dir)
    cfg = train_config
    ckpt.check_out_dir(out, resume=resume, overwrite=overwrite)
    device = resolve_device(cfg.device)
    reader = open_dataset(data_dir, verify="size")
    data_info = _data_info(reader)
    state = _load_resume_state(out, reader, model_config, cfg, data_info) if resume else None
    fork = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork):  # the caller's global RNG stays untouched
        torch.manual_seed(cfg.seed)  # weight init and any in-model randomness
        model = build_model(reader.modalities, model_config).to(device)
        if not resume:
            ckpt.clear_run_dir(out)  # only now: every check above has passed
        run = _Run(out, reader, model, model_config, cfg, device, data_info)
        return _fit(run, state, progress or _ignore, sampler_factory or SeededEpochSampler)


def _ignore(event: ProgressEvent) -> None:
    del event


def _data_info(reader: DatasetReader) -> dict[str, Any]:
    for split in ("train", "val"):
        if len(reader.split(split)) == 0:
            raise DatasetError(f"dataset '{reader.path}' has no clips in its '{split}' split.")
    return {
        "path": str(Path(reader.path).resolve()),
        "index_sha256": sha256_file(Path(reader.path) / "index.json"),
        "train_clips": len(reader.split("train")),
        "val_clips": len(reader.split("val")),
    }


def _load_resume_state(
    out: Path,
    reader: DatasetReader,
    model_config: ModelConfig,
    cfg: TrainConfig,
    data_info: dict[str, Any],
) -> dict[str, Any]:
    """Load ``train_state.pt`` and refuse to resume anything but the same run on the same data."""
    state = ckpt.load_train_state(out)
    missing = [k for k in _STATE_KEYS if k not in state]
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


class _Run:
    """The state of one training run; :meth:`train_state` is exactly what a checkpoint holds."""

    def __init__(
        self,
        out: Path,
        reader: DatasetReader,
        model: nn.Module,
        model_config: ModelConfig,
        cfg: TrainConfig,
        device: torch.device,
        data_info: dict[str, Any],
    ) -> None:
        self.out, self.reader, self.model, self.device = out, reader, model, device
        self.model_config, self.cfg, self.data_info = model_config, cfg, data_info
        self.normalizer = Normalizer(reader.modalities, reader.normalization)
        self.optimizer = make_optimizer(model, cfg)
        self.generator = torch.Generator(device=device)  # the loss's subsets, dropout and noise
        self.generator.manual_seed(cfg.seed)
        self.best_model = copy.deepcopy(model)  # the kept (best validation) weights
        self.counters = _Counters()
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
        self.counters = _Counters(**state["counters"])
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
        return {**doc, **extra}

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


def _fit(
    run: _Run, state: dict[str, Any] | None, emit: ProgressFn, sampler_factory: SamplerFactory
) -> Path:
    cfg, c, model, device = run.cfg, run.counters, run.model, run.device
    if state is not None:
        try:
            run.restore(state)
        except (RuntimeError, KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"'{run.out / ckpt.TRAIN_STATE}' does not fit this model or edgevae version "
                f"({str(exc).strip().splitlines()[0]}); start a new run with --overwrite."
            ) from None
        c = run.counters
    sampler = ResumableSampler(
        sampler_factory(ClipDataset(run.reader.split("train"), run.normalizer), cfg.seed)
    )
    n_train = len(sampler.inner)  # type: ignore[arg-type]
    drop_last = n_train >= cfg.batch_size  # no tiny trailing batch (noisy steps)
    train_loader = make_loader(
        run.reader,
        "train",
        cfg.batch_size,
        normalizer=run.normalizer,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=cfg.num_workers,
    )
    val_loader = make_loader(run.reader, "val", cfg.eval_batch, normalizer=run.normalizer)
    steps_per_epoch = n_train // cfg.batch_size if drop_last else 1
    total_steps = cfg.epochs * steps_per_epoch
    clock = Clock(c, cfg, steps_per_epoch)

    where_from = f"resumed at epoch {c.epoch + 1} step {c.step_in_epoch}" if state else ""
    emit(
        clock.event(
            "start", message=where_from or f"training {run.n_params:,} parameters on {device}"
        )
    )
    stop_reason = "early_stopping" if run.patience_spent() else "epochs"
    model.train()
    while c.epoch < cfg.epochs and not run.patience_spent():
        if clock.out_of_time():  # spent during the last validation (already checkpointed)
            stop_reason = "time_budget"
            break
        # ---- one epoch (or the rest of one, after a mid-epoch resume) ----
        sampler.start_epoch(c.epoch, skip=c.step_in_epoch * cfg.batch_size)
        sums: dict[str, float] = {}
        seen, t_epoch, partial = 0, time.perf_counter(), False
        for batch in train_loader:
            inputs, mask = split_batch(batch, model.modalities, device)
            lr = learning_rate(c.global_step, total_steps, cfg)
            parts = train_step(
                model,
                run.optimizer,
                inputs,
                mask,
                step=c.global_step,
                lr=lr,
                grad_clip=cfg.grad_clip,
                generator=run.generator,
                where=f"epoch {c.epoch + 1} step {c.step_in_epoch + 1}",
            )
            c.global_step += 1
            c.step_in_epoch += 1
            seen += len(mask)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v * len(mask)
            rate = seen / max(time.perf_counter() - t_epoch, 1e-9)
            emit(clock.event("step", parts=parts, lr=lr, samples_per_s=rate))
            if clock.out_of_time():  # stop at this step boundary; the checkpoint below resumes
                partial = c.step_in_epoch < steps_per_epoch
                stop_reason = "time_budget"
                break
        seconds = time.perf_counter() - t_epoch
        # ---- validation, kept weights, early stopping, checkpoint ----
        val_sums, n_val = evaluate(model, val_loader, device, seed=cfg.seed + _VAL_SEED_OFFSET)
        val = {k: v / n_val for k, v in val_sums.items()}
        if not math.isfinite(val["total"]):
            raise NumericalError(
                f"validation loss became {val['total']} in epoch {c.epoch + 1}; lower --lr or "
                "check the val data. The last checkpoint is kept."
            )
        improved = run.record_validation(val["total"], partial)
        train_means = {k: v / max(seen, 1) for k, v in sums.items()}
        run.history.append(
            {
                "epoch": c.epoch + 1,
                "partial": partial,
                "steps": c.step_in_epoch,
                "train": train_means,
                "val": val,
                "lr": learning_rate(max(c.global_step - 1, 0), total_steps, cfg),
                "seconds": seconds,
                "samples_per_s": seen / max(seconds, 1e-9),
            }
        )
        epoch_event = clock.event(
            "epoch",
            parts=train_means,
            val_loss=val["total"],
            improved=improved,
            samples_per_s=run.history[-1]["samples_per_s"],
        )
        if not partial:
            c.epoch, c.step_in_epoch = c.epoch + 1, 0
        run.save()
        emit(epoch_event)  # after the checkpoint: an exception here loses nothing
        if stop_reason == "time_budget":
            break
        if run.patience_spent():
            stop_reason = "early_stopping"

    # ---- score statistics on normal validation data, with the kept weights ----
    stats, fit_info = fit_score_stats(
        run.best_model, run.reader, run.normalizer, device=device, batch_size=cfg.eval_batch
    )
    status = "stopped" if stop_reason == "time_budget" and c.epoch < cfg.epochs else "complete"
    final = run.meta(status, stats, stop_reason=stop_reason, score_fit=fit_info)
    ckpt.write_meta(run.out, final)
    write_manifest(
        run.out / ckpt.WEIGHTS,
        kind="checkpoint",
        config={"model": run.model_config.to_dict(), "train": cfg.to_dict()},
        inputs={"dataset_index": run.data_info["index_sha256"]},
        details={
            "parameters": run.n_params,
            "modalities": list(run.reader.modalities.names),
            "status": status,
            "stop_reason": stop_reason,
            "best": final["best"],
        },
        checks={"score_fit": fit_info},
    )
    emit(clock.event("done", message=f"{status} ({stop_reason.replace('_', ' ')})"))
    return run.out
