"""A FAKE of the small part of the TensorRT Python API that edgevae uses. It is NOT TensorRT.

It proves the *call sequence* of ``edgevae.trt.build`` and ``edgevae.runtime.trt_runner``
(strong typing flag, profiles, workspace, TF32 cleared, timing cache, parser errors, OOM logs,
name-based I/O, ``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3``, plugin
registration) on machines without TensorRT or a GPU. It proves nothing about TensorRT's
numerics, tactic selection, plugin execution or performance: those need the ``trt``-marked tests
on a real GPU (tests/trt/).

What it does instead of TensorRT:

* ``OnnxParser.parse_from_file`` reads the ONNX with ``onnx`` (inputs/outputs, nodes); op types
  listed in ``unsupported_ops`` fail with TensorRT-style parser errors naming the node;
  ``edgevae``-domain nodes need a plugin creator (QDP registration or ``load_library``).
* ``build_serialized_network`` returns a "plan": a JSON header + the ONNX bytes. ``oom=True``
  logs what a Jetson logs when tactic selection runs out of memory and returns None.
* An execution context runs the embedded ONNX with ONNX Runtime on a fake device memory
  (:class:`FakeDevice`) that :class:`FakeCudaBackend` hands to the runner as "device pointers".

Create one with :func:`make_fake_tensorrt` (a fresh module per test; ``calls`` records the
sequence) and inject it by monkeypatching ``require`` in the module under test.
"""

from __future__ import annotations

import base64
import json
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tests.fakes.fake_cuda import FakeCudaBackend, FakeDevice
from tests.fakes.fake_trt_plugin import FAKE_NS, FakePluginRegistry, _fake_trtp

PLAN_MAGIC = b"FAKETRTPLAN1\n"
__all__ = [
    "FakeCudaBackend",
    "FakeDevice",
    "FakePluginRegistry",
    "fake_target",
    "install",
    "make_fake_tensorrt",
]


class _Enum:
    """Integer-valued enum members with a readable repr (TensorRT's are pybind11 enums)."""

    def __init__(self, owner: str, name: str, value: int) -> None:
        self.owner, self.name, self.value = owner, name, value

    def __int__(self) -> int:
        return self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Enum) and (self.owner, self.value) == (other.owner, other.value)

    def __hash__(self) -> int:
        return hash((self.owner, self.value))

    def __le__(self, other: _Enum) -> bool:
        return self.value <= other.value

    def __repr__(self) -> str:
        return f"{self.owner}.{self.name}"


def _enum(owner: str, *names: str) -> type:
    return type(owner, (), {n: _Enum(owner, n, i) for i, n in enumerate(names)})


@dataclass
class FakeParserError:
    """TensorRT's IParserError accessors (10.x has node_name/node_operator)."""

    _desc: str
    _node: int
    _name: str
    _op: str

    def desc(self) -> str:
        return self._desc

    def node(self) -> int:
        return self._node

    def node_name(self) -> str:
        return self._name

    def node_operator(self) -> str:
        return self._op

    def code(self) -> int:
        return 8  # UNSUPPORTED_NODE

    def __str__(self) -> str:
        return f"In node {self._node} ({self._name}): {self._desc}"


@dataclass
class _Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: Any


@dataclass
class FakeNetwork:
    flags: int
    inputs: list[_Tensor] = field(default_factory=list)
    outputs: list[_Tensor] = field(default_factory=list)
    onnx_bytes: bytes = b""
    nodes: list[tuple[str, str, str]] = field(default_factory=list)  # (name, op, domain)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # inferred, -1 = dynamic

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    @property
    def num_layers(self) -> int:
        return len(self.nodes)

    def get_input(self, i: int) -> _Tensor:
        return self.inputs[i]

    def get_output(self, i: int) -> _Tensor:
        return self.outputs[i]


