"""Pick and build the runner for an artifact: ``.onnx`` -> ONNX Runtime, a training run directory
-> PyTorch, ``.plan``/``.engine`` -> TensorRT.

A table maps artifact kinds to the backends that can run them; asking for a backend that cannot run
an artifact is a ConfigError that says which command makes the right artifact.

Example:
    >>> runner = runner_for("export/analyze.onnx", threads=2)        # doctest: +SKIP
    >>> runner = runner_for("runs/nano", backend="torch-compile")   # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgevae._util.choices import check_choice
from edgevae._util.lazy import require
from edgevae.errors import ConfigError
from edgevae.modalities import ModalitySet
from edgevae.runtime.base import Runner, TensorInfo

ENGINE_SUFFIXES = (".plan", ".engine")
SPLIT_BUNDLE_SUFFIX = ".split.json"  # two engines + kernels (`edgevae build --mode split`)
RUN_DIR_MARKER = "model.json"
BACKENDS = ("torch", "torch-compile", "ort", "trt")
# artifact kind -> backends that run it (the first is the default)
BACKENDS_FOR_KIND: dict[str, tuple[str, ...]] = {
    "onnx": ("ort",),
    "run": ("torch", "torch-compile"),
    "engine": ("trt",),
}
_HOW_TO_MAKE = {
    "onnx": "export the run first: `edgevae export RUN --out DIR`",
    "run": "pass the training run directory (holding model.json) instead",
    "engine": "build an engine on the target first: `edgevae build EXPORT_DIR`",
}


def artifact_kind(path: str | os.PathLike[str]) -> str:
    """``"onnx"``, ``"run"`` or ``"engine"`` for an existing artifact.

    Raises:
        ConfigError: the path does not exist or is not an artifact edgevae can run.
    """
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"artifact '{p}' does not exist; check the path.")
    if p.is_dir():
        if (p / RUN_DIR_MARKER).is_file():
            return "run"
        raise ConfigError(
            f"'{p}' is a directory without {RUN_DIR_MARKER}: not a training run. Pass a run "
            "directory, an .onnx file or a .plan/.engine file."
        )
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix in ENGINE_SUFFIXES or p.name.lower().endswith(SPLIT_BUNDLE_SUFFIX):
        return "engine"
    raise ConfigError(
        f"cannot tell how to run '{p.name}': expected an .onnx file, a .plan/.engine TensorRT "
        "engine (or *.split.json bundle) or a training run directory."
    )


def backend_for(path: str | os.PathLike[str], backend: str | None = None) -> str:
    """The backend that runs ``path``: ``backend`` if it can, else the kind's default.

    Raises:
        ConfigError: unknown backend, or one that cannot run this artifact (with the fix).
    """
    kind = artifact_kind(path)
    if backend is None:
        return BACKENDS_FOR_KIND[kind][0]
    check_choice(backend, BACKENDS, "backend")
    if backend not in BACKENDS_FOR_KIND[kind]:
        needed = next(k for k, b in BACKENDS_FOR_KIND.items() if backend in b)
        raise ConfigError(
            f"backend '{backend}' cannot run '{Path(path).name}' (a {_KIND_NAMES[kind]}); it runs "
            f"a {_KIND_NAMES[needed]}: {_HOW_TO_MAKE[needed]}, or use --backend "
            f"{BACKENDS_FOR_KIND[kind][0]}."
        )
    return backend


_KIND_NAMES = {"onnx": "ONNX model", "run": "training run", "engine": "TensorRT engine"}


def runner_for(
    artifact: str | os.PathLike[str],
    backend: str | None = None,
    *,
    device: str = "cpu",
    threads: int | None = None,
    **opts: Any,
) -> Runner:
    """Build the runner for ``artifact``.

    Args:
        artifact: an ``.onnx`` file, a training run directory, or a ``.plan``/``.engine`` file.
        backend: ``torch``, ``torch-compile``, ``ort`` or ``trt``; None picks from the artifact.
        device: ``cpu`` or ``cuda``.
        threads: intra-op threads (torch and ORT).
        **opts: backend options passed to the runner's constructor (ORT ``graph_optimization``,
            ``providers``, ...; torch.compile ``mode``, ``compile_backend``, ``dynamic``; TensorRT
            ``cuda_backend`` (cuda-python|pycuda), ``cuda_graph``, ``check``). Unknown names are a
            ConfigError.

    Returns:
        A :class:`~edgevae.runtime.base.Runner`.

    Raises:
        ConfigError: missing artifact, unknown backend, or an artifact for another backend.
        MissingDependencyError: TensorRT (or a CUDA provider) asked for but not installed.
        CheckpointError: an unreadable training run.
    """
    chosen = backend_for(artifact, backend)
    path = Path(artifact)
    if chosen == "ort":
        from edgevae.runtime.ort_runner import OrtRunner

        _check_options(OrtRunner, opts, chosen, exclude=("model", "device", "threads"))
        return OrtRunner(path, device=device, threads=threads, **opts)
    if chosen in ("torch", "torch-compile"):
        allowed = () if chosen == "torch" else ("mode", "compile_backend", "dynamic")
        _check_options(None, opts, chosen, only=allowed)
        return torch_runner_from_run(
            path, device=device, threads=threads, compiled=chosen == "torch-compile", **opts
        )
    # TensorRT: check the package first so the error names TensorRT, not our module.
    if importlib.util.find_spec("tensorrt") is None:
        require("tensorrt")  # raises MissingDependencyError with the install hint
    _check_options(None, opts, chosen, only=("cuda_backend", "cuda_graph", "check"))
    trt_runner = importlib.import_module("edgevae.runtime.trt_runner")
    if "cuda_backend" in opts:  # TrtRunner calls it `backend`, a name runner_for already uses
        opts["backend"] = opts.pop("cuda_backend")
    return trt_runner.TrtRunner(path, device=device, **opts)


def _check_options(
    target: Any,
    opts: dict[str, Any],
    backend: str,
    *,
    exclude: tuple[str, ...] = (),
    only: tuple[str, ...] | None = None,
) -> None:
    """Raise ConfigError for option names ``target`` does not take (a typo must not be a crash)."""
    import inspect

    if only is not None:
        valid = list(only)
    else:
        params = inspect.signature(target).parameters
        valid = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n not in exclude]
    unknown = sorted(set(opts) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {unknown} for backend '{backend}'; valid: "
            f"{', '.join(valid) or 'none'}."
        )


def read_run_metadata(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated ``model.json`` of a training run (modalities, normalization, score_stats...).

    Raises:
        CheckpointError: missing, unreadable or incompatible ``model.json``.
    """
    from edgevae.train.checkpoint import read_meta

    return read_meta(run_dir)


