"""Device memory, streams, copies and CUDA graphs for the TensorRT runner (``TrtRunner``).

Two implementations of one small protocol, imported lazily:

* ``cuda-python`` (default, ``cuda.bindings.runtime``): what NVIDIA's TensorRT samples use since
  10.14; pinned host staging buffers, a non-blocking stream, stream capture into CUDA graphs.
* ``pycuda`` (optional, legacy): the same copies and streams; no CUDA graphs.

Tests substitute a fake (tests/fakes/fake_tensorrt.py) with the same methods.
"""

from __future__ import annotations

import ctypes
from typing import Any, Protocol

import numpy as np

from edgevae._util.choices import check_choice
from edgevae._util.lazy import require
from edgevae.errors import ConfigError, EdgeVAEError, MissingDependencyError

BACKENDS = ("cuda-python", "pycuda")


class CudaBackend(Protocol):
    """What the runner needs from CUDA. Pointers and streams are plain ints."""

    name: str

    def create_stream(self) -> int: ...
    def destroy_stream(self, stream: int) -> None: ...
    def malloc(self, nbytes: int) -> int: ...
    def free(self, ptr: int) -> None: ...
    def host_alloc(self, nbytes: int) -> np.ndarray: ...
    def host_free(self, array: np.ndarray) -> None: ...
    def h2d(self, dst: int, src: np.ndarray, stream: int) -> None: ...
    def d2h(self, dst: np.ndarray, src: int, stream: int) -> None: ...
    def synchronize(self, stream: int) -> None: ...
    def begin_capture(self, stream: int) -> None: ...
    def end_capture(self, stream: int) -> Any: ...
    def launch_graph(self, graph: Any, stream: int) -> None: ...
    def destroy_graph(self, graph: Any) -> None: ...


def make_backend(name: str = "cuda-python") -> CudaBackend:
    """The named backend.

    Raises:
        ConfigError: unknown name; MissingDependencyError: package or driver missing.
    """
    check_choice(name, BACKENDS, "CUDA backend")
    return CudaPythonBackend() if name == "cuda-python" else PyCudaBackend()


