"""Data-parallel training on PyTorch's own engine: torchrun + DistributedDataParallel.

Launch one process per rank with torchrun (it sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``); ``edgevae train --nproc N`` runs the first line for you::

    torchrun --standalone --nproc-per-node 2 -m edgevae train --data D --out R --batch-size 64
    edgevae train --nproc 2 --data D --out R --batch-size 64

What every rank does (:func:`edgevae.train.train` calls :func:`setup` when it finds torchrun's
variables): build the same seeded model, wrap it in ``DistributedDataParallel`` (gradients are
averaged over ranks during ``backward``), read its share of every global batch through a
``DistributedSampler`` (``--batch-size`` is the global batch; each rank takes ``B / N``), and
all-reduce the loss parts, the validation sums and the time-budget flag, so all ranks take the
same decisions (NaN stop, early stopping, budget stop) and no rank waits forever for another.
Rank 0 alone reads the checkpoint to resume (and shares it), writes checkpoints and the final
run directory, and reports progress. gloo serves CPUs, NCCL CUDA GPUs (rank k uses
``cuda:LOCAL_RANK``).

The loss's random draws (subsets, modality dropout, ``eps``) at step s on rank r come from a
generator seeded with ``(seed, s, r)``, so a resumed run repeats them exactly, on any number of
processes, and ranks never share draws.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as tdist
from torch import Tensor, nn

from edgevae import errors
from edgevae.errors import ConfigError, EdgeVAEError
from edgevae.model.losses import LossOutput, training_loss

T = TypeVar("T")
ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class LaunchInfo:
    """Where this process sits in a torchrun job (a plain process is rank 0 of a world of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LaunchInfo:
        """Read torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (absent: a single process).

        Raises:
            ConfigError: the variables are set but not valid integers.
        """
        env = os.environ if env is None else env
        if "WORLD_SIZE" not in env:
            return cls()
        try:
            world = int(env["WORLD_SIZE"])
            rank = int(env.get("RANK", "0"))
            local = int(env.get("LOCAL_RANK", str(rank)))
        except ValueError:
            values = {k: env.get(k) for k in ENV_VARS}
            raise ConfigError(
                f"torchrun environment variables are not integers ({values}); launch with "
                "`torchrun` or `edgevae train --nproc N`, or unset them."
            ) from None
        if world < 1 or not 0 <= rank < world or local < 0:
            raise ConfigError(
                f"inconsistent torchrun environment: RANK={rank} WORLD_SIZE={world} "
                f"LOCAL_RANK={local}; launch with `torchrun` or unset these variables."
            )
        return cls(rank, world, local)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


# -- checks shared by the launcher (--nproc) and the ranks -----------------------------------------
def check_nproc(nproc: int) -> int:
    """``--nproc`` value check.

    Raises:
        ConfigError: ``nproc`` < 1.
    """
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ConfigError(
            f"--nproc must be a positive number of processes, got {nproc!r}; use --nproc 1 "
            "for one process or --nproc N for N data-parallel processes."
        )
    return nproc


def local_batch(global_batch: int, world_size: int) -> int:
    """The per-process batch of a global batch split over ``world_size`` processes.

    Raises:
        ConfigError: ``global_batch`` is not a multiple of ``world_size`` (names the nearest fix).
    """
    if global_batch % world_size:
        lower = global_batch // world_size * world_size
        fixes = [b for b in (lower, lower + world_size) if b > 0]
        options = " or ".join(f"--batch-size {b} ({b // world_size} per process)" for b in fixes)
        raise ConfigError(
            f"the global batch size {global_batch} does not divide evenly over {world_size} "
            f"processes; use {options}, or a process count that divides {global_batch}."
        )
    return global_batch // world_size


def rank_device(name: str, info: LaunchInfo) -> torch.device:
    """The device of this rank: ``cpu``, or ``cuda:LOCAL_RANK`` for ``auto``/``cuda`` with GPUs.

    Raises:
        ConfigError: ``cuda:N`` with several processes (they would share one GPU), CUDA
            requested without GPUs, or fewer GPUs than processes on this node.
    """
    from edgevae.train.config import resolve_device

    if not info.distributed:
        return resolve_device(name)
    if name.startswith("cuda:"):
        raise ConfigError(
            f"--device {name} would put all {info.world_size} processes on one GPU; use "
            "--device cuda (process k uses cuda:LOCAL_RANK) or CUDA_VISIBLE_DEVICES."
        )
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    resolve_device("cuda")  # raises when CUDA is unavailable
    if info.local_rank >= torch.cuda.device_count():
        raise ConfigError(
            f"process with LOCAL_RANK {info.local_rank} has no GPU: this node has "
            f"{torch.cuda.device_count()}; start at most that many processes per node or use "
            "--device cpu."
        )
    return torch.device("cuda", info.local_rank)


def resolve_backend(backend: str, device: torch.device) -> str:
    """``auto`` -> ``nccl`` on CUDA, ``gloo`` on CPU; checks that the choice can work here.

    Raises:
        ConfigError: NCCL requested for CPU training or without an NCCL-enabled PyTorch.
    """
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        if device.type != "cuda":
            raise ConfigError(
                "backend 'nccl' needs CUDA GPUs but this run trains on the CPU; use --backend "
                "gloo (or auto) for CPU training, or --device cuda on a machine with GPUs."
            )
        if not (tdist.is_available() and tdist.is_nccl_available()):
            raise ConfigError(
                f"this PyTorch ({torch.__version__}) has no NCCL; use --backend gloo or install "
                "a CUDA build of torch."
            )
    return backend


def step_seed(seed: int, step: int, rank: int) -> int:
    """Seed of the loss's random draws at optimiser step ``step`` on rank ``rank``."""
    state = np.random.SeedSequence([seed, step, rank]).generate_state(1, np.uint64)[0]
    return int(state) & (2**63 - 1)


# -- the per-run communication context -------------------------------------------------------------
class Dist:
    """The collectives the trainer needs; a world of one runs them as no-ops.

    Args:
        info: this process's rank and world size.
        device: this rank's device.
        backend: ``gloo`` or ``nccl`` (unused for one process).
        owns_group: :meth:`close` destroys the process group (it was created by :func:`setup`).
    """

    def __init__(
        self,
        info: LaunchInfo,
        device: torch.device,
        backend: str = "gloo",
        *,
        owns_group: bool = False,
    ) -> None:
        self.info, self.device, self.backend, self.owns_group = info, device, backend, owns_group
        # gloo reduces CPU tensors, NCCL CUDA tensors
        self.comm_device = device if backend == "nccl" else torch.device("cpu")

    @property
    def rank(self) -> int:
        return self.info.rank

    @property
    def world_size(self) -> int:
        return self.info.world_size

    @property
    def distributed(self) -> bool:
        return self.info.distributed

    @property
    def is_main(self) -> bool:
        """Rank 0: resumes, checkpoints, reports."""
        return self.info.rank == 0

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary recorded in the run directory."""
        return {
            "world_size": self.world_size,
            "backend": self.backend if self.distributed else None,
        }

    def all_sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over ranks (float64)."""
        if not self.distributed:
            return [float(v) for v in values]
        t = torch.tensor(list(values), dtype=torch.float64, device=self.comm_device)
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
        return t.cpu().tolist()

    def mean_parts(self, parts: Mapping[str, float]) -> dict[str, float]:
        """Mean of each loss part over ranks (equal local batches: the global batch mean)."""
        keys = list(parts)
        sums = self.all_sum([parts[k] for k in keys])
        return {k: v / self.world_size for k, v in zip(keys, sums, strict=True)}

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any (one decision for all ranks)."""
        return self.all_sum([1.0 if flag else 0.0])[0] > 0 if self.distributed else bool(flag)

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only and give its result to every rank.

        An :class:`EdgeVAEError` raised by ``fn`` is raised on every rank with the same type and
        message (so all ranks stop cleanly instead of waiting for rank 0); any other exception
        becomes a ``RuntimeError`` on the other ranks.
        """
        if not self.distributed:
            return fn()
        payload: list[Any] = [None]
        failure: BaseException | None = None
        if self.is_main:
            try:
                payload[0] = ("ok", fn())
            except EdgeVAEError as exc:
                payload[0], failure = ("error", type(exc).__name__, str(exc)), exc
            except BaseException as exc:
                payload[0], failure = ("crash", f"{type(exc).__name__}: {exc}"), exc
        tdist.broadcast_object_list(payload, src=0, device=self.comm_device)
        if failure is not None:
            raise failure
        kind, *rest = payload[0]
        if kind == "ok":
            return rest[0]
        if kind == "error":
            cls = getattr(errors, rest[0], None)
            if not (isinstance(cls, type) and issubclass(cls, EdgeVAEError)):
                cls = EdgeVAEError
            raise cls(rest[1])
        raise RuntimeError(f"rank 0 failed: {rest[0]}")

    def wrap(self, module: nn.Module) -> nn.Module:
        """``DistributedDataParallel(module)`` for several ranks; ``module`` itself for one."""
        if not self.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        # no buffers to sync every forward (no BatchNorm; the model's buffers are constants);
        # (newer torch renamed the switch)
        params = inspect.signature(DistributedDataParallel.__init__).parameters
        key = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
        return DistributedDataParallel(module, device_ids=ids, **{key: False})

    def close(self) -> None:
        """Destroy the process group if :func:`setup` created it."""
        if self.owns_group and tdist.is_initialized():
            tdist.destroy_process_group()
            self.owns_group = False


class LossModule(nn.Module):
    """``forward`` computes the training loss of ``model``: the module DDP wraps (DDP's gradient
    hooks are armed by ``forward``, and the loss calls the model's submodules directly)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, inputs: dict[str, Tensor], mask: Tensor, step: int, generator: torch.Generator
    ) -> LossOutput:
        return training_loss(self.model, inputs, mask, step=step, generator=generator)


def setup(device: str, backend: str, info: LaunchInfo | None = None) -> Dist:
    """The communication context of this process; joins the process group under torchrun.

    Args:
        device: the configured device name (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
        backend: ``auto``, ``gloo`` or ``nccl``.
        info: rank and world size (default: from torchrun's environment variables).

    Raises:
        ConfigError: see :func:`rank_device` and :func:`resolve_backend`.
    """
    info = info or LaunchInfo.from_env()
    dev = rank_device(device, info)
    chosen = resolve_backend(backend, dev)
    if not info.distributed:
        return Dist(info, dev, chosen)
    if not tdist.is_available():  # pragma: no cover - every Linux build has torch.distributed
        raise ConfigError(
            f"this PyTorch ({torch.__version__}) was built without torch.distributed; train in "
            "one process (no torchrun, no --nproc) or install an official torch build."
        )
    if tdist.is_initialized():  # the caller already joined a group: use it, leave it to them
        if tdist.get_world_size() != info.world_size or tdist.get_rank() != info.rank:
            raise ConfigError(
                "the initialised process group does not match RANK/WORLD_SIZE; launch with "
                "torchrun and let edgevae create the group."
            )
        return Dist(info, dev, tdist.get_backend(), owns_group=False)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    tdist.init_process_group(chosen, rank=info.rank, world_size=info.world_size)
    return Dist(info, dev, chosen, owns_group=True)


# -- launching (edgevae train --nproc N) -----------------------------------------------------------
def torchrun_command(nproc: int, train_args: Sequence[str]) -> list[str]:
    """The single-node torchrun command line running ``edgevae train`` on ``nproc`` processes."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "edgevae",
        "train",
        *train_args,
    ]


def child_environment(nproc: int, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for the ranks: the cores shared out (``OMP_NUM_THREADS``) unless set."""
    env = dict(os.environ if env is None else env)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return env
