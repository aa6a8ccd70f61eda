"""``QuantConfig``: what ``edgevae quantize`` makes and how (validated, serializable).

Artifact names (contract, read by ``edgevae/trt/export_dir.py`` and ``edgevae/bench/plan.py``),
next to the FP32 ``<graph>.onnx``::

    fp16              <graph>.fp16.onnx
    int8 --target trt <graph>.int8.trt.onnx   S8S8 symmetric, per-channel weights, TensorRT Q/DQ
    int8 --target cpu <graph>.int8.cpu.onnx   U8S8 on x86, S8S8 on ARM, ONNX Runtime CPU Q/DQ

Example:
    >>> cfg = QuantConfig(precision="int8", method="minmax")
    >>> cfg.flavors
    ('trt', 'cpu')
    >>> QuantConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from edgevae._util.choices import check_choice
from edgevae.errors import ConfigError

PRECISIONS = ("fp16", "int8")
TARGETS = ("trt", "cpu", "both")
METHODS = ("minmax", "entropy", "percentile")
BACKENDS = ("ort", "modelopt")
CPU_ARCHS = ("auto", "x86", "arm")
GRAPHS = ("analyze", "encode", "decode")
# Op types whose inputs get Q/DQ in the TensorRT artifact (weights per channel, no outputs).
TRT_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# Op types quantized in the ONNX Runtime CPU artifact, first and last layers left FP32. Measured
# on the nano export (2-core AMD EPYC, AVX2 without VNNI, onnxruntime 1.32, batch 1, 2 threads;
# benchmarks/quantization/README.md): every INT8 variant ran at 0.9-1.0x FP32 there; Conv+Relu
# was the fastest that passes the gate (Resize in uint8 is slower than ORT's FP32 Upsample, Gemm
# adds unfused Q/DQ, quantizing the first/last layers failed the score SQNR gate and was slower).
CPU_OP_TYPES = ("Conv", "Relu")
CONFIG_VERSION = 1

_SUFFIX = {"fp16": "fp16", "trt": "int8.trt", "cpu": "int8.cpu"}


def artifact_name(graph: str, flavor: str) -> str:
    """File name of ``graph``'s artifact for ``flavor`` (``fp16``, ``trt`` or ``cpu``).

    Example:
        >>> artifact_name("analyze", "trt")
        'analyze.int8.trt.onnx'
    """
    return f"{graph}.{_SUFFIX[flavor]}.onnx"


def _names(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(str(i).strip() for i in items if str(i).strip())


@dataclass(frozen=True)
class QuantConfig:
    """How to quantize an export directory.

    Args:
        precision: ``fp16`` or ``int8``.
        target: ``trt``, ``cpu`` or ``both`` (INT8 default ``both``; FP16 is for TensorRT only:
            on the ONNX Runtime CPU it is FP32 plus casts, so ``cpu`` is refused).
        method: activation-range calibration, ``minmax``, ``entropy`` or ``percentile``.
        recipe: calibration recipe name (``calibration/recipes/NAME.toml``) or a path to one.
        samples: calibration samples (default: the recipe's ``samples``).
        exclude: regular expressions; nodes whose name matches one stay FP32 (INT8 only).
        backend: ``ort`` (ONNX Runtime ``quantize_static``) or ``modelopt`` (NVIDIA ModelOpt,
            TensorRT artifact only, optional dependency).
        cpu_arch: ``auto`` (this machine), ``x86`` (U8S8) or ``arm`` (S8S8) for the CPU artifact.
        cpu_op_types: op types quantized in the CPU artifact.
        cpu_first_last: also quantize the first and last layers in the CPU artifact (they
            are always excluded from the TensorRT artifact).
        graphs: graphs to quantize (default: every graph present in the export directory).
        gate_clips: at most this many test clips for the accuracy gate (None: all).
        force: accept fewer calibration samples than the recipe's minimum.
        overwrite: replace existing artifacts of this precision.

    Raises:
        ConfigError: an invalid value (closest valid name suggested).
    """

    precision: str = "int8"
    target: str | None = None
    method: str = "minmax"
    recipe: str = "default"
    samples: int | None = None
    exclude: tuple[str, ...] = ()
    backend: str = "ort"
    cpu_arch: str = "auto"
    cpu_op_types: tuple[str, ...] = CPU_OP_TYPES
    cpu_first_last: bool = False
    graphs: tuple[str, ...] | None = None
    gate_clips: int | None = None
    force: bool = False
    overwrite: bool = False
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        check_choice(self.precision, PRECISIONS, "precision")
        target = self.target or ("trt" if self.precision == "fp16" else "both")
        check_choice(target, TARGETS, "target")
        if self.precision == "fp16" and target != "trt":
            raise ConfigError(
                f"--precision fp16 --target {target}: FP16 ONNX on the ONNX Runtime CPU is FP32 "
                "plus casts (no speedup), so FP16 is made for TensorRT only; drop --target or "
                "use --precision int8 --target cpu."
            )
        object.__setattr__(self, "target", target)
        check_choice(self.method, METHODS, "calibration method")
        check_choice(self.backend, BACKENDS, "quantization backend")
        check_choice(self.cpu_arch, CPU_ARCHS, "CPU architecture")
        if self.backend == "modelopt" and self.precision == "int8" and target != "trt":
            raise ConfigError(
                "--backend modelopt makes TensorRT Q/DQ only; add --target trt, or use "
                "--backend ort for the CPU artifact."
            )
        if self.backend == "modelopt" and self.method == "percentile":
            raise ConfigError(
                "ModelOpt calibrates with 'minmax' (max) or 'entropy' only; pick one of them or "
                "use --backend ort."
            )
        if not isinstance(self.recipe, str) or not self.recipe.strip():
            raise ConfigError("recipe must be a recipe name or a path to a .toml recipe.")
        if self.samples is not None and (
            isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 1
        ):
            raise ConfigError(f"samples must be a positive integer, got {self.samples!r}.")
        if self.gate_clips is not None and (
            isinstance(self.gate_clips, bool)
            or not isinstance(self.gate_clips, int)
            or self.gate_clips < 2
        ):
            raise ConfigError(f"gate_clips must be an integer >= 2, got {self.gate_clips!r}.")
        exclude = _names(self.exclude) if isinstance(self.exclude, str) else tuple(self.exclude)
        for pattern in exclude:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(
                    f"--exclude '{pattern}' is not a valid regular expression ({exc}); escape "
                    "special characters, e.g. '/model/cams/.*Conv'."
                ) from None
        object.__setattr__(self, "exclude", exclude)
        op_types = _names(self.cpu_op_types)
        if not op_types:
            raise ConfigError("cpu_op_types must name at least one op type, e.g. 'Conv'.")
        object.__setattr__(self, "cpu_op_types", op_types)
        if self.graphs is not None:
            graphs = _names(self.graphs)
            for g in graphs:
                check_choice(g, GRAPHS, "graph")
            if not graphs:
                raise ConfigError(f"no graphs to quantize; pick from {', '.join(GRAPHS)}.")
            object.__setattr__(self, "graphs", tuple(dict.fromkeys(graphs)))
        if self.version != CONFIG_VERSION:
            raise ConfigError(
                f"quantization config version {self.version} is not supported (this edgevae "
                f"reads version {CONFIG_VERSION}); re-run `edgevae quantize`."
            )

    @property
    def flavors(self) -> tuple[str, ...]:
        """Artifact flavors to make: ``("fp16",)``, ``("trt",)``, ``("cpu",)`` or both INT8."""
        if self.precision == "fp16":
            return ("fp16",)
        return ("trt", "cpu") if self.target == "both" else (str(self.target),)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("exclude", "cpu_op_types", "graphs"):
            if d[key] is not None:
                d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuantConfig:
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: unknown keys (closest suggested) or invalid values.
        """
        fields = [f.name for f in dataclasses.fields(cls)]
        for key in d:
            check_choice(str(key), fields, "quantization config field")
        values = dict(d)
        for key in ("exclude", "cpu_op_types", "graphs"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        return cls(**values)
