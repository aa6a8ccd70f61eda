"""The kernels' per-element math built for the CPU with a C++ compiler and loaded with ctypes.

``kernels/common/edgevae_math.cuh`` is compiled by g++ (``EDGEVAE_HD`` is empty there) together
with ``kernels/common/hostmath.cpp`` (element-wise exports) and each kernel's host harness
(``kernels/<name>/<name>_host.cpp``: the kernel's loops run serially). So the exact functions the
kernels call are unit-tested on the CPU against :mod:`edgevae.kernels.reference`.

The library is cached under ``<cache>/hostmath/<digest>/`` (digest of the sources, flags and
compiler), so it is built once per source change.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgevae.errors import KernelError, MissingDependencyError, ShapeError
from edgevae.kernels.build import cache_root, kernel_source_dir
from edgevae.kernels.reference import MAX_MODALITIES, PoeOutputs, ScoreOutputs
from edgevae.model.score_rules import COMBINE_RULES, check_combine

ABI_VERSION = 2  # EDGEVAE_HOSTMATH_ABI in kernels/common/hostmath.cpp
_SOURCES = (
    "common/hostmath.cpp",
    "poe_fusion/poe_fusion_host.cpp",
    "anomaly_score/anomaly_score_host.cpp",
    "preprocess/preprocess_host.cpp",
)
# No FMA contraction and no fast-math: the host results are the plain FP32 operation sequence.
CXX_FLAGS = ("-std=c++17", "-O2", "-fPIC", "-shared", "-ffp-contract=off", "-fno-fast-math")

_F32P = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
_I32P = np.ctypeslib.ndpointer(np.int32, flags="C_CONTIGUOUS")
_I64 = ctypes.c_int64
_INT = ctypes.c_int
_LL = ctypes.c_longlong
_VP = ctypes.c_void_p


def find_cxx(cxx: str | None = None) -> str:
    """A C++ compiler: the argument, ``$CXX``, then g++, c++, clang++ on PATH.

    Raises:
        MissingDependencyError: when none is found.
    """
    for cand in (cxx, os.environ.get("CXX"), "g++", "c++", "clang++"):
        if cand and shutil.which(cand):
            return str(shutil.which(cand))
    raise MissingDependencyError(
        "no C++ compiler found for the kernels' host-math tests: install g++ "
        "(`sudo apt install g++`) or set CXX."
    )


def build_hostmath(out_dir: str | os.PathLike[str] | None = None, cxx: str | None = None) -> Path:
    """Compile the host-math shared library (cached by source digest) and return its path.

    Raises:
        MissingDependencyError: no compiler or no kernel sources; KernelError: compile failure.
    """
    src_dir = kernel_source_dir()
    compiler = find_cxx(cxx)
    sources = [src_dir / s for s in _SOURCES]
    h = hashlib.sha256(" ".join((compiler, *CXX_FLAGS)).encode())
    for f in [*sources, *sorted((src_dir / "common").glob("*.cuh"))]:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    root = Path(out_dir) if out_dir is not None else cache_root() / "hostmath"
    lib = root / h.hexdigest()[:16] / "libedgevae_hostmath.so"
    if lib.is_file():
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
        tmp_lib = Path(tmp) / lib.name
        cmd = [compiler, *CXX_FLAGS, "-Wall", "-Wextra", "-Werror", f"-I{src_dir / 'common'}",
               *map(str, sources), "-o", str(tmp_lib)]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if res.returncode != 0:
            first = next((ln for ln in res.stderr.splitlines() if "error" in ln), res.stderr[:300])
            raise KernelError(f"building the kernels' host math failed: {first.strip()}")
        os.replace(tmp_lib, lib)  # atomic: a concurrent build leaves one complete file
    return lib


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


class HostMath:
    """ctypes wrapper of the host-math library: element-wise functions and whole-kernel loops.

    Args:
        path: the shared library from :func:`build_hostmath`.

    Raises:
        KernelError: when the library's ABI version does not match this module.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        lib = ctypes.CDLL(str(self.path))
        lib.ev_hostmath_abi.restype = _INT
        if lib.ev_hostmath_abi() != ABI_VERSION:
            raise KernelError(
                f"host-math library {self.path} has ABI {lib.ev_hostmath_abi()}, expected "
                f"{ABI_VERSION}; delete it to rebuild."
            )
        sig = {
            "ev_clamp_logvar": [_F32P, _F32P, _I64],
            "ev_expert_precision": [_F32P, _F32P, _F32P, _I64],
            "ev_poe_combine": [_F32P, _F32P, _I64, _I64, _F32P, _F32P, _F32P, _F32P],
            "ev_reparameterize": [_F32P, _F32P, _F32P, _F32P, _I64],
            "ev_kl_prior_term": [_F32P, _F32P, _F32P, _I64],
            "ev_cross_modal_term": [_F32P, _F32P, _F32P, _F32P, _F32P, _F32P, _I64],
            "ev_squared_error": [_F32P, _F32P, _F32P, _I64],
            "ev_standardize_part": [_F32P, _F32P, _F32P, _F32P, _F32P, _I64],
            "ev_cross_modal_mean": [_F32P, _F32P, _F32P, _I64],
            "ev_bilinear_taps": [_INT, _INT, _I32P, _I32P, _F32P, _F32P],
            "ev_luma": [_F32P, _F32P, _F32P, _F32P, _I64],
            "ev_poe_fusion_host": [_VP] * 9 + [_INT, _INT, _INT, _VP],
            "ev_anomaly_score_host": [_VP, _VP, _VP, _INT] + [_VP] * 9 + [_INT, _INT],
            "ev_preprocess_host": [_VP, _VP] + [_INT] * 10 + [_LL, _LL],
        }
        for name, argtypes in sig.items():
            fn = getattr(lib, name)
            fn.argtypes = argtypes
            fn.restype = _INT if name == "ev_anomaly_score_host" else None
        lib.ev_max_modalities.restype = _INT
        self.max_modalities = int(lib.ev_max_modalities())
        self._lib = lib

    # ------------------------------------------------------------ element-wise functions
    def _map(self, name: str, *arrays: np.ndarray) -> np.ndarray:
        args = np.broadcast_arrays(*(_f32(a) for a in arrays))
        args = [np.ascontiguousarray(a) for a in args]
        out = np.empty(args[0].shape, dtype=np.float32)
        getattr(self._lib, name)(*args, out, out.size)
        return out

    def clamp_logvar(self, x: np.ndarray) -> np.ndarray:
        return self._map("ev_clamp_logvar", x)

    def expert_precision(self, mask: np.ndarray, logvar: np.ndarray) -> np.ndarray:
        return self._map("ev_expert_precision", mask, logvar)

    def reparameterize(self, mu: np.ndarray, logvar: np.ndarray, eps: np.ndarray) -> np.ndarray:
        return self._map("ev_reparameterize", mu, logvar, eps)

    def kl_prior_term(self, mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
        return self._map("ev_kl_prior_term", mu, logvar)

    def cross_modal_term(self, total, weighted, prec, mu, logvar) -> np.ndarray:
        return self._map("ev_cross_modal_term", total, weighted, prec, mu, logvar)

    def squared_error(self, x: np.ndarray, r: np.ndarray) -> np.ndarray:
        return self._map("ev_squared_error", x, r)

    def standardize_part(self, raw, mean, std, keep) -> np.ndarray:
        return self._map("ev_standardize_part", raw, mean, std, keep)

    def cross_modal_mean(self, cross_sum: np.ndarray, n_present: np.ndarray) -> np.ndarray:
        return self._map("ev_cross_modal_mean", cross_sum, n_present)

    def luma(self, r: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self._map("ev_luma", r, g, b)

    def poe_combine(self, prec: np.ndarray, mu: np.ndarray) -> tuple[np.ndarray, ...]:
        """(M, n) precisions and means -> total, weighted, fused mu, fused logvar (n,) each."""
        prec, mu = _f32(prec), _f32(mu)
        m, n = prec.shape
        outs = [np.empty(n, dtype=np.float32) for _ in range(4)]
        self._lib.ev_poe_combine(prec, mu, m, n, *outs)
        return tuple(outs)

    def bilinear_taps(self, in_size: int, out_size: int) -> tuple[np.ndarray, ...]:
        """(i0, i1, w0, w1) for every output index (see reference.bilinear_taps_ref)."""
        i0, i1 = np.empty(out_size, np.int32), np.empty(out_size, np.int32)
        w0, w1 = np.empty(out_size, np.float32), np.empty(out_size, np.float32)
        self._lib.ev_bilinear_taps(in_size, out_size, i0, i1, w0, w1)
        return i0, i1, w0, w1

    # ------------------------------------------------------------ whole kernels (serial loops)
    def poe_fusion(
        self, mu: np.ndarray, logvar: np.ndarray, mask: np.ndarray, eps: np.ndarray | None = None
    ) -> PoeOutputs:
        """The poe_fusion kernel's loops on the CPU; same I/O as reference.poe_fusion_ref."""
        mu, logvar, mask = _f32(mu), _f32(logvar), _f32(mask)
        if mu.ndim != 3 or logvar.shape != mu.shape or mask.shape != mu.shape[:2]:
            raise ShapeError(
                f"poe_fusion: mu {mu.shape}, logvar {logvar.shape}, mask {mask.shape} must be "
                "(B, M, D), (B, M, D), (B, M)."
            )
        b, m, d = mu.shape
        eps = None if eps is None else _f32(eps)
        if eps is not None and eps.shape != (b, d):
            raise ShapeError(f"poe_fusion: eps {eps.shape} must be (B, D) = {(b, d)}.")
        z_mu, z_logvar, z = (np.empty((b, d), np.float32) for _ in range(3))
        kl, cross = np.empty(b, np.float32), np.empty((b, m), np.float32)
        work = np.empty(2 * d, np.float32)

        def ptr(a: np.ndarray | None) -> int | None:
            return None if a is None else a.ctypes.data

        self._lib.ev_poe_fusion_host(
            ptr(mu), ptr(logvar), ptr(mask), ptr(eps), ptr(z_mu), ptr(z_logvar), ptr(z),
            ptr(kl), ptr(cross), b, m, d, ptr(work),
        )  # fmt: skip
        return PoeOutputs(z_mu, z_logvar, z, kl, cross)

    def anomaly_score(
        self,
        inputs: Sequence[np.ndarray],
        recons: Sequence[np.ndarray],
        mask: np.ndarray,
        kl_prior: np.ndarray,
        cross_kl: np.ndarray,
        mean: np.ndarray,
        std: np.ndarray,
        weight: np.ndarray,
        combine: str = "sum",
    ) -> ScoreOutputs:
        """The anomaly_score kernel's loops on the CPU; same I/O as reference.anomaly_score_ref."""
        m = len(inputs)
        if m != len(recons) or not 1 <= m <= MAX_MODALITIES:
            raise ShapeError(f"anomaly_score: need 1 to {MAX_MODALITIES} input/recon pairs.")
        mask = _f32(mask)
        b = mask.shape[0]
        xs = [_f32(x).reshape(b, -1) for x in inputs]
        rs = [_f32(r).reshape(b, -1) for r in recons]
        numel = np.array([x.shape[1] for x in xs], dtype=np.int64)
        x_ptrs = (_VP * m)(*(x.ctypes.data for x in xs))
        r_ptrs = (_VP * m)(*(r.ctypes.data for r in rs))
        kl, cross = _f32(kl_prior), _f32(cross_kl)
        stats = [_f32(s).reshape(-1) for s in (mean, std, weight)]
        raw, parts = np.empty((b, m + 2), np.float32), np.empty((b, m + 2), np.float32)
        score = np.empty(b, np.float32)
        status = self._lib.ev_anomaly_score_host(
            ctypes.addressof(x_ptrs), ctypes.addressof(r_ptrs), numel.ctypes.data, m,
            mask.ctypes.data, kl.ctypes.data, cross.ctypes.data, *(s.ctypes.data for s in stats),
            raw.ctypes.data, parts.ctypes.data, score.ctypes.data, b,
            COMBINE_RULES.index(check_combine(combine)),
        )  # fmt: skip
        if status != 0:
            raise ShapeError(f"anomaly_score host harness rejected M = {m}.")
        return ScoreOutputs(score, parts, raw)

    def preprocess(
        self, frames: np.ndarray, size: tuple[int, int], channels: int, *, bgr: bool = False
    ) -> np.ndarray:
        """The preprocess kernel's loops on the CPU; same I/O as reference.preprocess_ref."""
        frames = np.ascontiguousarray(frames)
        if frames.ndim != 6 or frames.dtype != np.uint8 or frames.shape[-1] not in (1, 3, 4):
            raise ShapeError(
                "preprocess: frames must be uint8 (B, n_cams, T, H, W, C) with C 1, 3 or 4, got "
                f"{frames.dtype} {frames.shape}."
            )
        if channels not in (1, 3):
            raise ShapeError(f"preprocess: model channels must be 1 or 3, got {channels}.")
        b, n_cams, t, in_h, in_w, in_c = frames.shape
        out_h, out_w = size
        out = np.empty((b, n_cams, t * channels, out_h, out_w), np.float32)
        cam_stride = t * channels * out_h * out_w
        self._lib.ev_preprocess_host(
            frames.ctypes.data, out.ctypes.data, b, n_cams, t, in_h, in_w, in_c, out_h, out_w,
            channels, int(bgr), n_cams * cam_stride, cam_stride,
        )  # fmt: skip
        return out


@functools.cache
def _load_cached(path: str) -> HostMath:
    return HostMath(path)


def load_hostmath(
    out_dir: str | os.PathLike[str] | None = None, cxx: str | None = None
) -> HostMath:
    """Build (if needed) and load the host-math library.

    Raises:
        MissingDependencyError: no C++ compiler or kernel sources; KernelError: build failure.
    """
    return _load_cached(str(build_hostmath(out_dir, cxx)))
