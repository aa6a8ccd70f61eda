"""``build_engine``: strongly typed TensorRT engines from an export directory (10.x and 11.x).

One code path for TensorRT 10.x and 11.x (reference/tensorrt.md §1-§2):

* precision comes only from the precision-specific ONNX (FP16-typed or Q/DQ); the network is
  strongly typed (flag on 10.x, always on in 11.x); no FP16/INT8 builder flags, no calibrators;
* one explicit optimization profile from the batch triple for every input;
* TF32 is cleared unless asked for, so an FP32 engine is strict FP32;
* workspace limit (default safe for shared-memory Jetsons), builder optimization level;
* a timing cache keyed by TensorRT version + compute capability (+ L4T), loaded and saved
  atomically;
* parser errors name the ONNX nodes; out-of-memory during tactic selection (which on Jetson reads
  "Could not find any implementation for node ...") becomes an EngineBuildError that says so,
  with the numbers and what to try;
* the plan and its manifest are written atomically.

Modes: ``native`` builds ``analyze``; ``split`` builds ``encode`` and ``decode`` (the CUDA kernels
run between them at run time) and writes a ``*.split.json`` bundle; ``plugin`` composes the
plugin-mode graph (:mod:`edgevae.trt.plugin_graph`) and builds it with the kernels as AOT Quickly
Deployable Plugins (TensorRT >= 10.9) or, with ``plugin_library``, the C++ IPluginV3 library.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from edgevae._util.artifacts import sha256_file, write_bytes_atomic
from edgevae._util.lazy import require
from edgevae.errors import ConfigError, EngineBuildError, MissingDependencyError
from edgevae.trt.config import EngineConfig
from edgevae.trt.export_dir import (
    check_export_dir,
    check_stats_match,
    load_score_stats,
    modality_names,
    onnx_for,
)
from edgevae.trt.manifest import SPLIT_SUFFIX, write_engine_manifest, write_split_bundle
from edgevae.trt.probe import TargetInfo, probe_target
from edgevae.trt.profiles import ProfileShapes, onnx_input_dims, profile_shapes
from edgevae.trt.versions import (
    ComputeCapability,
    CudaVersion,
    TrtVersion,
    check_trt_supported,
    parse_trt_version,
    strongly_typed_is_default,
    supports_aot_plugins,
)

Progress = Callable[[str], None]

_OOM_PATTERNS = (
    r"out of memory",
    r"outofmemory",
    r"cudaErrorMemoryAllocation",
    r"Tactic Device request",
    r"Requested amount of GPU memory",
    r"insufficient memory",
    r"bad_alloc",
    r"could not find any implementation for node",
)


@dataclass(frozen=True)
class _Job:
    role: str  # analyze | encode | decode
    onnx: Path
    plan: Path


def build_engine(
    export_dir: str | os.PathLike[str], config: EngineConfig, progress: Progress | None = None
) -> Path:
    """Build the TensorRT engine(s) for ``export_dir`` on this machine.

    Args:
        export_dir: an ``edgevae export`` directory (+ ``edgevae quantize`` outputs for fp16/int8).
        config: precision, mode, batch profile, workspace, optimization level, timing cache, TF32.
        progress: called with one line per step (the CLI prints them).

    Returns:
        The engine (``analyze.<precision>.plan`` or ``analyze.<precision>.plugin.plan``), or for
        split mode the bundle ``analyze.<precision>.split.json`` naming both engines.

    Raises:
        MissingDependencyError: TensorRT is not installed (with how to install it on Jetson).
        ConfigError: a bad export directory or option.
        ExportError: a missing precision-specific ONNX or score statistics.
        EngineBuildError: no usable GPU, parser errors (with node names), out of memory (with the
            numbers and what to try), unsupported plugin route, or any other build failure.
    """
    say = progress or (lambda _msg: None)
    export = check_export_dir(export_dir)
    try:
        trt = require("tensorrt")
    except MissingDependencyError as exc:
        reason = str(exc).split("(", 1)[-1].split(")", 1)[0]
        raise MissingDependencyError(
            f"edgevae build needs TensorRT, which is not installed here ({reason}). Engines are "
            "built on the target device: on Jetson install JetPack's TensorRT with `sudo apt "
            "install nvidia-tensorrt` (brings python3-libnvinfer) and use the system Python; on "
            "an x86 NVIDIA GPU machine install TensorRT from NVIDIA. `edgevae doctor` lists "
            "what else is missing."
        ) from None
    version = parse_trt_version(trt.__version__)
    check_trt_supported(version)
    target = probe_target(trt)
    if target.compute_capability is None:
        raise EngineBuildError(
            f"TensorRT {version} is installed but no CUDA GPU is visible here; engines are built "
            "on the target device (run `edgevae doctor` to see what is missing)."
        )
    cc = ComputeCapability.parse(target.compute_capability)
    out_dir = Path(config.out_dir) if config.out_dir else export / "engines"
    out_dir.mkdir(parents=True, exist_ok=True)
    say(f"TensorRT {version}, {target.describe()}; {config.mode} {config.precision} -> {out_dir}")

    prec = config.precision
    plugin_libraries: list[str] = []
    stats: dict[str, list] | None = None
    if config.mode == "native":
        analyze = onnx_for(export, "analyze", prec)
        jobs = [_Job("analyze", analyze, out_dir / f"analyze.{prec}.plan")]
    elif config.mode == "split":
        from edgevae.trt.plugin_graph import write_experts_only_onnx

        stats = load_score_stats(export)
        # the fusion runs in the poe_fusion kernel: the encode engine stops at the experts
        experts = write_experts_only_onnx(
            onnx_for(export, "encode", prec), out_dir / f"encode.{prec}.experts.onnx"
        )
        jobs = [
            _Job("encode", experts, out_dir / f"encode.{prec}.plan"),
            _Job("decode", onnx_for(export, "decode", prec), out_dir / f"decode.{prec}.plan"),
        ]
    else:
        plugin_onnx, plugin_libraries = _prepare_plugin_mode(
            trt, version, target, cc, export, config, out_dir, say
        )
        jobs = [_Job("analyze", plugin_onnx, out_dir / f"analyze.{prec}.plugin.plan")]

    cache_file = timing_cache_file(config.timing_cache, version, cc, target.l4t)
    for job in jobs:
        _build_one(trt, version, job, config, target, cache_file, plugin_libraries, export, say)

    if config.mode != "split":
        return jobs[0].plan
    assert stats is not None  # set in the split branch above
    encode_inputs = list(onnx_input_dims(jobs[0].onnx))
    modalities = modality_names(encode_inputs)
    check_stats_match(stats, modalities)
    latent = onnx_input_dims(jobs[1].onnx).get("z")
    if latent is None or len(latent) != 2 or not isinstance(latent[1], int):
        raise EngineBuildError(
            f"{jobs[1].onnx.name} does not take z as (batch, D); re-export with `edgevae export`."
        )
    bundle = write_split_bundle(
        out_dir / f"analyze.{prec}{SPLIT_SUFFIX}",
        encode=jobs[0].plan,
        decode=jobs[1].plan,
        modalities=modalities,
        latent_dim=int(latent[1]),
        score_stats=stats,
        precision=prec,
        config=config.to_dict(),
        target=target,
    )
    say(f"split bundle {bundle.name}: encode -> poe_fusion -> decode -> anomaly_score")
    return bundle


def timing_cache_file(
    path: str | None, version: TrtVersion, cc: ComputeCapability, l4t: str | None = None
) -> Path:
    """The timing-cache file for this TensorRT version and GPU: ``<stem>.trt<ver>.<sm>[.l4t<x>]``.

    Caches from another TensorRT version or GPU are useless (or rejected), so the key is part of
    the file name and different machines sharing a directory never overwrite each other's cache.
    """
    if path:
        base = Path(path).expanduser()
    else:
        from edgevae.kernels.build import cache_root

        base = cache_root() / "trt" / "timing.cache"
    key = f"trt{version}.{cc.key}" + (f".l4t{l4t}" if l4t else "")
    return base.with_name(f"{base.stem}.{key}{base.suffix or '.cache'}")


def effective_workspace_mib(requested: int, free_mib: int | None) -> int:
    """The workspace to ask for: the requested MiB, at most half of the free memory (if known)."""
    if free_mib is None or free_mib <= 0:
        return requested
    return max(16, min(requested, free_mib // 2))


def network_flags(trt: ModuleType, version: TrtVersion, *, prefer_aot: bool = False) -> int:
    """Network creation flags: STRONGLY_TYPED on 10.x (always on in 11.x), AOT plugins if asked."""
    flag_enum = trt.NetworkDefinitionCreationFlag
    flags = 0
    if not strongly_typed_is_default(version):
        flags |= 1 << int(flag_enum.STRONGLY_TYPED)
    if prefer_aot and hasattr(flag_enum, "PREFER_AOT_PYTHON_PLUGINS"):
        flags |= 1 << int(flag_enum.PREFER_AOT_PYTHON_PLUGINS)
    return flags


def parser_error_message(onnx_path: Path, errors: list[Any], version: TrtVersion) -> str:
    """One line naming each failing ONNX node, its op and TensorRT's reason."""
    parts = []
    for err in errors[:5]:
        desc = _call(err, "desc") or str(err)
        name = _call(err, "node_name")
        op = _call(err, "node_operator")
        index = _call(err, "node")
        where = f"node '{name}'" if name else (f"node #{index}" if index not in (None, -1) else "")
        where += f" ({op})" if op else ""
        parts.append(f"{where}: {desc}" if where else str(desc))
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return (
        f"TensorRT {version} could not parse {onnx_path.name}: {'; '.join(parts)}{more}. "
        "Unsupported ops need a newer TensorRT or a re-export; for custom ops use --mode split."
    )


