"""Load the compiled kernels (cubin or PTX) and launch them on a CUDA stream with raw pointers.

Two backends, imported lazily through :func:`edgevae._util.lazy.require`:

* ``cuda-python`` (default, ``cuda.bindings.driver``): ``cuModuleLoadData``,
  ``cuModuleGetFunction`` and ``cuLaunchKernel`` on any ``CUstream`` handle, e.g. PyTorch's
  ``torch.cuda.current_stream().cuda_stream``. Kernels then run in PyTorch's stream order on
  PyTorch tensors (``data_ptr()``), with no copies, and inside CUDA-graph capture.
* ``pycuda`` (when asked for): same modules and launches, but pycuda cannot adopt a foreign
  stream handle, so it only launches on the legacy default stream (handle 0, PyTorch's default
  stream); it is therefore not usable inside CUDA-graph capture.

Both use the device's primary context (the one PyTorch uses). Image selection: the cubin built
for the device's exact ``sm_XY``, else the newest PTX for an older architecture (JIT-compiled by
the driver), else, when nvcc is available, a build for this device on the spot.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from edgevae._util.choices import check_choice
from edgevae._util.lazy import require
from edgevae.errors import ConfigError, KernelError, MissingDependencyError
from edgevae.kernels.build import (
    KERNELS,
    BuildConfig,
    arch_number,
    build_kernels,
    cache_root,
    find_nvcc,
    read_manifest,
    source_digest,
)

BACKENDS = ("cuda-python", "pycuda")


# --------------------------------------------------------------------------- argument packing
def pack_pointer_array(args: Sequence[Any]) -> tuple[Any, list[Any]]:
    """``void*[]`` whose entries point at each ctypes argument (cuLaunchKernel's kernelParams).

    Returns the array and the objects that must stay alive until the launch call returns.
    """
    array = (ctypes.c_void_p * len(args))(*(ctypes.addressof(a) for a in args))
    return array, [array, *args]


def pack_arg_buffer(args: Sequence[Any]) -> bytes:
    """The kernel parameters as one buffer, laid out like a C struct of the arguments (natural
    alignment), as ``CU_LAUNCH_PARAM_BUFFER_POINTER`` and pycuda's ``_launch_kernel`` expect."""
    fields = [(f"a{i}", type(a)) for i, a in enumerate(args)]
    layout = type("KernelParams", (ctypes.Structure,), {"_fields_": fields})
    return bytes(layout(*args))


# --------------------------------------------------------------------------- image selection
@dataclass(frozen=True)
class KernelImage:
    """One loadable module image: a cubin for ``arch`` or PTX for ``compute_<arch>``."""

    kernel: str
    arch: str
    kind: str  # "cubin" | "ptx"
    path: Path

    def data(self) -> bytes:
        data = self.path.read_bytes()
        return data + b"\0" if self.kind == "ptx" and not data.endswith(b"\0") else data


def _candidate_build_dirs(build_dir: str | os.PathLike[str] | None) -> list[Path]:
    if build_dir is not None:
        return [Path(build_dir)]
    env = os.environ.get("EDGEVAE_KERNELS_BUILD")
    if env:
        return [Path(env)]
    root = cache_root() / "kernels"
    dirs = sorted(root.glob("*/"), key=lambda p: p.stat().st_mtime, reverse=True)
    return [d for d in dirs if (d / "manifest.json").is_file()]


def _current_digest(kernel: str) -> str | None:
    try:
        return source_digest(kernel)
    except (MissingDependencyError, OSError):
        return None  # deployed without sources: trust the manifest


def select_image(
    kernel: str, arch: str, build_dir: str | os.PathLike[str] | None = None
) -> KernelImage | None:
    """The best image of ``kernel`` for a device of architecture ``arch`` (``sm_XY``), or None.

    Prefers the exact cubin, then the PTX of the highest architecture <= ``arch``. Builds whose
    sources differ from the current ``kernels/`` sources are ignored.
    """
    target = arch_number(arch)
    digest = _current_digest(kernel)
    best: tuple[tuple[int, int], KernelImage] | None = None
    for d in _candidate_build_dirs(build_dir):
        entry = (read_manifest(d) or {}).get("kernels", {}).get(kernel)
        if not entry or (digest is not None and entry.get("source_sha256") != digest):
            continue
        for a in entry.get("artifacts", []):
            n = arch_number(a["arch"])
            path = d / a["file"]
            if not path.is_file():
                continue
            if a["kind"] == "cubin" and n == target:
                rank = (2, n)
            elif a["kind"] == "ptx" and n <= target:
                rank = (1, n)
            else:
                continue
            if best is None or rank > best[0]:
                best = (rank, KernelImage(kernel, a["arch"], a["kind"], path))
    return best[1] if best else None


def ensure_image(
    kernel: str, arch: str, build_dir: str | os.PathLike[str] | None = None
) -> KernelImage:
    """:func:`select_image`, building for ``arch`` with nvcc when nothing fits.

    Raises:
        KernelError: nothing built for this device and no nvcc to build it.
    """
    image = select_image(kernel, arch, build_dir)
    if image is not None:
        return image
    try:
        find_nvcc()
    except MissingDependencyError:
        raise KernelError(
            f"no compiled '{kernel}' kernel for {arch} and no nvcc here to build one: run "
            f"`edgevae kernels build --arch {arch}` where nvcc is available and point "
            "EDGEVAE_KERNELS_BUILD at the output folder."
        ) from None
    build_kernels(BuildConfig(archs=(arch,), out=Path(build_dir) if build_dir else None))
    image = select_image(kernel, arch, build_dir)
    if image is None:  # pragma: no cover - build_kernels raises on failure
        raise KernelError(f"building '{kernel}' for {arch} produced no image.")
    return image


# --------------------------------------------------------------------------- backends
class Backend(Protocol):
    name: str

    def compute_capability(self) -> tuple[int, int]: ...
    def load(self, image: bytes) -> Any: ...
    def get_function(self, module: Any, name: str) -> Any: ...
    def launch(
        self, fn: Any, grid: tuple[int, int, int], block: tuple[int, int, int], shared: int,
        stream: int, args: Sequence[Any],
    ) -> None: ...  # fmt: skip


class CudaPythonBackend:
    """cuda-python driver API on the device's primary context (shared with PyTorch)."""

    name = "cuda-python"

    def __init__(self, device: int = 0) -> None:
        self._drv = drv = require("cuda.bindings.driver")
        try:
            self._check(drv.cuInit(0), "cuInit")
        except KernelError:
            raise
        except Exception as exc:  # cuda-bindings raises when libcuda itself is missing
            raise MissingDependencyError(
                f"the CUDA driver could not be loaded ({exc}); the kernels need an NVIDIA GPU "
                "with its driver installed."
            ) from None
        self._dev = self._check(drv.cuDeviceGet(device), "cuDeviceGet")
        self._ctx = self._check(drv.cuDevicePrimaryCtxRetain(self._dev), "cuDevicePrimaryCtxRetain")

    def _check(self, result: Any, what: str) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self._drv.CUresult.CUDA_SUCCESS:
            _, name = self._drv.cuGetErrorName(err)
            label = name.decode() if isinstance(name, bytes) else str(err)
            raise KernelError(f"{what} failed with {label}.")
        return rest[0] if len(rest) == 1 else (tuple(rest) if rest else None)

    def _make_current(self) -> None:
        current = self._check(self._drv.cuCtxGetCurrent(), "cuCtxGetCurrent")
        if int(current) != int(self._ctx):
            self._check(self._drv.cuCtxSetCurrent(self._ctx), "cuCtxSetCurrent")

    def compute_capability(self) -> tuple[int, int]:
        attr = self._drv.CUdevice_attribute
        major = self._check(
            self._drv.cuDeviceGetAttribute(
                attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, self._dev
            ),
            "cuDeviceGetAttribute",
        )
        minor = self._check(
            self._drv.cuDeviceGetAttribute(
                attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, self._dev
            ),
            "cuDeviceGetAttribute",
        )
        return int(major), int(minor)

    def load(self, image: bytes) -> Any:
        self._make_current()
        return self._check(self._drv.cuModuleLoadData(image), "cuModuleLoadData")

    def get_function(self, module: Any, name: str) -> Any:
        return self._check(self._drv.cuModuleGetFunction(module, name.encode()), name)

    def launch(self, fn, grid, block, shared, stream, args) -> None:
        self._make_current()
        params, keep = pack_pointer_array(args)
        self._check(
            self._drv.cuLaunchKernel(
                fn, *grid, *block, shared, self._drv.CUstream(stream),
                ctypes.addressof(params), 0,
            ),
            "cuLaunchKernel",
        )  # fmt: skip
        del keep  # the driver copied the parameters during the call


class PyCudaBackend:
    """pycuda on the device's primary context; legacy default stream only (see module doc)."""

    name = "pycuda"

    def __init__(self, device: int = 0) -> None:
        self._cuda = cuda = require("pycuda.driver")
        try:
            cuda.init()
            self._dev = cuda.Device(device)
            self._ctx = self._dev.retain_primary_context()
        except cuda.Error as exc:
            raise KernelError(f"pycuda could not open GPU {device}: {exc}.") from None

    def compute_capability(self) -> tuple[int, int]:
        return tuple(self._dev.compute_capability())  # type: ignore[return-value]

    def load(self, image: bytes) -> Any:
        self._ctx.push()
        try:
            return self._cuda.module_from_buffer(image)
        finally:
            self._ctx.pop()

    def get_function(self, module: Any, name: str) -> Any:
        return module.get_function(name)

    def launch(self, fn, grid, block, shared, stream, args) -> None:
        if stream != 0:
            raise ConfigError(
                "the pycuda backend can only launch on the default CUDA stream (pycuda cannot "
                "use another library's stream); use backend='cuda-python' for PyTorch streams "
                "and CUDA graphs."
            )
        self._ctx.push()
        try:
            fn._launch_kernel(grid, block, pack_arg_buffer(args), shared, None)
        finally:
            self._ctx.pop()


# --------------------------------------------------------------------------- launcher
class KernelLauncher:
    """Loads each kernel once per device and launches it.

    Args:
        backend: ``"cuda-python"`` (default) or ``"pycuda"``.
        device: CUDA device ordinal.
        build_dir: where compiled kernels are (default: the cache, see :func:`select_image`).

    Raises:
        ConfigError: unknown backend; MissingDependencyError: backend or driver not installed.
    """

    def __init__(
        self, backend: str = "cuda-python", device: int = 0, build_dir: str | None = None
    ) -> None:
        check_choice(backend, BACKENDS, "kernel backend")
        self.backend: Backend = (
            CudaPythonBackend(device) if backend == "cuda-python" else PyCudaBackend(device)
        )
        self.device = device
        self.build_dir = build_dir
        major, minor = self.backend.compute_capability()
        self.arch = f"sm_{major}{minor}"
        self._functions: dict[str, Any] = {}
        self._modules: list[Any] = []
        self._lock = threading.Lock()

    def function(self, kernel: str) -> Any:
        """The loaded entry point of ``kernel`` (load it on first use, outside graph capture)."""
        fn = self._functions.get(kernel)
        if fn is None:
            check_choice(kernel, list(KERNELS), "kernel")
            with self._lock:
                image = ensure_image(kernel, self.arch, self.build_dir)
                module = self.backend.load(image.data())
                self._modules.append(module)
                fn = self.backend.get_function(module, KERNELS[kernel])
                self._functions[kernel] = fn
        return fn

    def launch(
        self,
        kernel: str,
        grid: tuple[int, int, int],
        block: tuple[int, int, int],
        args: Sequence[Any],
        *,
        stream: int = 0,
        shared: int = 0,
    ) -> None:
        """Launch ``kernel`` asynchronously on ``stream`` (a raw CUstream handle, 0 = default)."""
        if min(grid) < 1 or min(block) < 1:
            raise KernelError(f"{kernel}: empty launch grid {grid} / block {block}.")
        self.backend.launch(self.function(kernel), grid, block, shared, stream, args)


@functools.cache
def get_launcher(backend: str = "cuda-python", device: int = 0) -> KernelLauncher:
    """One cached :class:`KernelLauncher` per (backend, device)."""
    return KernelLauncher(backend, device)
