"""Datasets: the on-disk format, readers, the PyTorch loader, the synthetic benchmark and ingest.

Importing this package does not import torch; :mod:`edgevae.data.loader` does.
"""

from edgevae.data.arrays import from_arrays
from edgevae.data.format import FORMAT_VERSION, DatasetReader, DatasetWriter, open_dataset
from edgevae.data.transforms import Normalizer

__all__ = [
    "FORMAT_VERSION",
    "DatasetReader",
    "DatasetWriter",
    "Normalizer",
    "from_arrays",
    "open_dataset",
]
