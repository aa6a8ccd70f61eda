"""Data order for training: the injected sampler, seeded per epoch, resumable mid-epoch.

The trainer asks a ``SamplerFactory`` for the train sampler: ``(train dataset, seed) -> sampler``.
The default is :class:`SeededEpochSampler`; data-parallel training injects
``lambda ds, seed: DistributedSampler(ds, shuffle=True, seed=seed)`` instead. Either way the
trainer calls ``set_epoch(epoch)`` before every epoch, and the order depends only on
(seed, epoch), so resuming needs no sampler state: :class:`ResumableSampler` skips what the
interrupted epoch had already done.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import torch
from torch.utils.data import Dataset, Sampler

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
