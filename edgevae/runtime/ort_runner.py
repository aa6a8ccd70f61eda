"""ONNX Runtime behind the :class:`~edgevae.runtime.base.Runner` interface.

Session options that matter for speed are explicit and recorded (:attr:`OrtRunner.settings`):
graph optimisation level (default ``all``, which includes ORT's NCHWc layout transforms on x86),
intra/inter-op threads, sequential or parallel execution, thread spinning, and an optional dump of
the optimised graph. Execution providers are chosen by name; an asked-for provider that this
onnxruntime build lacks is an error, never a silent fall-back to the CPU.

Example:
    >>> runner = OrtRunner("analyze.onnx", threads=2)       # doctest: +SKIP
    >>> runner.run(feed)["score"].shape                     # doctest: +SKIP
    (1,)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgevae._util.choices import check_choice
from edgevae.errors import ConfigError, ExportError, MissingDependencyError, ShapeError
from edgevae.runtime.base import TensorInfo, check_feed

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}
GRAPH_OPTIMIZATION = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "layout": "ORT_ENABLE_LAYOUT",  # onnxruntime >= 1.22 only
    "all": "ORT_ENABLE_ALL",
}
EXECUTION_MODES = {"sequential": "ORT_SEQUENTIAL", "parallel": "ORT_PARALLEL"}
_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}


def resolve_providers(
    providers: Sequence[str] | None, device: str, available: Sequence[str]
) -> list[str]:
    """Full ONNX Runtime provider names to use, in priority order (CPU always last as fallback).

    Args:
        providers: names or aliases (``cpu``, ``cuda``, ``tensorrt``/``trt``); None picks from
            ``device``.
        device: ``"cpu"`` or ``"cuda"`` (``cuda`` means CUDA EP, then CPU).
        available: ``onnxruntime.get_available_providers()``.

    Raises:
        ConfigError: an unknown provider name.
        MissingDependencyError: a provider this onnxruntime build does not have.
    """
    check_choice(device, ("cpu", "cuda"), "device")
    if providers is None:
        providers = ["cuda"] if device == "cuda" else ["cpu"]
    full_names = set(PROVIDER_ALIASES.values()) | set(available)
    resolved: list[str] = []
    for p in providers:
        name = PROVIDER_ALIASES.get(p.lower(), p) if isinstance(p, str) else p
        if name not in full_names:
            check_choice(p, [*PROVIDER_ALIASES, *available], "execution provider")
        if name not in available:
            raise MissingDependencyError(
                f"execution provider '{name}' is not in this onnxruntime build (available: "
                f"{', '.join(available)}); install onnxruntime-gpu (CUDA/TensorRT EPs) or pick "
                "--device cpu."
            )
        if name not in resolved:
            resolved.append(name)
    if "CPUExecutionProvider" not in resolved:
        resolved.append("CPUExecutionProvider")
    return resolved


class OrtRunner:
    """An ``onnxruntime.InferenceSession`` with named numpy I/O and validated feeds.

    Args:
        model: path to an ``.onnx`` file, or the serialized model bytes.
        providers: execution providers by name or alias; default from ``device``.
        device: ``"cpu"`` or ``"cuda"``.
        threads: intra-op threads (``None``: ORT's default, one per physical core).
        inter_op_threads: inter-op threads (used in ``parallel`` execution mode only).
        graph_optimization: ``disable``, ``basic``, ``extended``, ``layout`` or ``all``.
        execution_mode: ``sequential`` or ``parallel``.
        allow_spinning: whether idle intra-op threads busy-wait (``None``: ORT's default, on).
            Turning it off costs latency but frees the cores for other work between runs.
        optimized_model_path: where to save the optimised graph ORT actually runs (for inspection).
        provider_options: per provider (full name or alias) option dicts.
        config_entries: extra ``SessionOptions.add_session_config_entry`` key/values.
        name: label in reports (default ``"ort"``).

    Raises:
        ConfigError: a bad option value (closest valid name suggested).
        MissingDependencyError: an asked-for provider that is not available.
        ExportError: a missing, corrupt or unloadable ONNX model (message names the file).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | bytes,
        *,
        providers: Sequence[str] | None = None,
        device: str = "cpu",
        threads: int | None = None,
        inter_op_threads: int | None = None,
        graph_optimization: str = "all",
        execution_mode: str = "sequential",
        allow_spinning: bool | None = None,
        optimized_model_path: str | os.PathLike[str] | None = None,
        provider_options: Mapping[str, dict[str, Any]] | None = None,
        config_entries: Mapping[str, str] | None = None,
        name: str = "ort",
    ) -> None:
        import onnxruntime as ort

        check_choice(graph_optimization, GRAPH_OPTIMIZATION, "graph optimization level")
        check_choice(execution_mode, EXECUTION_MODES, "execution mode")
        for what, value in (("threads", threads), ("inter_op_threads", inter_op_threads)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{what} must be a positive integer, got {value!r}.")
        level_name = GRAPH_OPTIMIZATION[graph_optimization]
        if not hasattr(ort.GraphOptimizationLevel, level_name):
            raise ConfigError(
                f"graph optimization level '{graph_optimization}' needs a newer onnxruntime than "
                f"{ort.__version__}; use 'all' or 'extended'."
            )
        self.name = name
        self.device = device
        resolved = resolve_providers(providers, device, ort.get_available_providers())

        so = ort.SessionOptions()
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level_name)
        so.execution_mode = getattr(ort.ExecutionMode, EXECUTION_MODES[execution_mode])
        if threads is not None:
            so.intra_op_num_threads = threads
        if inter_op_threads is not None:
            so.inter_op_num_threads = inter_op_threads
        if allow_spinning is not None:
            so.add_session_config_entry("session.intra_op.allow_spinning", str(int(allow_spinning)))
            so.add_session_config_entry("session.inter_op.allow_spinning", str(int(allow_spinning)))
        for key, value in (config_entries or {}).items():
            so.add_session_config_entry(str(key), str(value))
        if optimized_model_path is not None:
            Path(optimized_model_path).parent.mkdir(parents=True, exist_ok=True)
            so.optimized_model_filepath = str(optimized_model_path)

        options = {
            PROVIDER_ALIASES.get(k.lower(), k): v for k, v in (provider_options or {}).items()
        }
        provider_list = [(p, options[p]) if p in options else p for p in resolved]
        source = self._source(model)
        try:
            self.session = ort.InferenceSession(source, sess_options=so, providers=provider_list)
        except Exception as exc:  # ORT raises its own pybind types (Fail, InvalidGraph, ...)
            what = f"'{model}'" if not isinstance(model, bytes) else "the given ONNX bytes"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(
                f"onnxruntime cannot load {what}: {first[:300]}. The file is corrupt or uses an "
                "op this onnxruntime lacks; re-export it (`edgevae export`)."
            ) from None
        self.path = None if isinstance(model, bytes) else Path(model)
        self.settings = {
            "providers": self.session.get_providers(),
            "graph_optimization": graph_optimization,
            "execution_mode": execution_mode,
            "intra_op_threads": threads,
            "inter_op_threads": inter_op_threads,
            "allow_spinning": allow_spinning,
            "onnxruntime": ort.__version__,
        }
        self._inputs = {a.name: _info(a) for a in self.session.get_inputs()}
        self._outputs = {a.name: _info(a) for a in self.session.get_outputs()}
        self._output_names = list(self._outputs)

    @staticmethod
    def _source(model: str | os.PathLike[str] | bytes) -> str | bytes:
        if isinstance(model, bytes):
            return model
        path = Path(model)
        if not path.is_file():
            raise ExportError(
                f"ONNX model '{path}' does not exist; check the path or export it with "
                "`edgevae export RUN --out DIR`."
            )
        return str(path)

    @property
    def inputs(self) -> dict[str, TensorInfo]:
        return dict(self._inputs)

    @property
    def outputs(self) -> dict[str, TensorInfo]:
        return dict(self._outputs)

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch; raises ShapeError on a feed that does not match :attr:`inputs` (or that
        ONNX Runtime rejects, e.g. a dimension the graph fixes internally)."""
        check_feed(feed, self._inputs, self.name)
        try:
            values = self.session.run(self._output_names, feed)
        except Exception as exc:
            if type(exc).__name__ not in ("InvalidArgument", "Fail", "RuntimeException"):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ShapeError(f"{self.name}: onnxruntime rejected the feed: {first[:300]}") from None
        return dict(zip(self._output_names, values, strict=True))


def _info(arg: Any) -> TensorInfo:
    shape = tuple(d if isinstance(d, int) else (d or "?") for d in arg.shape)
    dtype = _ORT_DTYPES.get(arg.type)
    if dtype is None:
        raise ShapeError(
            f"tensor '{arg.name}' has type {arg.type}, which edgevae runners do not support; "
            "re-export with float32/float16/uint8/int64 I/O."
        )
    return TensorInfo(arg.name, shape, np.dtype(dtype))
