"""Optimization profiles: (min, opt, max) shapes per input from the batch triple.

Every exported graph has one dynamic axis, the leading ``batch``; every other dimension must be
fixed, and comes from the ONNX (or, equivalently, from the TensorRT network, where dynamic
dimensions read ``-1``). A graph exported with a fixed batch only accepts that batch.

Example:
    >>> p = profile_shapes({"cam0": ("batch", 8, 64, 64), "mask": (-1, 3)}, (1, 4, 16))
    >>> p["cam0"].max, p["mask"].opt
    ((16, 8, 64, 64), (4, 3))
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edgevae.errors import ConfigError, ExportError

Dim = int | str | None


@dataclass(frozen=True)
class ProfileShapes:
    """Shapes of one input for one optimization profile."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def _is_dynamic(d: Dim) -> bool:
    return d is None or isinstance(d, str) or (isinstance(d, int) and d < 0)


def profile_shapes(
    inputs: Mapping[str, Sequence[Dim]], batch: tuple[int, int, int]
) -> dict[str, ProfileShapes]:
    """One profile for every input: the leading (batch) dimension from ``batch``, the rest fixed.

    Args:
        inputs: input name -> dims; dynamic dims are a name (``"batch"``), None or negative.
        batch: (MIN, OPT, MAX).

    Raises:
        ExportError: a scalar input, or a dynamic dimension other than the leading one.
        ConfigError: a graph with a fixed batch that ``batch`` does not equal.
    """
    if not inputs:
        raise ExportError("the graph has no inputs; re-export it with `edgevae export`.")
    out: dict[str, ProfileShapes] = {}
    for name, dims in inputs.items():
        dims = tuple(dims)
        if not dims:
            raise ExportError(
                f"input '{name}' is a scalar; edgevae graphs take batched inputs: re-export."
            )
        rest = dims[1:]
        bad = [i + 1 for i, d in enumerate(rest) if _is_dynamic(d)]
        if bad:
            raise ExportError(
                f"input '{name}' has dynamic dimension(s) {bad} besides the batch "
                f"(shape {list(dims)}); TensorRT profiles here only vary the batch: re-export "
                "with fixed sample shapes."
            )
        fixed = tuple(int(d) for d in rest)  # type: ignore[arg-type]
        lead = dims[0]
        if not _is_dynamic(lead) and tuple(batch) != (lead, lead, lead):
            raise ConfigError(
                f"input '{name}' has a fixed batch of {lead}; build with --batch {lead},{lead},"
                f"{lead} or re-export with a dynamic batch (`edgevae export --batch dynamic`)."
            )
        lo, opt, hi = batch
        out[name] = ProfileShapes((lo, *fixed), (opt, *fixed), (hi, *fixed))
    return out


def onnx_input_dims(path: str | os.PathLike[str]) -> dict[str, tuple[Dim, ...]]:
    """Graph inputs (initializers excluded) of an ONNX file: name -> dims (str for symbolic).

    Raises:
        ExportError: when the file is not a readable ONNX model.
    """
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # DecodeError, OSError, ...
        raise ExportError(f"{path} is not a readable ONNX model ({exc}); re-export it.") from None
    inits = {i.name for i in model.graph.initializer}
    dims: dict[str, tuple[Dim, ...]] = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        shape = vi.type.tensor_type.shape
        dims[vi.name] = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in shape.dim
        )
    return dims


def shapes_flag(profiles: Mapping[str, ProfileShapes], which: str) -> str:
    """trtexec's ``name:1x8x64x64,mask:1x3`` form of one of ``min``/``opt``/``max``."""
    return ",".join(
        f"{name}:{'x'.join(str(d) for d in getattr(p, which))}" for name, p in profiles.items()
    )
