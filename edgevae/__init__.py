"""edgevae: train, analyse with, and deploy compact multimodal VAEs on edge devices.

Importing ``edgevae`` is cheap: torch, onnxruntime and TensorRT are imported by the functions that
need them.
"""

from edgevae._version import __version__
from edgevae.errors import EdgeVAEError
from edgevae.modalities import ModalityKind, ModalitySet, ModalitySpec

__all__ = [
    "Analyzer",
    "EdgeVAEError",
    "ModalityKind",
    "ModalitySet",
    "ModalitySpec",
    "__version__",
    "load",
]


def __getattr__(name: str) -> object:
    # ``edgevae.load`` imports torch on first use only, so ``import edgevae`` stays light.
    if name == "load":
        from edgevae.api import load

        return load
    if name == "Analyzer":  # the streaming analyzer; imports its backend when constructed
        from edgevae.analyze.analyzer import Analyzer

        return Analyzer
    raise AttributeError(f"module 'edgevae' has no attribute {name!r}")
