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

Data-parallel (see :mod:`edgevae.train.distributed`): under torchrun every rank runs this same
loop with a ``DistributedSampler``, ``batch_size / N`` clips per step and the loss wrapped in
DistributedDataParallel; loss parts, validation sums and the time-budget flag are all-reduced so
every rank decides alike, and rank 0 alone resumes (sharing the state), checkpoints and reports.

Randomness lives in explicit generators: the loss draws from one reseeded every step from
(seed, step, rank), validation from a fixed seed, and the global torch RNG is forked (the
caller's RNG is untouched), so a resumed run continues bit-identically on the CPU.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from edgevae._util.artifacts import write_manifest
from edgevae.data.format import DatasetReader, open_dataset
from edgevae.data.loader import ClipDataset, make_loader
from edgevae.errors import CheckpointError, DatasetError, NumericalError
from edgevae.modalities import ModalitySet
from edgevae.model.config import ModelConfig
from edgevae.model.losses import training_loss
from edgevae.model.vae import build_model
from edgevae.train import checkpoint as ckpt
from edgevae.train.config import TrainConfig
from edgevae.train.distributed import Dist, LossModule, local_batch, setup, step_seed
from edgevae.train.progress import Clock, ProgressEvent, ProgressFn
from edgevae.train.run_state import RunState, describe_data, load_resume_state
from edgevae.train.sampling import (
    ResumableSampler,
    SamplerFactory,
    SeededEpochSampler,
    ShardSampler,
    distributed_factory,
)
from edgevae.train.score_fit import fit_score_stats

# Validation loss is measured at the full KL weight, past any warm-up, so epochs compare fairly.
FULL_KL_STEP = 10**9
_VAL_SEED_OFFSET = 1_000_003  # validation randomness: fixed per run, independent of training


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
    forward: nn.Module | None = None,
    reduce: Callable[[dict[str, float]], dict[str, float]] | None = None,
) -> dict[str, float]:
    """One optimiser step; returns the loss parts as floats (``total`` first).

    Args:
        forward: computes the loss (a DDP-wrapped :class:`LossModule` under data-parallel);
            default: ``training_loss(model, ...)``.
        reduce: combines the loss parts over ranks before the NaN check (so every rank decides
            alike); default: this process's parts.

    Raises:
        NumericalError: a NaN/Inf loss term or gradient; the weights are left untouched.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    if forward is None:
        out = training_loss(model, inputs, mask, step=step, generator=generator)
    else:
        out = forward(inputs, mask, step, generator)
    parts = _as_floats(out.parts, out.total)
    if reduce is not None:
        parts = reduce(parts)
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
    dist: Dist | None = None,
) -> Path:
    """Train a model on a dataset and write a run directory (see :mod:`edgevae.train.checkpoint`).

    Under torchrun (``RANK``/``WORLD_SIZE`` set) every rank calls this and the run is
    data-parallel (:mod:`edgevae.train.distributed`); it returns on every rank once rank 0 has
    written the final run directory.

    Args:
        data_dir: dataset with ``train`` and ``val`` splits.
        out_dir: run directory to create (or to continue with ``resume``).
        model_config: the model; on resume it must equal the stored one.
        train_config: how to train; on resume only ``epochs``, ``device``, ``max_minutes``,
            ``num_workers`` and ``backend`` may differ from the stored one. ``batch_size`` is the
            global batch; a run may resume on another number of processes.
        resume: continue the run in ``out_dir`` from its last checkpoint.
        overwrite: replace an existing run in ``out_dir``.
        progress: called with a :class:`ProgressEvent` at start, every step, every epoch, end
            (on rank 0 only).
        sampler_factory: ``(train dataset, seed) -> sampler``; default :class:`SeededEpochSampler`
            (one process) or a ``DistributedSampler`` (each rank).
        dist: communication context (default: :func:`~edgevae.train.distributed.setup` from the
            environment, torn down on return).

    Returns:
        ``out_dir``.

    Raises:
        OutputExistsError: ``out_dir`` not empty without ``resume``/``overwrite``.
        CheckpointError: nothing to resume, or a corrupt/incompatible checkpoint.
        ConfigError: resume with a different configuration (names the keys), bad device or
            backend, or a global batch that does not divide over the processes.
        ShapeError: the dataset's modalities do not match the run being resumed.
        DatasetError: a missing/corrupt dataset or one without train/val clips.
        NumericalError: a NaN/Inf loss (names the term and modality); checkpoints are kept.
    """
    own = dist is None
    if dist is None:
        dist = setup(train_config.device, train_config.backend)
    try:
        return _train(
            Path(data_dir),
            Path(out_dir),
            model_config,
            train_config,
            resume=resume,
            overwrite=overwrite,
            progress=progress if dist.is_main and progress else _ignore,
            sampler_factory=sampler_factory,
            dist=dist,
        )
    finally:
        if own:
            dist.close()


def _train(
    data_dir: Path,
    out: Path,
    model_config: ModelConfig,
    cfg: TrainConfig,
    *,
    resume: bool,
    overwrite: bool,
    progress: ProgressFn,
    sampler_factory: SamplerFactory | None,
    dist: Dist,
) -> Path:
    local_batch(cfg.batch_size, dist.world_size)  # raises before anything else on every rank
    opened: dict[str, DatasetReader] = {}

    def prepare() -> tuple[dict[str, Any], dict[str, Any] | None]:
        # rank 0 checks everything before anything is written; the others get its verdict
        ckpt.check_out_dir(out, resume=resume, overwrite=overwrite)
        opened["reader"] = reader = open_dataset(data_dir, verify="size")
        data_info = describe_data(reader, dist.world_size)
        state = load_resume_state(out, reader, model_config, cfg, data_info) if resume else None
        return data_info, state

    data_info, state = dist.on_main(prepare)
    reader = opened.get("reader") or open_dataset(data_dir, verify="size")
    if not dist.is_main and describe_data(reader)["index_sha256"] != data_info["index_sha256"]:
        raise DatasetError(
            f"rank {dist.rank} reads a different dataset at '{data_dir}' than rank 0 (index.json "
            "differs); give every node the same dataset."
        )
    device = dist.device
    if sampler_factory is None:
        sampler_factory = (
            distributed_factory(dist.rank, dist.world_size)
            if dist.distributed
            else SeededEpochSampler
        )
    fork = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork):  # the caller's global RNG stays untouched
        torch.manual_seed(cfg.seed)  # weight init and any in-model randomness
        model = build_model(reader.modalities, model_config).to(device)
        if not resume and dist.is_main:
            ckpt.clear_run_dir(out)  # only now: every check above has passed
        run = RunState(out, reader, model, model_config, cfg, dist, data_info)
        return _fit(run, state, progress, sampler_factory)


def _ignore(event: ProgressEvent) -> None:
    del event


def _fit(
    run: RunState, state: dict[str, Any] | None, emit: ProgressFn, sampler_factory: SamplerFactory
) -> Path:
    cfg, c, model, device, dist = run.cfg, run.counters, run.model, run.device, run.dist
    if state is not None:
        try:
            run.restore(state)
        except (RuntimeError, KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"'{run.out / ckpt.TRAIN_STATE}' does not fit this model or edgevae version "
                f"({str(exc).strip().splitlines()[0]}); start a new run with --overwrite."
            ) from None
        c = run.counters
    forward = dist.wrap(LossModule(model))  # DDP after restore: every rank starts alike
    batch = local_batch(cfg.batch_size, dist.world_size)  # this process's share of a step
    sampler = ResumableSampler(
        sampler_factory(ClipDataset(run.reader.split("train"), run.normalizer), cfg.seed)
    )
    n_train = len(sampler.inner)  # type: ignore[arg-type]
    drop_last = n_train >= batch  # no tiny trailing batch (noisy steps)
    train_loader = make_loader(
        run.reader,
        "train",
        batch,
        normalizer=run.normalizer,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=cfg.num_workers,
    )
    n_val = len(run.reader.split("val"))
    val_loader = make_loader(
        run.reader,
        "val",
        -(-cfg.eval_batch // dist.world_size),
        normalizer=run.normalizer,
        sampler=ShardSampler(n_val, dist.rank, dist.world_size),
    )
    steps_per_epoch = n_train // batch if drop_last else 1
    total_steps = cfg.epochs * steps_per_epoch
    clock = Clock(c, cfg, steps_per_epoch)

    def out_of_time() -> bool:  # one decision for all ranks
        return clock.deadline is not None and dist.any(clock.out_of_time())

    emit(clock.event("start", message=_start_message(run, state)))
    stop_reason = "early_stopping" if run.patience_spent() else "epochs"
    model.train()
    while c.epoch < cfg.epochs and not run.patience_spent():
        if out_of_time():  # spent during the last validation (already checkpointed)
            stop_reason = "time_budget"
            break
        # ---- one epoch (or the rest of one, after a mid-epoch resume) ----
        sampler.start_epoch(c.epoch, skip=c.step_in_epoch * batch)
        sums: dict[str, float] = {}
        seen, t_epoch, partial = 0, time.perf_counter(), False
        for local in train_loader:
            inputs, mask = split_batch(local, model.modalities, device)
            lr = learning_rate(c.global_step, total_steps, cfg)
            run.generator.manual_seed(step_seed(cfg.seed, c.global_step, dist.rank))
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
                forward=forward,
                reduce=dist.mean_parts if dist.distributed else None,
            )
            c.global_step += 1
            c.step_in_epoch += 1
            n = len(mask) * dist.world_size  # clips in this global step
            seen += n
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v * n
            rate = seen / max(time.perf_counter() - t_epoch, 1e-9)
            emit(clock.event("step", parts=parts, lr=lr, samples_per_s=rate))
            if out_of_time():  # stop at this step boundary; the checkpoint below resumes
                partial = c.step_in_epoch < steps_per_epoch
                stop_reason = "time_budget"
                break
        seconds = time.perf_counter() - t_epoch
        # ---- validation (summed over ranks), kept weights, early stopping, checkpoint ----
        val = _validate(run, val_loader)
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
                "world_size": dist.world_size,
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
        if dist.is_main:
            run.save()
        emit(epoch_event)  # after the checkpoint: an exception here loses nothing
        if stop_reason == "time_budget":
            break
        if run.patience_spent():
            stop_reason = "early_stopping"

    status = "stopped" if stop_reason == "time_budget" and c.epoch < cfg.epochs else "complete"
    dist.on_main(lambda: _finish(run, status, stop_reason))  # all ranks return once it is written
    emit(clock.event("done", message=f"{status} ({stop_reason.replace('_', ' ')})"))
    return run.out


def _start_message(run: RunState, state: dict[str, Any] | None) -> str:
    c, dist = run.counters, run.dist
    procs = f", {dist.world_size} processes ({dist.backend})" if dist.distributed else ""
    if state is None:
        return f"training {run.n_params:,} parameters on {run.device}{procs}"
    message = f"resumed at epoch {c.epoch + 1} step {c.step_in_epoch}{procs}"
    before = (state.get("distributed") or {}).get("world_size", 1)
    if before != dist.world_size:
        message += (
            f"; the checkpoint was written by {before} process(es), the global batch "
            f"{run.cfg.batch_size} is unchanged"
        )
    return message


def _validate(run: RunState, loader: Any) -> dict[str, float]:
    """Mean validation loss parts over the whole split (each rank sums its share)."""
    seed = run.cfg.seed + _VAL_SEED_OFFSET + run.dist.rank
    sums, count = evaluate(run.model, loader, run.device, seed=seed)
    keys = sorted(sums)  # the same on every rank: every rank holds >= 1 val clip
    totals = run.dist.all_sum([sums[k] for k in keys] + [count])
    return {k: v / totals[-1] for k, v in zip(keys, totals, strict=False)}


def _finish(run: RunState, status: str, stop_reason: str) -> None:
    """Rank 0: score statistics on normal validation data (kept weights), final files."""
    stats, fit_info = fit_score_stats(
        run.best_model,
        run.reader,
        run.normalizer,
        device=run.device,
        batch_size=run.cfg.eval_batch,
        combine=run.cfg.score_combine,
    )
    final = run.meta(status, stats, stop_reason=stop_reason, score_fit=fit_info)
    ckpt.write_meta(run.out, final)
    write_manifest(
        run.out / ckpt.WEIGHTS,
        kind="checkpoint",
        config={"model": run.model_config.to_dict(), "train": run.cfg.to_dict()},
        inputs={"dataset_index": run.data_info["index_sha256"]},
        details={
            "parameters": run.n_params,
            "modalities": list(run.reader.modalities.names),
            "status": status,
            "stop_reason": stop_reason,
            "best": final["best"],
            "distributed": run.dist.describe(),
        },
        checks={"score_fit": fit_info},
    )
