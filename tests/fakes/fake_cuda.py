"""FAKE CUDA for the TensorRT runner tests: host memory posing as device memory.

:class:`FakeDevice` hands out integer "device pointers" into a dict of bytearrays; the fake
TensorRT execution context and the tests' fake kernels read and write them, and record work into
a "CUDA graph" while capturing. :class:`FakeCudaBackend` implements the runner's CUDA backend
protocol (edgevae.runtime.cuda_backend) on it. Nothing here touches a GPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class FakeDevice:
    """Host memory posing as device memory: pointers are integer handles into a dict."""

    def __init__(self) -> None:
        self.buffers: dict[int, bytearray] = {}
        self._next = 0x1000
        self.log: list[tuple[str, Any]] = []
        self.capture: list | None = None  # set while a fake CUDA graph is being captured

    def run_or_capture(self, op: Any) -> None:
        """Run ``op`` now, or record it into the graph being captured."""
        if self.capture is not None:
            self.capture.append(op)
        else:
            op()

    def malloc(self, nbytes: int) -> int:
        ptr = self._next
        self._next += max(256, (nbytes + 255) // 256 * 256)
        self.buffers[ptr] = bytearray(max(1, nbytes))
        self.log.append(("malloc", nbytes))
        return ptr

    def free(self, ptr: int) -> None:
        self.buffers.pop(ptr)
        self.log.append(("free", ptr))

    def view(self, ptr: int, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        buf = self.buffers[ptr]
        if n > len(buf):
            raise ValueError(f"fake device buffer {ptr:#x} holds {len(buf)} bytes, {n} needed")
        return np.frombuffer(buf, dtype=dtype, count=int(np.prod(shape))).reshape(shape)


class FakeCudaBackend:
    """The runner's CUDA backend protocol on a :class:`FakeDevice` (records its calls).

    Work enqueued while "capturing" (fake contexts and fake kernels call
    :meth:`FakeDevice.run_or_capture`) is stored and replayed by :meth:`launch_graph`.
    """

    name = "fake-cuda"

    def __init__(self, device: FakeDevice) -> None:
        self.device = device
        self.calls: list[str] = []

    def create_stream(self) -> int:
        self.calls.append("create_stream")
        return 7

    def destroy_stream(self, stream: int) -> None:
        self.calls.append("destroy_stream")

    def malloc(self, nbytes: int) -> int:
        return self.device.malloc(nbytes)

    def free(self, ptr: int) -> None:
        self.device.free(ptr)

    def host_alloc(self, nbytes: int) -> np.ndarray:
        self.calls.append("host_alloc")
        return np.zeros(max(1, nbytes), np.uint8)

    def host_free(self, array: np.ndarray) -> None:
        self.calls.append("host_free")

    def h2d(self, dst: int, src: np.ndarray, stream: int) -> None:
        self.calls.append("h2d")
        src = np.ascontiguousarray(src)
        self.device.buffers[dst][: src.nbytes] = src.tobytes()

    def d2h(self, dst: np.ndarray, src: int, stream: int) -> None:
        self.calls.append("d2h")
        dst[...] = self.device.view(src, dst.dtype, dst.shape)

    def synchronize(self, stream: int) -> None:
        self.calls.append("synchronize")

    def begin_capture(self, stream: int) -> None:
        self.calls.append("begin_capture")
        self.device.capture = []

    def end_capture(self, stream: int) -> Any:
        self.calls.append("end_capture")
        ops, self.device.capture = self.device.capture, None
        return {"ops": ops}

    def launch_graph(self, graph: Any, stream: int) -> None:
        self.calls.append("launch_graph")
        for op in graph["ops"]:
            op()

    def destroy_graph(self, graph: Any) -> None:
        self.calls.append("destroy_graph")