def oom_message(
    messages: list[str], job: _Job, config: EngineConfig, workspace_mib: int, free_mib: int | None
) -> str | None:
    """An out-of-memory explanation if the build log shows one, else None."""
    text = "\n".join(messages)
    if not any(re.search(p, text, re.IGNORECASE) for p in _OOM_PATTERNS):
        return None
    numbers = []
    m = re.search(r"Tactic Device request:\s*(\d+)\s*MB\s*Available:\s*(\d+)\s*MB", text)
    if m:
        numbers.append(f"a tactic asked for {m.group(1)} MiB with {m.group(2)} MiB available")
    m = re.search(r"Requested amount of GPU memory \((\d+) bytes\)", text)
    if m:
        numbers.append(f"an allocation of {int(m.group(1)) >> 20} MiB failed")
    numbers.append(f"workspace {workspace_mib} MiB")
    numbers.append(f"batch max {config.batch[2]}")
    numbers.append(f"opt level {config.opt_level}")
    if free_mib is not None:
        numbers.append(f"{free_mib} MiB free at start")
    lo, opt, hi = config.batch
    smaller = f"{lo},{min(opt, max(lo, hi // 2))},{max(lo, hi // 2)}"
    node = re.search(r"could not find any implementation for node (\S+)", text, re.I)
    where = f" (node {node.group(1).rstrip('.,);')})" if node else ""
    return (
        f"TensorRT ran out of memory while selecting tactics for {job.onnx.name}{where}: "
        f"{', '.join(numbers)}. Try --workspace {max(16, workspace_mib // 2)}, --batch {smaller}, "
        f"--opt-level {max(0, config.opt_level - 2)}, or free memory (close other GPU programs; "
        "on Jetson stop the desktop: `sudo systemctl isolate multi-user.target`)."
    )