def analyze_io(
    modalities: ModalitySet, latent_dim: int
) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """Input and output specs of the ``analyze`` graph (DESIGN §6 contract names)."""
    f32 = np.dtype("float32")
    m = len(modalities)
    inputs = [TensorInfo(s.name, ("batch", *s.shape), f32) for s in modalities]
    inputs.append(TensorInfo("mask", ("batch", m), f32))
    outputs = [
        TensorInfo("z_mu", ("batch", latent_dim), f32),
        TensorInfo("z_logvar", ("batch", latent_dim), f32),
        *[TensorInfo(f"recon_{s.name}", ("batch", *s.shape), f32) for s in modalities],
        TensorInfo("score", ("batch",), f32),
        TensorInfo("score_parts", ("batch", m + 2), f32),
    ]
    return inputs, outputs


def torch_runner_from_run(
    run_dir: Path,
    *,
    device: str = "cpu",
    threads: int | None = None,
    compiled: bool = False,
    **compile_opts: Any,
) -> Runner:
    """A TorchRunner over the run's ``AnalyzeGraph`` (same signature as ``analyze.onnx``).

    Raises:
        CheckpointError: unreadable run, or weights that do not fit the stored config.
        ConfigError: torch.compile options without ``compiled=True``.
    """
    from edgevae.model.analyze import AnalyzeGraph
    from edgevae.runtime.torch_runner import TorchRunner
    from edgevae.train.checkpoint import load_checkpoint

    if compile_opts and not compiled:
        raise ConfigError(f"options {sorted(compile_opts)} apply to --backend torch-compile only.")
    ckpt = load_checkpoint(run_dir, device="cpu")
    module = AnalyzeGraph(ckpt.model, ckpt.score_stats).eval()
    inputs, outputs = analyze_io(ckpt.modalities, int(ckpt.model_config.latent_dim))
    if compiled:
        return TorchRunner.compiled(
            module, inputs, outputs, device=device, threads=threads, **compile_opts
        )
    return TorchRunner(module, inputs, outputs, device=device, threads=threads)
