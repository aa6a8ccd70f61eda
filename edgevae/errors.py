"""Exceptions raised by the edgevae library.

Only ``edgevae.cli`` turns these into messages and exit codes; library code raises them with a
message that names the problem *and* the fix, in one line. Every subclass maps to exit code 2
(bad input) unless it overrides ``exit_code``.
"""

from __future__ import annotations


class EdgeVAEError(Exception):
    """Base class: a user-facing, one-line error. ``exit_code`` is what the CLI exits with."""

    exit_code: int = 2


class ConfigError(EdgeVAEError, ValueError):
    """An invalid option, preset, spec or configuration value."""


class DatasetError(EdgeVAEError):
    """A dataset directory that is missing, corrupt, incomplete or from an incompatible version."""


class MediaError(EdgeVAEError):
    """A camera, audio or motion file that is missing, unreadable, truncated or inconsistent."""


class CheckpointError(EdgeVAEError):
    """A model checkpoint that is missing, corrupt or incompatible."""


class ShapeError(EdgeVAEError, ValueError):
    """Inputs whose modalities, shapes or dtypes do not match what the model expects."""


class NumericalError(EdgeVAEError):
    """NaN or Inf where finite numbers are required (inputs, losses, outputs)."""


class ExportError(EdgeVAEError):
    """ONNX export or the checks that follow it failed."""


class ParityError(ExportError):
    """An exported or quantized artifact does not match its reference within tolerance."""


class CalibrationError(EdgeVAEError):
    """Calibration data that cannot be used (too few samples, wrong modalities or shapes)."""


class QuantizationError(EdgeVAEError):
    """Quantization could not produce a valid artifact."""


class EngineBuildError(EdgeVAEError):
    """A TensorRT engine build failed."""


class EngineMismatchError(EdgeVAEError):
    """An engine built for another TensorRT version, GPU or input profile."""


class MissingDependencyError(EdgeVAEError):
    """An optional dependency (TensorRT, cuda-python, nvcc, ...) is not installed here."""


class KernelError(EdgeVAEError):
    """A custom CUDA kernel that failed to compile, load or launch."""


class OutputExistsError(EdgeVAEError):
    """An output location that already holds something, without ``--overwrite``."""
