"""PyTorch access to a dataset split: streams clips from memory-mapped shards, normalised.

Each batch is a dict::

    {<modality>: float32 (B, *shape), "mask": float32 (B, M), "frame_labels": uint8 (B, L),
     "anomaly": int64 (B,) clip label (most frequent non-normal frame label, 0 if none),
     "video_id": int64 (B,), "clip_index": int64 (B,)}

Batches are fetched with one vectorised read per shard (``__getitems__``), so the Python cost per
sample stays small, and memory is bounded by the batch size whatever the dataset size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from edgevae.data.format import DatasetReader, SplitReader
from edgevae.data.transforms import Normalizer


def clip_labels(frame_labels: np.ndarray) -> np.ndarray:
    """(B, L) per-frame type ids -> (B,) the most frequent non-normal id per clip (0 if none)."""
    n_types = int(frame_labels.max(initial=0)) + 1
    counts = np.zeros((len(frame_labels), max(n_types, 1)), np.int64)
    for t in range(1, n_types):
        counts[:, t] = (frame_labels == t).sum(axis=1)
    return counts.argmax(axis=1) if n_types > 1 else np.zeros(len(frame_labels), np.int64)


class ClipDataset(Dataset):
    """A normalised view of one split, fetching whole batches at once.

    Args:
        split: the split reader.
        normalizer: the statistics to apply (usually from the train split / checkpoint).
    """

    def __init__(self, split: SplitReader, normalizer: Normalizer):
        self.split = split
        self.normalizer = normalizer

    def __len__(self) -> int:
        return len(self.split)

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        raw = self.split.read(np.asarray(indices, dtype=np.int64))
        batch = {k: torch.from_numpy(v) for k, v in self.normalizer.batch(raw).items()}
        batch["frame_labels"] = torch.from_numpy(np.ascontiguousarray(raw["frame_labels"]))
        batch["anomaly"] = torch.from_numpy(clip_labels(raw["frame_labels"]))
        batch["video_id"] = torch.from_numpy(raw["video_id"].astype(np.int64))
        batch["clip_index"] = torch.from_numpy(raw["clip_index"].astype(np.int64))
        return batch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}


def _passthrough(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return batch


def make_loader(
    reader: DatasetReader,
    split: str,
    batch_size: int,
    *,
    normalizer: Normalizer | None = None,
    shuffle: bool = False,
    seed: int = 0,
    sampler: Sampler[int] | Iterable[int] | None = None,
    drop_last: bool = False,
    num_workers: int = 0,
) -> DataLoader:
    """A DataLoader over ``split`` yielding the batch dicts described in the module docstring.

    Args:
        reader: an open dataset.
        split: ``train``, ``val`` or ``test``.
        batch_size: clips per batch (per process when a distributed sampler is injected).
        normalizer: statistics to apply; default: the dataset's own (train split).
        shuffle: random order, seeded by ``seed`` (ignored when ``sampler`` is given).
        seed: shuffling seed (same seed -> same order).
        sampler: inject a sampler (e.g. ``DistributedSampler``) instead of the default one.
        drop_last: drop a final incomplete batch.
        num_workers: DataLoader worker processes.
    """
    dataset = ClipDataset(
        reader.split(split), normalizer or Normalizer(reader.modalities, reader.normalization)
    )
    if sampler is None:
        if shuffle:
            gen = torch.Generator().manual_seed(seed)
            sampler = RandomSampler(dataset, generator=gen)
        else:
            sampler = SequentialSampler(dataset)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=drop_last,
        collate_fn=_passthrough,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
