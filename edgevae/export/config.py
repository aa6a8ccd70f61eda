"""Export settings: which graphs, the ONNX opset (chosen once, here) and the batch axis.

``OPSET`` is the one place the opset is chosen: 17 is the lowest opset every part of the
toolchain needs (LayerNormalization-free graphs, Resize-13 semantics, ORT's QDQ per-channel
support, TensorRT 10.3 on JetPack 6 parses up to 20), and the highest that the FP16 converter and
ORT's quantizer handle without opset bumps. ``--opset`` may pick another in
[``MIN_OPSET``, ``MAX_OPSET``].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from edgevae._util.choices import check_choice
from edgevae.errors import ConfigError

OPSET = 17
MIN_OPSET, MAX_OPSET = 17, 21
GRAPHS = ("analyze", "encode", "decode")
DYNAMIC = "dynamic"


def parse_batch(value: str | int) -> str | int:
    """``"dynamic"`` or a positive integer from a CLI string.

    Raises:
        ConfigError: anything else.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        batch: str | int = value
    elif isinstance(value, str) and value.strip().lower() == DYNAMIC:
        return DYNAMIC
    elif isinstance(value, str) and value.strip().isdigit():
        batch = int(value.strip())
    else:
        raise ConfigError(f"batch must be 'dynamic' or a positive integer, got {value!r}.")
    if not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"batch must be 'dynamic' or a positive integer, got {value!r}.")
    return batch


def parse_graphs(value: str | Iterable[str]) -> tuple[str, ...]:
    """``"analyze,encode"`` (or a list) -> validated, de-duplicated graph names in given order.

    Raises:
        ConfigError: an empty list or an unknown name (closest one suggested).
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    names: list[str] = []
    for item in items:
        name = str(item).strip()
        if not name:
            continue
        check_choice(name, GRAPHS, "graph")
        if name not in names:
            names.append(name)
    if not names:
        raise ConfigError(f"no graphs to export; pick from {', '.join(GRAPHS)}.")
    return tuple(names)


@dataclass(frozen=True)
class ExportConfig:
    """What ``edgevae export`` writes and how it checks it.

    Args:
        graphs: subset of ``analyze``, ``encode``, ``decode``.
        opset: ONNX opset (default :data:`OPSET`).
        batch: ``"dynamic"`` (a symbolic ``batch`` axis) or a fixed batch size.
        parity_seed: seed of the random parity inputs.
        parity_rows: rows per mask pattern in the parity check.
    """

    graphs: tuple[str, ...] = GRAPHS
    opset: int = OPSET
    batch: str | int = DYNAMIC
    parity_seed: int = 0
    parity_rows: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "graphs", parse_graphs(self.graphs))
        object.__setattr__(self, "batch", parse_batch(self.batch))
        if (
            isinstance(self.opset, bool)
            or not isinstance(self.opset, int)
            or not MIN_OPSET <= self.opset <= MAX_OPSET
        ):
            raise ConfigError(
                f"opset must be an integer in [{MIN_OPSET}, {MAX_OPSET}], got {self.opset!r}; "
                f"the default is {OPSET}."
            )
        for name in ("parity_seed", "parity_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be a non-negative integer, got {value!r}.")
        if self.parity_rows < 1:
            raise ConfigError("parity_rows must be >= 1.")

    @property
    def dynamic(self) -> bool:
        return self.batch == DYNAMIC

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["graphs"] = list(self.graphs)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExportConfig:
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: unknown keys (closest suggested) or invalid values.
        """
        fields = [f.name for f in dataclasses.fields(cls)]
        for key in d:
            check_choice(str(key), fields, "export config field")
        return cls(**dict(d))
