"""``EngineConfig``: everything that decides how a TensorRT engine is built (frozen, validated).

Example:
    >>> cfg = EngineConfig(precision="fp16", mode="split", batch=parse_batch("1,4,16"))
    >>> cfg.batch
    (1, 4, 16)
    >>> EngineConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from edgevae._util.choices import check_choice
from edgevae.errors import ConfigError

PRECISIONS = ("fp32", "fp16", "int8")
MODES = ("native", "split", "plugin")

#: Workspace (tactic scratch memory) default. Jetsons share one memory between CPU and GPU, and a
#: build that asks for more than is free fails during tactic selection; 1 GiB fits an 8 GB Orin
#: Nano with a desktop running. The builder lowers it further to half of the free memory.
DEFAULT_WORKSPACE_MIB = 1024
DEFAULT_BATCH = (1, 4, 16)
DEFAULT_OPT_LEVEL = 3
CONFIG_VERSION = 1


def parse_batch(text: str) -> tuple[int, int, int]:
    """Parse ``"MIN,OPT,MAX"`` (or a single ``"N"`` meaning N,N,N) into a batch triple.

    Raises:
        ConfigError: when it is not one or three positive integers with MIN <= OPT <= MAX.
    """
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(
            f"--batch '{text}' is not MIN,OPT,MAX integers; use e.g. --batch 1,4,16."
        ) from None
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise ConfigError(
            f"--batch '{text}' has {len(values)} values; give MIN,OPT,MAX, e.g. --batch 1,4,16."
        )
    triple = (values[0], values[1], values[2])
    _check_batch(triple)
    return triple


def _check_batch(batch: tuple[int, int, int]) -> None:
    lo, opt, hi = batch
    if lo < 1:
        raise ConfigError(f"batch MIN must be >= 1, got {lo}; use e.g. --batch 1,4,16.")
    if not lo <= opt <= hi:
        raise ConfigError(
            f"batch {lo},{opt},{hi} is not ordered; MIN <= OPT <= MAX is required "
            f"(e.g. --batch {min(batch)},{sorted(batch)[1]},{max(batch)})."
        )
    if hi > 65536:
        raise ConfigError(f"batch MAX {hi} is unreasonably large; use at most 65536.")


@dataclass(frozen=True)
class EngineConfig:
    """How to build a TensorRT engine from an export directory.

    Args:
        precision: which ONNX to build from: ``fp32`` (``analyze.onnx``), ``fp16``
            (``analyze.fp16.onnx``, FP16-typed) or ``int8`` (``analyze.int8.trt.onnx``, Q/DQ).
            Precision comes only from the ONNX; the network is strongly typed.
        mode: ``native`` (the whole analyze graph), ``split`` (encode + decode engines with the
            CUDA kernels between them at run time) or ``plugin`` (one engine with the kernels as
            TensorRT plugins).
        batch: (MIN, OPT, MAX) batch sizes of the optimization profile.
        workspace_mib: workspace memory-pool limit in MiB (lowered to half of the free memory).
        opt_level: builder optimization level 0..5 (TensorRT's default is 3; lower builds faster
            and needs less memory).
        timing_cache: timing-cache file; its name gets the TensorRT version and compute
            capability appended, so caches never mix. None: ``~/.cache/edgevae/trt``.
        tf32: allow TF32 for FP32 layers. False (default) keeps FP32 builds strict, as parity
            checks need; TensorRT itself enables TF32 unless told otherwise.
        out_dir: where engines go. None: ``<export_dir>/engines``.
        plugin_library: plugin mode only: an IPluginV3 shared library (``kernels/plugins``) to
            use instead of Python AOT plugins (needed on TensorRT < 10.9, e.g. JetPack 6).

    Raises:
        ConfigError: on any invalid field, naming the valid choices.
    """

    precision: str = "fp32"
    mode: str = "native"
    batch: tuple[int, int, int] = DEFAULT_BATCH
    workspace_mib: int = DEFAULT_WORKSPACE_MIB
    opt_level: int = DEFAULT_OPT_LEVEL
    timing_cache: str | None = None
    tf32: bool = False
    out_dir: str | None = None
    plugin_library: str | None = None

    def __post_init__(self) -> None:
        check_choice(self.precision, PRECISIONS, "precision")
        check_choice(self.mode, MODES, "engine mode")
        batch = tuple(self.batch)
        if len(batch) != 3 or not all(isinstance(b, int) for b in batch):
            raise ConfigError(f"batch must be three integers (MIN, OPT, MAX), got {self.batch!r}.")
        object.__setattr__(self, "batch", batch)
        _check_batch(batch)  # type: ignore[arg-type]
        if not isinstance(self.workspace_mib, int) or not 16 <= self.workspace_mib <= 1 << 20:
            raise ConfigError(
                f"workspace {self.workspace_mib} MiB is out of range; use 16..1048576 MiB "
                f"(default {DEFAULT_WORKSPACE_MIB})."
            )
        if not isinstance(self.opt_level, int) or not 0 <= self.opt_level <= 5:
            raise ConfigError(
                f"optimization level {self.opt_level} is out of range; use 0..5 (default 3)."
            )
        if self.plugin_library is not None and self.mode != "plugin":
            raise ConfigError(
                f"a plugin library only applies to --mode plugin, not --mode {self.mode}; "
                "drop --plugin-lib or add --mode plugin."
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (with ``version``)."""
        d = asdict(self)
        d["batch"] = list(self.batch)
        d["version"] = CONFIG_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineConfig:
        """Inverse of :meth:`to_dict`; unknown keys are refused.

        Raises:
            ConfigError: on unknown keys, a newer config version or invalid values.
        """
        d = dict(d)
        version = d.pop("version", CONFIG_VERSION)
        if version > CONFIG_VERSION:
            raise ConfigError(
                f"engine config version {version} is newer than this edgevae understands "
                f"({CONFIG_VERSION}); upgrade edgevae."
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown engine config keys {unknown}; valid: {sorted(known)}.")
        if "batch" in d:
            d["batch"] = tuple(d["batch"])
        return cls(**d)