class FakeTimingCache:
    def __init__(self, data: bytes, version: str) -> None:
        self.data, self.version = bytes(data), version
        header = f"FAKECACHE:{version}:".encode()
        self.valid = not self.data or self.data.startswith(header)
        self.entries = int(self.data[len(header) :] or 0) if self.valid and self.data else 0

    def serialize(self) -> memoryview:
        return memoryview(f"FAKECACHE:{self.version}:{self.entries}".encode())


def make_fake_tensorrt(
    version: str = "10.13.3.9",
    *,
    gpu: bool = True,
    unsupported_ops: tuple[str, ...] = (),
    oom: bool = False,
    build_error: str | None = None,
    device: FakeDevice | None = None,
) -> types.ModuleType:
    """Build a fresh fake ``tensorrt`` module.

    Args:
        version: ``__version__``; 11.x drops the weak-typing flags (FP16/INT8), like the real one;
            < 10.9 has no AOT plugin flag.
        gpu: False makes ``Builder``/``Runtime`` fail the way TensorRT does without a device.
        unsupported_ops: ONNX op types the parser rejects (with node names).
        oom: the build logs a tactic out-of-memory and returns None.
        build_error: the build logs this error and returns None.
        device: the fake device memory shared with :class:`FakeCudaBackend`.
    """
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.__file__ = "<fake tensorrt: tests/fakes/fake_tensorrt.py>"
    trt.IS_FAKE = True
    trt.calls = calls = []
    trt.device = device = device or FakeDevice()
    major, minor = (int(x) for x in version.split(".")[:2])
    aot = (major, minor) >= (10, 9)

    flag_names = ["EXPLICIT_BATCH", "STRONGLY_TYPED"]
    if aot:
        flag_names += ["PREFER_AOT_PYTHON_PLUGINS", "PREFER_JIT_PYTHON_PLUGINS"]
    trt.NetworkDefinitionCreationFlag = _enum("NetworkDefinitionCreationFlag", *flag_names)
    builder_flags = ["TF32", "REFIT", "DEBUG"] + (["FP16", "INT8", "BF16"] if major <= 10 else [])
    trt.BuilderFlag = _enum("BuilderFlag", *builder_flags)
    trt.MemoryPoolType = _enum("MemoryPoolType", "WORKSPACE", "DLA_MANAGED_SRAM")
    trt.ProfilingVerbosity = _enum("ProfilingVerbosity", "LAYER_NAMES_ONLY", "NONE", "DETAILED")
    trt.TensorIOMode = _enum("TensorIOMode", "NONE", "INPUT", "OUTPUT")
    trt.DataType = _enum("DataType", "FLOAT", "HALF", "INT8", "INT32", "BOOL")
    trt.LayerInformationFormat = _enum("LayerInformationFormat", "ONELINE", "JSON")
    _np = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32}
    trt.nptype = lambda dt: _np[dt.name]
    _onnx_to_trt = {1: trt.DataType.FLOAT, 10: trt.DataType.HALF, 6: trt.DataType.INT32}

    class ILogger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = (
            _Enum("Severity", n, i)
            for i, n in enumerate(("INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"))
        )

        def __init__(self) -> None:
            pass

        def log(self, severity: Any, msg: str) -> None:  # overridden by subclasses
            pass

    class Logger(ILogger):
        def __init__(self, min_severity: Any = ILogger.WARNING) -> None:
            super().__init__()
            self.min_severity = min_severity

    trt.ILogger, trt.Logger = ILogger, Logger

    def _no_device(logger: ILogger) -> None:
        logger.log(ILogger.ERROR, "CUDA initialization failure with error: 100")
        raise TypeError("pybind11::init(): factory function returned nullptr")

    registry = FakePluginRegistry(calls)
    trt.get_plugin_registry = lambda: registry
    trt.plugin = _fake_trtp(registry)

    class OptimizationProfile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple] = {}

        def set_shape(self, name: str, min: Any, opt: Any, max: Any) -> None:
            calls.append(("profile.set_shape", name, tuple(min), tuple(opt), tuple(max)))
            self.shapes[name] = (tuple(min), tuple(opt), tuple(max))

    class BuilderConfig:
        def __init__(self) -> None:
            self.flags = {trt.BuilderFlag.TF32}  # TensorRT enables TF32 by default
            self.pool: dict[Any, int] = {}
            self.profiles: list[OptimizationProfile] = []
            self.builder_optimization_level = 3
            self.profiling_verbosity = trt.ProfilingVerbosity.LAYER_NAMES_ONLY
            self.cache: FakeTimingCache | None = None

        def set_memory_pool_limit(self, pool: Any, nbytes: int) -> None:
            calls.append(("set_memory_pool_limit", pool.name, nbytes))
            self.pool[pool] = nbytes

        def set_flag(self, flag: Any) -> None:
            calls.append(("set_flag", flag.name))
            self.flags.add(flag)

        def clear_flag(self, flag: Any) -> None:
            calls.append(("clear_flag", flag.name))
            self.flags.discard(flag)

        def get_flag(self, flag: Any) -> bool:
            return flag in self.flags

        def add_optimization_profile(self, profile: OptimizationProfile) -> int:
            calls.append(("add_optimization_profile", len(profile.shapes)))
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, data: bytes) -> FakeTimingCache:
            calls.append(("create_timing_cache", len(data)))
            return FakeTimingCache(data, version)

        def set_timing_cache(self, cache: FakeTimingCache, ignore_mismatch: bool) -> bool:
            calls.append(("set_timing_cache", cache.valid, ignore_mismatch))
            if cache.valid:
                self.cache = cache
            return cache.valid

        def get_timing_cache(self) -> FakeTimingCache:
            assert self.cache is not None, "get_timing_cache before set_timing_cache"
            return self.cache

    class Builder:
        def __init__(self, logger: ILogger) -> None:
            calls.append(("Builder",))
            self.logger = logger
            if not gpu:
                _no_device(logger)

        def create_network(self, flags: int) -> FakeNetwork:
            calls.append(("create_network", flags))
            return FakeNetwork(flags)

        def create_builder_config(self) -> BuilderConfig:
            calls.append(("create_builder_config",))
            return BuilderConfig()

        def create_optimization_profile(self) -> OptimizationProfile:
            return OptimizationProfile()

        def build_serialized_network(self, network: FakeNetwork, config: BuilderConfig) -> Any:
            calls.append(("build_serialized_network",))
            if oom:
                self.logger.log(
                    ILogger.WARNING,
                    "Tactic Device request: 826MB Available: 186MB. Device memory is "
                    "insufficient to use tactic.",
                )
                self.logger.log(
                    ILogger.ERROR,
                    "[optimizer.cpp::computeCosts::3728] Error Code 10: Internal Error (Could "
                    "not find any implementation for node /encoders.0/conv/Conv.)",
                )
                return None
            if build_error:
                self.logger.log(ILogger.ERROR, build_error)
                return None
            if len(config.profiles) != 1:
                raise AssertionError("edgevae builds exactly one optimization profile")
            shapes = config.profiles[0].shapes
            for t in network.inputs:
                if t.name not in shapes:
                    self.logger.log(ILogger.ERROR, f"no profile shape for input {t.name}")
                    return None
            if config.cache is not None:
                config.cache.entries += network.num_layers
            header = {
                "version": version,
                "flags": network.flags,
                "tf32": trt.BuilderFlag.TF32 in config.flags,
                "inputs": [(t.name, t.shape, t.dtype.name) for t in network.inputs],
                "outputs": [(t.name, t.shape, t.dtype.name) for t in network.outputs],
                "profile": {k: [list(s) for s in v] for k, v in shapes.items()},
                "nodes": network.nodes,
                "onnx": base64.b64encode(network.onnx_bytes).decode(),
            }
            return memoryview(PLAN_MAGIC + json.dumps(header).encode())

    class OnnxParser:
        def __init__(self, network: FakeNetwork, logger: ILogger) -> None:
            self.network, self.logger = network, logger
            self.errors: list[FakeParserError] = []

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, i: int) -> FakeParserError:
            return self.errors[i]

        def parse_from_file(self, path: str) -> bool:
            import onnx

            calls.append(("parse_from_file", Path(path).name))
            model = onnx.load(path)
            for i, node in enumerate(model.graph.node):
                if node.op_type in unsupported_ops:
                    self.errors.append(
                        FakeParserError(
                            f"No importer registered for op: {node.op_type}",
                            i,
                            node.name,
                            node.op_type,
                        )
                    )
                elif node.domain == FAKE_NS and not registry.has(node.op_type):
                    self.errors.append(
                        FakeParserError(
                            f"getPluginCreator could not find plugin {node.op_type} version 1 "
                            f"namespace {FAKE_NS}",
                            i,
                            node.name,
                            node.op_type,
                        )
                    )
            if self.errors:
                return False
            inits = {t.name for t in model.graph.initializer}

            def tensor(vi: Any) -> _Tensor:
                dims = tuple(
                    d.dim_value if d.HasField("dim_value") else -1
                    for d in vi.type.tensor_type.shape.dim
                )
                elem = vi.type.tensor_type.elem_type
                return _Tensor(vi.name, dims, _onnx_to_trt.get(elem, trt.DataType.FLOAT))

            self.network.inputs = [tensor(v) for v in model.graph.input if v.name not in inits]
            self.network.outputs = [tensor(v) for v in model.graph.output]
            self.network.nodes = [(n.name, n.op_type, n.domain) for n in model.graph.node]
            self.network.onnx_bytes = model.SerializeToString()
            inferred = onnx.shape_inference.infer_shapes(model)
            for vi in [*inferred.graph.value_info, *inferred.graph.input]:
                self.network.shapes[vi.name] = tensor(vi).shape
            for node in model.graph.node:
                if node.domain == FAKE_NS:
                    registry.instantiate(node, self.network)
            return True

    class Runtime:
        def __init__(self, logger: ILogger) -> None:
            calls.append(("Runtime",))
            self.logger = logger
            if not gpu:
                _no_device(logger)

        def deserialize_cuda_engine(self, data: bytes) -> FakeEngine | None:
            calls.append(("deserialize_cuda_engine",))
            data = bytes(data)
            if not data.startswith(PLAN_MAGIC):
                self.logger.log(ILogger.ERROR, "Serialization assertion magicTagRead failed")
                return None
            header = json.loads(data[len(PLAN_MAGIC) :])
            if header["version"] != version:
                self.logger.log(ILogger.ERROR, "Version tag does not match")
                return None
            return FakeEngine(trt, header, calls)

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    return trt


