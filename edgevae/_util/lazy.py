"""Lazy, optional imports with an install hint instead of a traceback."""

from __future__ import annotations

import importlib
from types import ModuleType

from edgevae.errors import MissingDependencyError

_HINTS = {
    "tensorrt": "TensorRT is not installed. On Jetson: `sudo apt install python3-libnvinfer` "
    "(JetPack); on a desktop GPU: install TensorRT from NVIDIA. Run `edgevae doctor` for details.",
    "cuda": "cuda-python is not installed: `pip install 'edgevae[cuda]'` (matching your CUDA).",
    "pycuda": "pycuda is not installed: `pip install 'edgevae[pycuda]'`.",
    "modelopt": "NVIDIA ModelOpt is not installed: `pip install 'edgevae[modelopt]'`.",
    "av": "PyAV is not installed: `pip install av`.",
}


def require(module: str) -> ModuleType:
    """Import and return ``module``, or raise MissingDependencyError with how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        hint = _HINTS.get(top, f"`pip install {top}`")
        raise MissingDependencyError(
            f"optional dependency '{module}' is missing ({exc}). {hint}"
        ) from None
