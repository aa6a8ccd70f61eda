"""The runner interface shared by every backend (Polygraphy-style: name-based I/O, numpy in/out)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from edgevae.errors import ShapeError


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape and dtype of a graph input or output; symbolic dims are strings (``"batch"``)."""

    name: str
    shape: tuple[int | str, ...]
    dtype: np.dtype


@runtime_checkable
class Runner(Protocol):
    """Runs one artifact. ``run`` takes and returns numpy arrays keyed by tensor name.

    Implementations: ``TorchRunner`` (nn.Module), ``OrtRunner`` (ONNX Runtime), ``TrtRunner``
    (TensorRT engine). Heavy imports happen in their constructors, never at module import.
    """

    name: str

    @property
    def inputs(self) -> dict[str, TensorInfo]: ...

    @property
    def outputs(self) -> dict[str, TensorInfo]: ...

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def check_feed(feed: dict[str, np.ndarray], inputs: dict[str, TensorInfo], runner: str) -> None:
    """Raise ShapeError unless ``feed`` has exactly the runner's inputs with matching ranks,
    fixed dims and dtypes (one line naming the tensor and what to change)."""
    missing = [n for n in inputs if n not in feed]
    extra = [n for n in feed if n not in inputs]
    if missing or extra:
        raise ShapeError(
            f"{runner}: inputs do not match the model: missing {missing}, unexpected {extra}; "
            f"the model takes {list(inputs)}."
        )
    for name, info in inputs.items():
        x = feed[name]
        if x.ndim != len(info.shape) or any(
            isinstance(d, int) and d != s for d, s in zip(info.shape, x.shape, strict=False)
        ):
            raise ShapeError(
                f"{runner}: input '{name}' has shape {tuple(x.shape)}, the model expects "
                f"{tuple(info.shape)}."
            )
        if x.dtype != info.dtype:
            raise ShapeError(
                f"{runner}: input '{name}' has dtype {x.dtype}, the model expects {info.dtype}; "
                f"convert with .astype(np.{info.dtype})."
            )
