"""Data order for training: the injected sampler, seeded per epoch, resumable mid-epoch.

The trainer asks a ``SamplerFactory`` for the train sampler: ``(train dataset, seed) -> sampler``.
The default is :class:`SeededEpochSampler` for one process and :func:`distributed_factory` (a
``DistributedSampler`` over the same permutation) for data-parallel ranks. Either way the
trainer calls ``set_epoch(epoch)`` before every epoch, and the order depends only on
(seed, epoch), so resuming needs no sampler state: :class:`ResumableSampler` skips what the
interrupted epoch had already done.

Why N ranks with batch ``B / N`` see the batches of one process with batch ``B``: both shuffle
with the same permutation ``p``; rank r takes ``p[r::N]``, so at step k the ranks together hold
``p[k*B : (k+1)*B]``, exactly one process's batch k. After s steps, positions ``< s*B`` are done
whatever N is, which is why a mid-epoch resume may use another number of processes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

SamplerFactory = Callable[[Dataset, int], "Sampler[int]"]


class SeededEpochSampler(Sampler[int]):
    """A new random permutation each epoch, seeded by ``seed + epoch``.

    The single-process twin of ``DistributedSampler(shuffle=True, seed=seed)`` (the same
    permutation), so N ranks with batch b together see the batches of one process with batch N*b.
    """

    def __init__(self, data_source: Dataset, seed: int = 0) -> None:
        self.num_samples = len(data_source)  # type: ignore[arg-type]
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=g).tolist())

    def __len__(self) -> int:
        return self.num_samples


class ResumableSampler(Sampler[int]):
    """Wraps the injected sampler: forwards ``set_epoch`` and skips indices a resume already did.

    Args:
        inner: the sampler from the factory.
    """

    def __init__(self, inner: Sampler[int]) -> None:
        self.inner = inner
        self._skip = 0

    def start_epoch(self, epoch: int, skip: int = 0) -> None:
        """Prepare the next pass: epoch ``epoch``, dropping its first ``skip`` indices."""
        if hasattr(self.inner, "set_epoch"):
            self.inner.set_epoch(epoch)
        self._skip = skip

    def __iter__(self) -> Iterator[int]:
        skip, self._skip = self._skip, 0
        return itertools.islice(iter(self.inner), skip, None)

    def __len__(self) -> int:
        return max(len(self.inner) - self._skip, 0)  # type: ignore[arg-type]


def distributed_factory(rank: int, world_size: int) -> SamplerFactory:
    """The train sampler factory of rank ``rank`` of ``world_size``: ``DistributedSampler``
    with :class:`SeededEpochSampler`'s permutation, dropping the tail that does not divide
    evenly (no padding with repeated clips, so every rank takes the same number of steps).
    """

    def factory(dataset: Dataset, seed: int) -> Sampler[int]:
        return DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
        )

    return factory


class ShardSampler(Sampler[int]):
    """Rank ``rank``'s share of ``0..n-1`` in order (``rank, rank + N, ...``), without padding.

    For validation and other reductions: the shares of all ranks are disjoint and cover every
    index once, so summed results equal one process's.
    """

    def __init__(self, n: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = range(rank, n, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