def summarize_layers(info_json: str | None) -> dict[str, Any] | None:
    """Per-layer precision from the engine inspector's JSON (None when it gave nothing usable).

    Returns ``{"layers": [{"name", "type", "precision"}], "precisions": {"fp16": n, ...}}``.
    """
    if not info_json:
        return None
    try:
        info = json.loads(info_json)
    except ValueError:
        return None
    layers_out, counts = [], {}
    for layer in info.get("Layers", []) if isinstance(info, dict) else []:
        if not isinstance(layer, dict):  # profiling verbosity LAYER_NAMES_ONLY: names only
            layers_out.append({"name": str(layer), "type": None, "precision": None})
            continue
        outs = layer.get("Outputs") or []
        fmt = outs[0].get("Format/Datatype", "") if outs and isinstance(outs[0], dict) else ""
        precision = _precision_of(fmt)
        layers_out.append(
            {"name": layer.get("Name"), "type": layer.get("LayerType"), "precision": precision}
        )
        if precision:
            counts[precision] = counts.get(precision, 0) + 1
    return {"layers": layers_out, "precisions": counts}


def _precision_of(fmt: str) -> str | None:
    text = fmt.lower()
    for token, name in (
        ("fp8", "fp8"),
        ("int8", "int8"),
        ("bf16", "bf16"),
        ("fp16", "fp16"),
        ("half", "fp16"),
        ("int32", "int32"),
        ("int64", "int64"),
        ("fp32", "fp32"),
        ("float", "fp32"),
        ("bool", "bool"),
    ):
        if token in text:
            return name
    return None


# --------------------------------------------------------------------------------------------