class FakeEngine:
    """ICudaEngine: name-based I/O, profile shapes, inspector, execution contexts."""

    def __init__(self, trt: types.ModuleType, header: dict, calls: list) -> None:
        self.trt, self.header, self.calls = trt, header, calls
        self.io = [(n, tuple(s), d, True) for n, s, d in header["inputs"]] + [
            (n, tuple(s), d, False) for n, s, d in header["outputs"]
        ]

    @property
    def num_io_tensors(self) -> int:
        return len(self.io)

    @property
    def num_optimization_profiles(self) -> int:
        return 1

    def _find(self, name: str) -> tuple:
        return next(t for t in self.io if t[0] == name)

    def get_tensor_name(self, i: int) -> str:
        return self.io[i][0]

    def get_tensor_mode(self, name: str) -> Any:
        mode = self.trt.TensorIOMode
        return mode.INPUT if self._find(name)[3] else mode.OUTPUT

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self._find(name)[1]

    def get_tensor_dtype(self, name: str) -> Any:
        return getattr(self.trt.DataType, self._find(name)[2])

    def get_tensor_profile_shape(self, name: str, profile: int) -> list[tuple[int, ...]]:
        return [tuple(s) for s in self.header["profile"][name]]

    def create_engine_inspector(self) -> Any:
        nodes = self.header["nodes"]
        layers = [
            {
                "Name": name or op,
                "LayerType": "PluginV3" if domain == FAKE_NS else op,
                "Outputs": [{"Name": f"{name}_out", "Format/Datatype": "Row major linear FP32"}],
            }
            for name, op, domain in nodes
        ]
        info = json.dumps({"Layers": layers, "Bindings": [t[0] for t in self.io]})
        return types.SimpleNamespace(get_engine_information=lambda fmt: info)

    def create_execution_context(self) -> FakeContext:
        self.calls.append(("create_execution_context",))
        return FakeContext(self)