class CudaPythonBackend:
    """cuda-python runtime API (``cuda.bindings.runtime``)."""

    name = "cuda-python"

    def __init__(self) -> None:
        try:
            self.rt = require("cuda.bindings.runtime")
        except MissingDependencyError:
            self.rt = require("cuda.cudart")  # cuda-python < 12.8 layout
        try:
            err, count = self.rt.cudaGetDeviceCount()
        except Exception as exc:  # cuda-bindings raises when libcudart/libcuda cannot load
            raise MissingDependencyError(
                f"the CUDA runtime could not be loaded ({exc}); TensorRT engines need an NVIDIA "
                "GPU and driver (run `edgevae doctor`)."
            ) from None
        if int(err) != 0 or count < 1:
            raise MissingDependencyError(
                f"no CUDA device is usable ({self._name(err)}); TensorRT engines need an NVIDIA "
                "GPU and driver (run `edgevae doctor`)."
            )
        self._host: dict[int, int] = {}  # id(array) -> pinned pointer

    def _name(self, err: Any) -> str:
        return getattr(err, "name", str(err))

    def _check(self, result: Any, what: str) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise EdgeVAEError(f"CUDA {what} failed with {self._name(err)}.")
        return rest[0] if len(rest) == 1 else (tuple(rest) if rest else None)

    def create_stream(self) -> int:
        rt = self.rt
        return int(self._check(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking), "stream"))

    def destroy_stream(self, stream: int) -> None:
        self._check(self.rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def malloc(self, nbytes: int) -> int:
        return int(self._check(self.rt.cudaMalloc(max(1, nbytes)), f"cudaMalloc({nbytes})"))

    def free(self, ptr: int) -> None:
        self._check(self.rt.cudaFree(ptr), "cudaFree")

    def host_alloc(self, nbytes: int) -> np.ndarray:
        ptr = int(self._check(self.rt.cudaMallocHost(max(1, nbytes)), "cudaMallocHost"))
        array = np.frombuffer((ctypes.c_uint8 * max(1, nbytes)).from_address(ptr), np.uint8)
        self._host[id(array)] = ptr
        return array

    def host_free(self, array: np.ndarray) -> None:
        ptr = self._host.pop(id(array), None)
        if ptr is not None:
            self._check(self.rt.cudaFreeHost(ptr), "cudaFreeHost")

    def h2d(self, dst: int, src: np.ndarray, stream: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(
            self.rt.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes, kind, stream), "memcpy H2D"
        )

    def d2h(self, dst: np.ndarray, src: int, stream: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(
            self.rt.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes, kind, stream), "memcpy D2H"
        )

    def synchronize(self, stream: int) -> None:
        self._check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def begin_capture(self, stream: int) -> None:
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal
        self._check(self.rt.cudaStreamBeginCapture(stream, mode), "cudaStreamBeginCapture")

    def end_capture(self, stream: int) -> Any:
        graph = self._check(self.rt.cudaStreamEndCapture(stream), "cudaStreamEndCapture")
        try:
            return self._check(self.rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        finally:
            self.rt.cudaGraphDestroy(graph)

    def launch_graph(self, graph: Any, stream: int) -> None:
        self._check(self.rt.cudaGraphLaunch(graph, stream), "cudaGraphLaunch")

    def destroy_graph(self, graph: Any) -> None:
        self._check(self.rt.cudaGraphExecDestroy(graph), "cudaGraphExecDestroy")


class PyCudaBackend:
    """pycuda (legacy fallback, reference/tensorrt.md §4): copies and streams, no CUDA graphs."""

    name = "pycuda"

    def __init__(self) -> None:
        self.cuda = require("pycuda.driver")
        try:
            self.cuda.init()
            self._ctx = self.cuda.Device(0).retain_primary_context()
            self._ctx.push()
        except self.cuda.Error as exc:
            raise MissingDependencyError(f"pycuda could not open the GPU ({exc}).") from None
        self._streams: dict[int, Any] = {}
        self._mem: dict[int, Any] = {}

    def create_stream(self) -> int:
        s = self.cuda.Stream()
        self._streams[s.handle] = s
        return int(s.handle)

    def destroy_stream(self, stream: int) -> None:
        self._streams.pop(stream, None)

    def malloc(self, nbytes: int) -> int:
        alloc = self.cuda.mem_alloc(max(1, nbytes))
        self._mem[int(alloc)] = alloc
        return int(alloc)

    def free(self, ptr: int) -> None:
        alloc = self._mem.pop(ptr, None)
        if alloc is not None:
            alloc.free()

    def host_alloc(self, nbytes: int) -> np.ndarray:
        return self.cuda.pagelocked_empty(max(1, nbytes), np.uint8)

    def host_free(self, array: np.ndarray) -> None:
        return None  # freed with the array

    def h2d(self, dst: int, src: np.ndarray, stream: int) -> None:
        self.cuda.memcpy_htod_async(dst, src, self._streams[stream])

    def d2h(self, dst: np.ndarray, src: int, stream: int) -> None:
        self.cuda.memcpy_dtoh_async(dst, src, self._streams[stream])

    def synchronize(self, stream: int) -> None:
        self._streams[stream].synchronize()

    def begin_capture(self, stream: int) -> None:
        raise ConfigError(
            "CUDA graphs need the cuda-python backend; drop cuda_graph or use "
            "backend='cuda-python'."
        )

    def end_capture(self, stream: int) -> Any:  # pragma: no cover - begin_capture refuses
        raise ConfigError("CUDA graphs need the cuda-python backend.")

    def launch_graph(self, graph: Any, stream: int) -> None:  # pragma: no cover
        raise ConfigError("CUDA graphs need the cuda-python backend.")

    def destroy_graph(self, graph: Any) -> None:  # pragma: no cover
        return None