def _prepare_plugin_mode(
    trt: ModuleType,
    version: TrtVersion,
    target: TargetInfo,
    cc: ComputeCapability,
    export: Path,
    config: EngineConfig,
    out_dir: Path,
    say: Progress,
) -> tuple[Path, list[str]]:
    """Write the plugin-mode ONNX and register/load the plugins; return (onnx, libraries)."""
    from edgevae.trt.plugin_graph import write_plugin_onnx

    prec = config.precision
    libraries: list[str] = []
    aot = config.plugin_library is None
    if aot:
        if not supports_aot_plugins(version):
            raise EngineBuildError(
                f"--mode plugin with Python AOT plugins needs TensorRT >= 10.9; this machine has "
                f"{version} (JetPack 6 ships 10.3). Build the C++ plugin library "
                "(kernels/plugins, see its README) and pass --plugin-lib PATH, or use --mode split."
            )
        from edgevae.trt.plugins import register_plugins

        driver = CudaVersion.parse(target.cuda_driver) if target.cuda_driver else None
        names = register_plugins(trt, cc, driver)
        say(f"registered AOT plugins {', '.join(names)} (PTX for {cc.arch})")
    else:
        lib = Path(config.plugin_library).expanduser().resolve()  # type: ignore[arg-type]
        if not lib.is_file():
            raise ConfigError(
                f"plugin library {lib} does not exist; build it with `cmake -S kernels/plugins "
                "-B build/plugins && cmake --build build/plugins` (see kernels/plugins/README.md)."
            )
        if not trt.get_plugin_registry().load_library(str(lib)):
            raise EngineBuildError(
                f"TensorRT could not load the plugin library {lib}; rebuild it against this "
                f"TensorRT ({version}) on this device."
            )
        libraries.append(str(lib))
        say(f"loaded plugin library {lib.name}")
    stats = load_score_stats(export)
    onnx_path, info = write_plugin_onnx(
        onnx_for(export, "encode", prec),
        onnx_for(export, "decode", prec),
        stats,
        out_dir / f"analyze.{prec}.plugin.onnx",
        aot=aot,
    )
    say(f"plugin graph {onnx_path.name}: modalities {', '.join(info.modalities)}")
    return onnx_path, libraries


def _logger_class(trt: ModuleType) -> type:
    """A trt.ILogger that forwards to TensorRT's severity filter and keeps every message."""

    class CapturingLogger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[str] = []
            self.errors: list[str] = []
            self.warnings: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            self.messages.append(str(msg))
            if severity in (trt.ILogger.ERROR, trt.ILogger.INTERNAL_ERROR):
                self.errors.append(str(msg))
            elif severity == trt.ILogger.WARNING:
                self.warnings.append(str(msg))

    return CapturingLogger


