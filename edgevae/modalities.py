"""Modality specs: the data contract every stage shares (DESIGN §3).

A model and a dataset are described by an ordered list of :class:`ModalitySpec`. The order is the
mask column order: ``mask[:, i] == 1`` means modality ``specs[i]`` is present in that sample.

Sample shapes per kind (one sample, no batch axis):

=============  ===========================  ==========================================
kind           shape                        meaning
=============  ===========================  ==========================================
video          (T, H, W) or (T*C, H, W)     T frames (C channels each) stacked as channels
spectrogram    (1, n_mels, frames)          log-mel, standardised
series         (steps, dims)                e.g. trajectory / IMU, standardised
vector         (dim,)                       precomputed features, standardised
=============  ===========================  ==========================================

Example:
    >>> cams = [ModalitySpec(f"cam{i}", "video", (8, 64, 64), share="cams") for i in range(3)]
    >>> specs = ModalitySet([*cams, ModalitySpec("audio", "spectrogram", (1, 32, 32))])
    >>> specs.names
    ('cam0', 'cam1', 'cam2', 'audio')
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from edgevae._util.choices import check_choice
from edgevae.errors import ConfigError

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# Reserved because they are ONNX tensor names of the exported graphs (DESIGN §6).
_RESERVED = {"mask", "eps", "z", "score", "score_parts", "z_mu", "z_logvar"}


class ModalityKind(str, Enum):
    """The four modality kinds; each has its own encoder/decoder family."""

    video = "video"
    spectrogram = "spectrogram"
    series = "series"
    vector = "vector"


_RANK = {
    ModalityKind.video: 3,
    ModalityKind.spectrogram: 3,
    ModalityKind.series: 2,
    ModalityKind.vector: 1,
}
_DTYPES = ("uint8", "float16", "float32")


@dataclass(frozen=True)
class ModalitySpec:
    """One modality: its name (also its ONNX input name), kind, per-sample shape and storage dtype.

    Args:
        name: lower snake_case, unique within a set; used as the ONNX input name.
        kind: ``video``, ``spectrogram``, ``series`` or ``vector``.
        shape: per-sample shape (see the module table).
        dtype: storage dtype in datasets (``uint8`` for video frames, float otherwise).
        channels: colour channels per video frame (1 gray, 3 RGB); video only.
        share: share-group name; modalities with the same group share encoder/decoder weights
            (cameras), each still its own expert with its own mask bit.

    Raises:
        ConfigError: on any invalid field, with what to change.
    """

    name: str
    kind: ModalityKind | str
    shape: tuple[int, ...]
    dtype: str = "float32"
    channels: int = 1
    share: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ConfigError(
                f"invalid modality name {self.name!r}: use 1-32 lower-case letters, digits or '_', "
                "starting with a letter (e.g. 'cam0')."
            )
        if self.name in _RESERVED or self.name.startswith("recon_"):
            raise ConfigError(
                f"modality name '{self.name}' is reserved for an ONNX tensor; pick another name."
            )
        kind = ModalityKind(
            check_choice(
                str(getattr(self.kind, "value", self.kind)),
                [k.value for k in ModalityKind],
                "modality kind",
            )
        )
        object.__setattr__(self, "kind", kind)
        try:
            shape = tuple(int(s) for s in self.shape)
        except (TypeError, ValueError):
            raise ConfigError(
                f"modality '{self.name}': shape must be a sequence of integers, got {self.shape!r}."
            ) from None
        object.__setattr__(self, "shape", shape)
        if len(shape) != _RANK[kind] or any(s <= 0 for s in shape):
            raise ConfigError(
                f"modality '{self.name}' ({kind.value}): shape {shape} must have {_RANK[kind]} "
                f"positive dimensions ({_SHAPE_DOC[kind]})."
            )
        check_choice(self.dtype, _DTYPES, f"dtype of modality '{self.name}'")
        if kind is ModalityKind.spectrogram and shape[0] != 1:
            raise ConfigError(
                f"modality '{self.name}' (spectrogram): shape must be (1, n_mels, frames), "
                f"got {shape}."
            )
        if kind is ModalityKind.video:
            if self.channels not in (1, 3):
                raise ConfigError(
                    f"modality '{self.name}': channels must be 1 (gray) or 3 (RGB), "
                    f"got {self.channels}."
                )
            if shape[0] % self.channels:
                raise ConfigError(
                    f"modality '{self.name}': first dimension {shape[0]} must be frames x "
                    f"channels ({self.channels})."
                )
        elif self.channels != 1:
            raise ConfigError(f"modality '{self.name}': 'channels' applies to video only.")
        if self.share is not None and not _NAME_RE.match(str(self.share)):
            raise ConfigError(f"modality '{self.name}': invalid share group {self.share!r}.")

    @property
    def frames(self) -> int:
        """Frames per clip (video only): T in (T*C, H, W)."""
        if self.kind is not ModalityKind.video:
            raise ConfigError(f"modality '{self.name}' is not video; it has no frames.")
        return self.shape[0] // self.channels

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; :meth:`from_dict` inverts it."""
        return {
            "name": self.name,
            "kind": self.kind.value,  # type: ignore[union-attr]
            "shape": list(self.shape),
            "dtype": self.dtype,
            "channels": self.channels,
            "share": self.share,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModalitySpec:
        """Build from :meth:`to_dict` output; unknown keys are an error (typo protection)."""
        if not isinstance(d, dict):
            raise ConfigError(f"a modality spec must be a JSON object, got {type(d).__name__}.")
        unknown = set(d) - {"name", "kind", "shape", "dtype", "channels", "share"}
        if unknown:
            raise ConfigError(
                f"modality spec {d.get('name', '?')!r}: unknown keys {sorted(unknown)}."
            )
        missing = {"name", "kind", "shape"} - set(d)
        if missing:
            raise ConfigError(f"modality spec {d!r}: missing keys {sorted(missing)}.")
        return cls(**d)


_SHAPE_DOC = {
    ModalityKind.video: "(T*C, H, W)",
    ModalityKind.spectrogram: "(1, n_mels, frames)",
    ModalityKind.series: "(steps, dims)",
    ModalityKind.vector: "(dim,)",
}


@dataclass(frozen=True)
class ModalitySet:
    """An ordered, validated list of modality specs (spec order = mask column order).

    Raises:
        ConfigError: empty set, duplicate names, or a share group whose members differ in kind or
            shape.
    """

    specs: tuple[ModalitySpec, ...] = field(default_factory=tuple)

    def __init__(self, specs: Sequence[ModalitySpec]) -> None:
        object.__setattr__(self, "specs", tuple(specs))
        self.__post_init__()

    def __post_init__(self) -> None:
        if not self.specs:
            raise ConfigError("a model needs at least one modality; the modality list is empty.")
        names = [s.name for s in self.specs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"duplicate modality names {dupes}; names must be unique.")
        for group, members in self.share_groups().items():
            first = members[0]
            for m in members[1:]:
                if (m.kind, m.shape, m.channels) != (first.kind, first.shape, first.channels):
                    raise ConfigError(
                        f"share group '{group}': '{m.name}' {m.kind.value}{m.shape} differs from "
                        f"'{first.name}' {first.kind.value}{first.shape}; shared weights need "
                        "identical kinds and shapes."
                    )

    def __iter__(self) -> Iterator[ModalitySpec]:
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, key: int | str) -> ModalitySpec:
        if isinstance(key, str):
            for s in self.specs:
                if s.name == key:
                    return s
            check_choice(key, self.names, "modality")  # raises with a suggestion
        return self.specs[key]  # type: ignore[index]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.specs)

    def index(self, name: str) -> int:
        """Mask column of modality ``name``."""
        return self.names.index(self[name].name)

    def share_groups(self) -> dict[str, list[ModalitySpec]]:
        """Share group name -> member specs, in spec order (groups of one included)."""
        groups: dict[str, list[ModalitySpec]] = {}
        for s in self.specs:
            if s.share is not None:
                groups.setdefault(s.share, []).append(s)
        return groups

    def to_list(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.specs]

    @classmethod
    def from_list(cls, items: Sequence[dict[str, Any]]) -> ModalitySet:
        if not isinstance(items, list | tuple):
            raise ConfigError("'modalities' must be a JSON list of modality specs.")
        return cls([ModalitySpec.from_dict(d) for d in items])

    def check_compatible(self, other: ModalitySet, what: str = "data", fix: str = "") -> None:
        """Raise ShapeError unless ``other`` has the same names, kinds and shapes, in order."""
        from edgevae.errors import ShapeError

        a = [(s.name, s.kind.value, s.shape) for s in self.specs]  # type: ignore[union-attr]
        b = [(s.name, s.kind.value, s.shape) for s in other.specs]  # type: ignore[union-attr]
        if a != b:
            diff = next(
                (f"{x} vs {y}" for x, y in zip(a, b, strict=False) if x != y),
                f"{len(a)} vs {len(b)} modalities",
            )
            raise ShapeError(f"{what} modalities do not match the model: {diff}. {fix}".strip())
