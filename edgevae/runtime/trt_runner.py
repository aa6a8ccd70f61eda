"""``TrtRunner``: run a TensorRT engine (or a split-mode pair) through the shared Runner interface.

* Name-based I/O (TensorRT >= 8.5; bindings are gone in 10): ``set_input_shape`` per input,
  ``set_tensor_address`` per tensor, ``execute_async_v3`` on the runner's own non-blocking
  stream; one synchronize per ``run``.
* Before anything is deserialized the engine manifest is compared with this machine: an engine
  built for another TensorRT version or compute capability is refused with what it was built
  for and the ``edgevae build`` command that rebuilds it (engines are not portable).
* Device buffers are allocated once for the profile's largest batch, so addresses never change
  and optional CUDA-graph replay (``cuda_graph=True``) keys graphs by batch size only; the first
  run of each batch size enqueues once outside capture (TensorRT's lazy initialisation), then
  captures (reference/tensorrt.md §2).
* A batch outside the engine's optimization profile is a ShapeError naming the profile.
* ``*.split.json`` bundles run encode engine -> ``poe_fusion`` kernel -> decode engine ->
  ``anomaly_score`` kernel on one stream, with the same outputs as the analyze graph.

CUDA comes from :mod:`edgevae.runtime.cuda_backend` (cuda-python by default, pycuda optional);
the kernels from :mod:`edgevae.kernels.launch`. TensorRT is imported lazily through
``require("tensorrt")``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from edgevae._util.lazy import require
from edgevae.errors import ConfigError, EdgeVAEError, EngineMismatchError, ShapeError
from edgevae.model.score_rules import COMBINE_RULES, check_combine
from edgevae.runtime.base import TensorInfo, check_feed
from edgevae.runtime.cuda_backend import CudaBackend, make_backend
from edgevae.trt.manifest import (
    SPLIT_SUFFIX,
    EngineManifest,
    check_compatible,
    read_engine_manifest,
    read_split_bundle,
)
from edgevae.trt.probe import probe_target


class _Engine:
    """One deserialized engine, its execution context and device buffers at the profile max."""

    def __init__(
        self,
        trt: ModuleType,
        manifest: EngineManifest,
        backend: CudaBackend,
        logger: Any,
        external: frozenset[str] = frozenset(),
    ) -> None:
        self.trt, self.manifest, self.backend = trt, manifest, backend
        self.external = external  # tensors whose memory someone else owns (split: decode's z)
        for lib in manifest.plugin_libraries:
            if not trt.get_plugin_registry().load_library(lib):
                raise EngineMismatchError(
                    f"{manifest.path.name} needs the plugin library {lib}, which TensorRT could "
                    f"not load; rebuild it or the engine with {manifest.rebuild_hint()}."
                )
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(manifest.path.read_bytes())
        if engine is None:
            raise EngineMismatchError(
                f"TensorRT could not load {manifest.path.name} "
                f"({'; '.join(getattr(logger, 'errors', [])[-2:]) or 'no details'}); rebuild it "
                f"with {manifest.rebuild_hint()}."
            )
        self.runtime, self.engine = runtime, engine
        self.context = engine.create_execution_context()
        self.inputs: dict[str, TensorInfo] = {}
        self.outputs: dict[str, TensorInfo] = {}
        self.profile: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dims = tuple(int(d) for d in engine.get_tensor_shape(name))
            shape = tuple("batch" if d < 0 else d for d in dims)
            info = TensorInfo(name, shape, np.dtype(trt.nptype(engine.get_tensor_dtype(name))))
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs[name] = info
                lo, _opt, hi = engine.get_tensor_profile_shape(name, 0)
                self.profile[name] = (tuple(lo), tuple(hi))
            else:
                self.outputs[name] = info
        self.max_batch = min(hi[0] for _lo, hi in self.profile.values())
        self.min_batch = max(lo[0] for lo, _hi in self.profile.values())
        self.buffers: dict[str, int] = {}  # owned device buffers, at the profile's max batch
        for name, info in {**self.inputs, **self.outputs}.items():
            if name not in external:
                self.buffers[name] = backend.malloc(self.nbytes(info, self.max_batch))
        self._batch: int | None = None

    @staticmethod
    def nbytes(info: TensorInfo, batch: int) -> int:
        dims = [batch if isinstance(d, str) else d for d in info.shape]
        return int(np.prod(dims, dtype=np.int64)) * info.dtype.itemsize

    def check_batch(self, batch: int) -> None:
        if not self.min_batch <= batch <= self.max_batch:
            cfg = self.manifest.raw.get("config", {})
            built = ",".join(str(b) for b in cfg.get("batch", [])) or "?"
            raise ShapeError(
                f"batch {batch} is outside the optimization profile of {self.manifest.path.name} "
                f"(batch {self.min_batch}..{self.max_batch}, built with --batch {built}); split "
                f"the batch or rebuild with {self.manifest.rebuild_hint()} --batch "
                f"{min(batch, self.min_batch)},{batch},{max(batch, self.max_batch)}."
            )

    def bind(self, batch: int, external: dict[str, int] | None = None) -> None:
        """Set input shapes for ``batch`` and every tensor address (once per batch size).

        ``external`` gives the addresses of the tensors this engine does not own.
        """
        if self._batch == batch:
            return
        for name, info in self.inputs.items():
            shape = tuple(batch if isinstance(d, str) else d for d in info.shape)
            if not self.context.set_input_shape(name, shape):
                raise ShapeError(
                    f"TensorRT rejected shape {shape} for input '{name}' of "
                    f"{self.manifest.path.name} (profile {self.profile[name][0]}..."
                    f"{self.profile[name][1]})."
                )
        addresses = {**self.buffers, **(external or {})}
        missing = [n for n in {**self.inputs, **self.outputs} if n not in addresses]
        if missing:  # pragma: no cover - a programming error, not user input
            raise EdgeVAEError(f"no device memory for {missing} of {self.manifest.path.name}.")
        for name, ptr in addresses.items():
            self.context.set_tensor_address(name, ptr)
        self._batch = batch

    def output_shape(self, name: str) -> tuple[int, ...]:
        return tuple(int(d) for d in self.context.get_tensor_shape(name))

    def enqueue(self, stream: int) -> None:
        if not self.context.execute_async_v3(stream):
            raise EdgeVAEError(
                f"TensorRT could not enqueue {self.manifest.path.name}; check the input shapes "
                "and that the GPU is not out of memory."
            )

    def close(self) -> None:
        for ptr in self.buffers.values():
            self.backend.free(ptr)
        self.buffers = {}
        self.context = self.engine = self.runtime = None


class SplitKernels(Protocol):
    """The two kernels split mode runs between its engines (raw device pointers, one stream)."""

    def poe_fusion(
        self, mu: int, logvar: int, mask: int, z_mu: int, z_logvar: int, kl: int, cross: int,
        b: int, m: int, d: int, stream: int,
    ) -> None: ...  # fmt: skip

    def anomaly_score(
        self, inputs: list[int], recons: list[int], numel: list[int], mask: int, kl: int,
        cross: int, mean: int, std: int, weight: int, parts: int, score: int, b: int, m: int,
        combine: int, stream: int,
    ) -> None: ...  # fmt: skip


class LaunchedKernels:
    """:class:`SplitKernels` through :mod:`edgevae.kernels.launch` (cubin/PTX for this GPU)."""

    def __init__(self, backend: str = "cuda-python") -> None:
        from edgevae.kernels.launch import get_launcher
        from edgevae.kernels.reference import MAX_MODALITIES

        self.launcher = get_launcher(backend)
        self.max_modalities = MAX_MODALITIES

        class ScoreInputs(ctypes.Structure):  # mirrors struct ScoreInputs in anomaly_score.cu
            _fields_ = [
                ("inputs", ctypes.c_void_p * MAX_MODALITIES),
                ("recons", ctypes.c_void_p * MAX_MODALITIES),
                ("numel", ctypes.c_longlong * MAX_MODALITIES),
            ]

        self.score_inputs = ScoreInputs

    def poe_fusion(self, mu, logvar, mask, z_mu, z_logvar, kl, cross, b, m, d, stream) -> None:
        p, i = ctypes.c_void_p, ctypes.c_int
        args = [p(mu), p(logvar), p(mask), p(None), p(z_mu), p(z_logvar), p(None), p(kl),
                p(cross), i(b), i(m), i(d)]  # fmt: skip
        threads = min(256, (d + 31) // 32 * 32)
        self.launcher.launch(
            "poe_fusion", (b, 1, 1), (threads, 1, 1), args, stream=stream, shared=8 * d
        )

    def anomaly_score(
        self, inputs, recons, numel, mask, kl, cross, mean, std, weight, parts, score, b, m,
        combine, stream,
    ) -> None:  # fmt: skip
        if m > self.max_modalities:
            raise ShapeError(f"anomaly_score supports at most {self.max_modalities} modalities.")
        table = self.score_inputs()
        for j in range(m):
            table.inputs[j], table.recons[j], table.numel[j] = inputs[j], recons[j], numel[j]
        p, i = ctypes.c_void_p, ctypes.c_int
        args = [table, p(mask), p(kl), p(cross), p(mean), p(std), p(weight), p(None), p(parts),
                p(score), i(b), i(m), i(combine)]  # fmt: skip
        self.launcher.launch("anomaly_score", (b, 1, 1), (256, 1, 1), args, stream=stream)


class TrtRunner:
    """Run a ``.plan`` engine or a ``*.split.json`` bundle built by ``edgevae build``.

    Args:
        path: the engine (native/plugin mode) or split bundle.
        device: ``"cuda"`` (TensorRT runs on the GPU; ``"cpu"`` is refused).
        backend: ``"cuda-python"`` (default) or ``"pycuda"``.
        cuda_graph: replay a captured CUDA graph per batch size (cuda-python only).
        check: compare the engine manifest with this machine first (default True).
        cuda: a CUDA backend object (tests inject a fake); default from ``backend``.
        kernels: split-mode kernels (tests inject a fake); default :class:`LaunchedKernels`.

    Raises:
        ConfigError: bad device/backend or path kind.
        MissingDependencyError: TensorRT, cuda-python or a GPU missing.
        EngineMismatchError: an engine built elsewhere (TensorRT version, compute capability),
            a missing manifest, or one TensorRT cannot load.
    """

    name = "trt"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        device: str = "cuda",
        backend: str = "cuda-python",
        cuda_graph: bool = False,
        check: bool = True,
        cuda: CudaBackend | None = None,
        kernels: SplitKernels | None = None,
    ) -> None:
        if not str(device).startswith("cuda"):
            raise ConfigError(
                f"TensorRT engines run on the GPU, not on '{device}'; use --device cuda (or run "
                "the .onnx with the ort backend on the CPU)."
            )
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(
                f"engine '{self.path}' does not exist; build it with `edgevae build`."
            )
        trt = require("tensorrt")
        self.split = self.path.name.endswith(SPLIT_SUFFIX)
        bundle = read_split_bundle(self.path) if self.split else None
        plans = [bundle.encode, bundle.decode] if bundle else [self.path]
        manifests = [read_engine_manifest(p) for p in plans]
        if check:
            here = probe_target(trt)
            for m in manifests:
                check_compatible(m, here)
        self.trt, self.bundle, self.cuda_graph = trt, bundle, cuda_graph
        self.cuda = cuda if cuda is not None else make_backend(backend)
        self.stream = self.cuda.create_stream()
        self._logger = _quiet_logger(trt)
        self._engines = [
            _Engine(trt, m, self.cuda, self._logger, frozenset({"z"} if i == 1 else ()))
            for i, m in enumerate(manifests)
        ]
        self._graphs: dict[int, Any] = {}
        self._host: dict[str, np.ndarray] = {}
        self._extra: dict[str, int] = {}
        self.kernels = kernels
        if self.split:
            self._setup_split(kernels, backend)
        self._inputs = dict(self._engines[0].inputs)
        self._outputs = self._output_infos()

    # ------------------------------------------------------------------ Runner interface
    @property
    def inputs(self) -> dict[str, TensorInfo]:
        return self._inputs

    @property
    def outputs(self) -> dict[str, TensorInfo]:
        return self._outputs

    @property
    def batch_range(self) -> tuple[int, int]:
        """(MIN, MAX) batch the engine(s) accept."""
        return (
            max(e.min_batch for e in self._engines),
            min(e.max_batch for e in self._engines),
        )

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch: copy inputs in, enqueue (or replay a graph), copy outputs out.

        Raises:
            ShapeError: inputs that do not match, or a batch outside the profile.
        """
        check_feed(feed, self._inputs, "trt")
        batch = int(next(iter(feed.values())).shape[0])
        for engine in self._engines:
            engine.check_batch(batch)
        self._bind(batch)
        first = self._engines[0]
        for name in self._inputs:
            self._h2d(name, first.buffers[name], np.ascontiguousarray(feed[name]))
        if self.cuda_graph:
            graph = self._graphs.get(batch)
            if graph is None:
                self._enqueue_all(batch)  # warm-up outside capture (lazy init, module loads)
                self.cuda.begin_capture(self.stream)
                self._enqueue_all(batch)
                graph = self._graphs[batch] = self.cuda.end_capture(self.stream)
            self.cuda.launch_graph(graph, self.stream)
        else:
            self._enqueue_all(batch)
        staged = {}
        for name, (ptr, shape, dtype) in self._output_buffers(batch).items():
            host = self._stage(name, int(np.prod(shape)) * dtype.itemsize)
            view = host.view(dtype)[: int(np.prod(shape))].reshape(shape)
            self.cuda.d2h(view, ptr, self.stream)
            staged[name] = view
        self.cuda.synchronize(self.stream)
        return {name: view.copy() for name, view in staged.items()}

    def close(self) -> None:
        """Free device memory, graphs and the stream (also on garbage collection)."""
        if getattr(self, "_engines", None) is None:
            return
        for graph in self._graphs.values():
            self.cuda.destroy_graph(graph)
        for engine in self._engines:
            engine.close()
        for ptr in self._extra.values():
            self.cuda.free(ptr)
        for array in self._host.values():
            self.cuda.host_free(array)
        self.cuda.destroy_stream(self.stream)
        self._engines, self._graphs, self._extra, self._host = None, {}, {}, {}  # type: ignore

    def __enter__(self) -> TrtRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # best effort; close() is the documented way
        with contextlib.suppress(Exception):  # interpreter shutdown: CUDA may be gone already
            self.close()

    # ------------------------------------------------------------------ internals
    def _stage(self, name: str, nbytes: int) -> np.ndarray:
        host = self._host.get(name)
        if host is None or host.nbytes < nbytes:
            if host is not None:
                self.cuda.host_free(host)
            host = self._host[name] = self.cuda.host_alloc(nbytes)
        return host

    def _h2d(self, name: str, ptr: int, array: np.ndarray) -> None:
        host = self._stage(name, array.nbytes)
        view = host.view(array.dtype)[: array.size].reshape(array.shape)
        view[...] = array
        self.cuda.h2d(ptr, view, self.stream)

    def _bind(self, batch: int) -> None:
        if not self.split:
            self._engines[0].bind(batch)
            return
        enc, dec = self._engines
        enc.bind(batch)
        dec.bind(batch, {"z": self._extra["z_mu"]})  # decode reads the fused z_mu in place

    def _enqueue_all(self, batch: int) -> None:
        if not self.split:
            self._engines[0].enqueue(self.stream)
            return
        enc, dec = self._engines
        assert self.bundle is not None and self.kernels is not None
        m, d = len(self.bundle.modalities), self.bundle.latent_dim
        x = self._extra
        enc.enqueue(self.stream)
        self.kernels.poe_fusion(
            enc.buffers["expert_mu"], enc.buffers["expert_logvar"], enc.buffers["mask"],
            x["z_mu"], x["z_logvar"], x["kl"], x["cross"], batch, m, d, self.stream,
        )  # fmt: skip
        dec.enqueue(self.stream)
        mods = self.bundle.modalities
        self.kernels.anomaly_score(
            [enc.buffers[n] for n in mods], [dec.buffers[f"recon_{n}"] for n in mods],
            [self._numel[n] for n in mods], enc.buffers["mask"], x["kl"], x["cross"],
            x["mean"], x["std"], x["weight"], x["score_parts"], x["score"], batch, m,
            self._combine, self.stream,
        )  # fmt: skip

    def _setup_split(self, kernels: SplitKernels | None, backend: str) -> None:
        assert self.bundle is not None
        enc, dec = self._engines
        mods, d = self.bundle.modalities, self.bundle.latent_dim
        need = {"expert_mu", "expert_logvar"}
        if not need <= set(enc.outputs) or set(enc.inputs) != {*mods, "mask"}:
            raise EngineMismatchError(
                f"{enc.manifest.path.name} is not a split-mode encode engine (inputs "
                f"{list(enc.inputs)}, outputs {list(enc.outputs)}); rebuild with --mode split."
            )
        if set(dec.inputs) != {"z"} or not {f"recon_{n}" for n in mods} <= set(dec.outputs):
            raise EngineMismatchError(
                f"{dec.manifest.path.name} is not a split-mode decode engine; rebuild with "
                "--mode split."
            )
        self.kernels = kernels if kernels is not None else LaunchedKernels(backend)
        b, m, p = enc.max_batch, len(mods), len(mods) + 2
        sizes = {"z_mu": b * d, "z_logvar": b * d, "kl": b, "cross": b * m, "score": b,
                 "score_parts": b * p, "mean": p, "std": p, "weight": p}  # fmt: skip
        for name, count in sizes.items():
            self._extra[name] = self.cuda.malloc(4 * count)
        stats = self.bundle.score_stats
        # kernels' combine argument (0 sum, 1 max); bundles built before the rule existed: sum
        self._combine = COMBINE_RULES.index(check_combine(stats.get("combine", "sum")))
        for key in ("mean", "std", "weight"):
            self._h2d(f"stats_{key}", self._extra[key], np.asarray(stats[key], np.float32))
        self.cuda.synchronize(self.stream)
        self._numel = {n: int(np.prod(enc.inputs[n].shape[1:])) for n in mods}

    def _output_infos(self) -> dict[str, TensorInfo]:
        if not self.split:
            return dict(self._engines[0].outputs)
        assert self.bundle is not None
        dec = self._engines[1]
        d, p = self.bundle.latent_dim, len(self.bundle.modalities) + 2
        f32 = np.dtype(np.float32)
        out = {
            "z_mu": TensorInfo("z_mu", ("batch", d), f32),
            "z_logvar": TensorInfo("z_logvar", ("batch", d), f32),
        }
        out.update({f"recon_{n}": dec.outputs[f"recon_{n}"] for n in self.bundle.modalities})
        out["score"] = TensorInfo("score", ("batch",), f32)
        out["score_parts"] = TensorInfo("score_parts", ("batch", p), f32)
        return out

    def _output_buffers(self, batch: int) -> dict[str, tuple[int, tuple[int, ...], np.dtype]]:
        if not self.split:
            eng = self._engines[0]
            return {
                n: (eng.buffers[n], eng.output_shape(n), info.dtype)
                for n, info in eng.outputs.items()
            }
        dec = self._engines[1]
        out = {}
        for name, info in self._outputs.items():
            shape = tuple(batch if isinstance(d, str) else d for d in info.shape)
            ptr = dec.buffers[name] if name.startswith("recon_") else self._extra[name]
            out[name] = (ptr, shape, info.dtype)
        return out


def _quiet_logger(trt: ModuleType) -> Any:
    """A TensorRT logger that keeps errors (quoted in exceptions) and drops the rest."""

    class Logger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.ERROR, trt.ILogger.INTERNAL_ERROR):
                self.errors.append(str(msg))

    return Logger()


__all__ = ["LaunchedKernels", "SplitKernels", "TrtRunner"]