def _build_one(
    trt: ModuleType,
    version: TrtVersion,
    job: _Job,
    config: EngineConfig,
    target: TargetInfo,
    cache_file: Path,
    plugin_libraries: list[str],
    export: Path,
    say: Progress,
) -> None:
    logger = _logger_class(trt)()
    try:
        builder = trt.Builder(logger)
    except (TypeError, RuntimeError) as exc:  # "factory function returned nullptr" without GPU
        raise EngineBuildError(
            f"TensorRT could not create a builder ({exc}; {' '.join(logger.errors[-2:])}); is the "
            "GPU visible and the driver working? Run `edgevae doctor`."
        ) from None
    prefer_aot = config.mode == "plugin" and config.plugin_library is None
    network = builder.create_network(network_flags(trt, version, prefer_aot=prefer_aot))
    parser = trt.OnnxParser(network, logger)
    say(f"parsing {job.onnx.name}")
    if not parser.parse_from_file(str(job.onnx)):
        errors = [parser.get_error(i) for i in range(parser.num_errors)]
        raise EngineBuildError(parser_error_message(job.onnx, errors, version))

    inputs = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        inputs[tensor.name] = tuple(int(d) for d in tensor.shape)
    profiles = profile_shapes(inputs, config.batch)

    bconfig = builder.create_builder_config()
    workspace = effective_workspace_mib(config.workspace_mib, target.free_mib)
    if workspace < config.workspace_mib:
        say(f"workspace lowered to {workspace} MiB (half of the {target.free_mib} MiB free)")
    bconfig.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace << 20)
    bconfig.builder_optimization_level = config.opt_level
    if config.tf32:
        bconfig.set_flag(trt.BuilderFlag.TF32)
    else:
        bconfig.clear_flag(trt.BuilderFlag.TF32)  # strict FP32 (TensorRT enables TF32 by default)
    bconfig.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    profile = builder.create_optimization_profile()
    for name, shapes in profiles.items():
        profile.set_shape(name, shapes.min, shapes.opt, shapes.max)
    bconfig.add_optimization_profile(profile)
    cache_note = _load_timing_cache(bconfig, cache_file)

    say(
        f"building {job.plan.name} (batch {','.join(map(str, config.batch))}, workspace "
        f"{workspace} MiB, opt level {config.opt_level}, TF32 {'on' if config.tf32 else 'off'})"
    )
    start = time.perf_counter()
    try:
        plan = builder.build_serialized_network(network, bconfig)
    except (RuntimeError, MemoryError) as exc:
        logger.errors.append(str(exc))
        plan = None
    seconds = time.perf_counter() - start
    if plan is None:
        msg = oom_message(logger.messages + logger.errors, job, config, workspace, target.free_mib)
        if msg:
            raise EngineBuildError(msg)
        last = "; ".join(logger.errors[-3:]) or "no error was logged"
        raise EngineBuildError(
            f"TensorRT failed to build {job.onnx.name}: {last}. Re-run with a smaller "
            "--opt-level or check `edgevae doctor`."
        )
    write_bytes_atomic(cache_file, bytes(memoryview(bconfig.get_timing_cache().serialize())))
    write_bytes_atomic(job.plan, bytes(memoryview(plan)))
    io, layers = _inspect(trt, logger, job.plan)
    write_engine_manifest(
        job.plan,
        role=job.role,
        config=config.to_dict(),
        target=target,
        onnx_inputs={job.onnx.name: sha256_file(job.onnx)},
        profiles={n: p.to_dict() for n, p in profiles.items()},
        io=io,
        layers=layers,
        plugin_libraries=plugin_libraries,
        export_dir=str(export.resolve()),
        build={
            "seconds": round(seconds, 3),
            "workspace_mib": workspace,
            "workspace_requested_mib": config.workspace_mib,
            "timing_cache": str(cache_file),
            "timing_cache_note": cache_note,
            "strongly_typed": True,
            "warnings": logger.warnings[-20:],
        },
    )
    precisions = (layers or {}).get("precisions") or {}
    summary = ", ".join(f"{k} {v}" for k, v in sorted(precisions.items())) or "n/a"
    size = job.plan.stat().st_size
    say(f"wrote {job.plan.name} ({size / 1e6:.1f} MB, {seconds:.1f} s; layers: {summary})")


def _load_timing_cache(bconfig: Any, cache_file: Path) -> str:
    data = cache_file.read_bytes() if cache_file.is_file() else b""
    cache = bconfig.create_timing_cache(data)
    if bconfig.set_timing_cache(cache, False):
        return f"loaded {len(data)} bytes" if data else "new"
    # a cache TensorRT rejects (corrupt, other version): start afresh, it is overwritten on success
    bconfig.set_timing_cache(bconfig.create_timing_cache(b""), False)
    return "ignored an incompatible cache"


def _inspect(
    trt: ModuleType, logger: Any, plan_path: Path
) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """I/O tensors and per-layer precisions of the built engine (what TensorRT actually chose)."""
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan_path.read_bytes())
    if engine is None:
        raise EngineBuildError(
            f"TensorRT built {plan_path.name} but cannot load it back ({'; '.join(logger.errors)})."
        )
    io: dict[str, dict[str, Any]] = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        io[name] = {
            "mode": "input" if is_input else "output",
            "shape": [int(d) for d in engine.get_tensor_shape(name)],
            "dtype": _dtype_name(trt, engine.get_tensor_dtype(name)),
        }
    layers = None
    try:
        inspector = engine.create_engine_inspector()
        layers = summarize_layers(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    except (AttributeError, RuntimeError):  # older bindings / inspector unavailable
        layers = None
    return io, layers


def _dtype_name(trt: ModuleType, dtype: Any) -> str:
    import numpy as np

    try:
        return np.dtype(trt.nptype(dtype)).name
    except (TypeError, KeyError, AttributeError):
        return str(dtype).split(".")[-1].lower()


def _call(obj: Any, method: str) -> Any:
    fn = getattr(obj, method, None)
    if fn is None:
        return None
    try:
        return fn() if callable(fn) else fn
    except Exception:  # older TensorRT error objects lack some accessors
        return None


__all__ = [
    "ProfileShapes",
    "build_engine",
    "effective_workspace_mib",
    "network_flags",
    "oom_message",
    "parser_error_message",
    "summarize_layers",
    "timing_cache_file",
]