class FakeContext:
    """IExecutionContext: runs the plan's embedded ONNX with ONNX Runtime on fake device memory."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self._session = None

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.engine.calls.append(("set_input_shape", name, tuple(shape)))
        lo, _, hi = self.engine.get_tensor_profile_shape(name, 0)
        ok = len(shape) == len(lo) and all(
            a <= s <= b for a, s, b in zip(lo, shape, hi, strict=True)
        )
        if ok:
            self.shapes[name] = tuple(shape)
        return ok

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if name in self.shapes:
            return self.shapes[name]
        batch = next(iter(self.shapes.values()))[0] if self.shapes else -1
        dims = self.engine.get_tensor_shape(name)
        return tuple(batch if d == -1 else d for d in dims)

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.engine.calls.append(("set_tensor_address", name))
        self.addresses[name] = int(ptr)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        self.engine.calls.append(("execute_async_v3", int(stream_handle)))
        missing = [t[0] for t in self.engine.io if t[0] not in self.addresses]
        if missing:
            raise AssertionError(f"execute_async_v3 without addresses for {missing}")
        self.engine.trt.device.run_or_capture(self._execute)
        return True

    def _execute(self) -> None:
        import onnxruntime as ort

        device: FakeDevice = self.engine.trt.device
        if self._session is None:
            onnx_bytes = base64.b64decode(self.engine.header["onnx"])
            self._session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        np_t = self.engine.trt.nptype
        feed = {}
        for name, _, dtype, is_input in self.engine.io:
            if is_input:
                dt = np_t(getattr(self.engine.trt.DataType, dtype))
                feed[name] = device.view(self.addresses[name], dt, self.shapes[name]).copy()
        outputs = self._session.run(None, feed)
        names = [o.name for o in self._session.get_outputs()]
        for name, value in zip(names, outputs, strict=True):
            value = np.ascontiguousarray(value)
            device.buffers[self.addresses[name]][: value.nbytes] = value.tobytes()


def fake_target(
    trt: types.ModuleType, *, cc: str = "8.7", free_mib: int | None = 4096, cuda: str = "12.6"
) -> Any:
    """A TargetInfo for the fake: a Jetson AGX Orin (JetPack 6 CUDA) with the fake's TensorRT."""
    from edgevae.trt.probe import TargetInfo

    return TargetInfo(
        trt_version=trt.__version__,
        compute_capability=cc,
        gpu_name="Orin (fake)",
        cuda_runtime=cuda,
        cuda_driver=cuda,
        jetpack="6.1/6.2",
        l4t="36.4.3",
        jetson_model="NVIDIA Jetson AGX Orin Developer Kit (fake)",
        free_mib=free_mib,
        total_mib=None if free_mib is None else 2 * free_mib,
    )


def install(
    monkeypatch: Any, module: types.ModuleType, trt: types.ModuleType, **target: Any
) -> None:
    """Make ``module`` (edgevae.trt.build or edgevae.runtime.trt_runner) see the fake TensorRT.

    Patches the module's ``require`` (so ``require("tensorrt")`` returns the fake) and its
    ``probe_target`` (so this machine looks like a Jetson with the fake's TensorRT version).
    """
    from edgevae._util.lazy import require as real_require

    def fake_require(name: str) -> Any:
        if name == "tensorrt":
            return trt
        if name == "tensorrt.plugin":
            return trt.plugin
        return real_require(name)

    monkeypatch.setattr(module, "require", fake_require)
    monkeypatch.setattr(module, "probe_target", lambda *a, **k: fake_target(trt, **target))
