"""edgevae: train, analyse with, and deploy compact multimodal VAEs on edge devices.

Importing ``edgevae`` is cheap: torch, onnxruntime and TensorRT are imported by the functions that
need them.
"""

from edgevae._version import __version__
from edgevae.errors import EdgeVAEError
from edgevae.modalities import ModalityKind, ModalitySet, ModalitySpec

__all__ = ["EdgeVAEError", "ModalityKind", "ModalitySet", "ModalitySpec", "__version__"]
