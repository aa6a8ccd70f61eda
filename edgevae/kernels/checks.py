"""Correctness checks of the kernels on random and edge cases: host math and GPU vs reference.

One place for the cases, shared by ``edgevae kernels test``, tests/unit/test_kernels_hostmath.py
and tests/gpu/test_kernels_gpu.py. Edge cases: B = 1, odd sizes, D not a multiple of 32, D over
one block, all-masked rows, extreme log-variances, frame sizes that do not divide evenly,
up- and down-scaling, gray/RGB/BGR/RGBA, M = 16.

Error metric: ``max|got - want| / max(1, max|want|)`` per output (a normalised max error), so
large KL values are compared relative to their scale and values in [0, 1] absolutely.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgevae.kernels.reference import anomaly_score_ref, poe_fusion_ref, preprocess_ref

HOST_TOL = 1e-5  # host math vs NumPy: the same FP32 operation sequence, libm differences only
GPU_TOL = 1e-4  # GPU vs NumPy: CUDA expf/logf ulps, FMA contraction, other summation order


@dataclass(frozen=True)
class CheckResult:
    """One kernel output compared with the reference on one case."""

    kernel: str
    case: str
    output: str
    error: float  # normalised max error
    tol: float

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.error)) and self.error <= self.tol


def normalised_error(got: np.ndarray, want: np.ndarray) -> float:
    """``max|got - want| / max(1, max|want|)``; inf on shape mismatch or non-finite mismatch."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return float("inf")
    if got.size == 0:
        return 0.0
    if not np.array_equal(np.isfinite(got), np.isfinite(want)):
        return float("inf")
    finite = np.isfinite(want)
    if not finite.any():
        return 0.0
    diff = np.abs(got[finite] - want[finite]).max()
    return float(diff / max(1.0, np.abs(want[finite]).max()))


# --------------------------------------------------------------------------- cases
def poe_cases(seed: int = 0) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, kwargs of poe_fusion_ref) pairs."""
    rng = np.random.default_rng(seed)

    def case(b: int, m: int, d: int, *, lv_scale: float = 2.0, p_present: float = 0.7,
             eps: bool = True, mu_scale: float = 1.0) -> dict[str, Any]:  # fmt: skip
        mask = (rng.random((b, m)) < p_present).astype(np.float32)
        return {
            "mu": (rng.normal(size=(b, m, d)) * mu_scale).astype(np.float32),
            "logvar": (rng.normal(size=(b, m, d)) * lv_scale).astype(np.float32),
            "mask": mask,
            "eps": rng.normal(size=(b, d)).astype(np.float32) if eps else None,
        }

    yield "random B=8 M=4 D=32", case(8, 4, 32)
    yield "B=1 M=1 D=1", case(1, 1, 1, p_present=1.0)
    yield "odd B=7 M=5 D=33", case(7, 5, 33)
    yield "D=300 over one warp", case(3, 3, 300)
    yield "no eps (z = mu)", case(4, 3, 17, eps=False)
    c = case(5, 4, 32)
    c["mask"][[0, 2, 4]] = 0.0
    yield "all-masked rows", c
    yield "extreme logvar and mu", case(6, 4, 40, lv_scale=30.0, mu_scale=100.0)
    yield "B=256 M=6 D=32", case(256, 6, 32)


def score_cases(seed: int = 0) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, kwargs of anomaly_score_ref) pairs; KL inputs come from poe_fusion_ref."""
    rng = np.random.default_rng(seed + 1)

    def case(b: int, shapes: list[tuple[int, ...]], *, p_present: float = 0.7) -> dict[str, Any]:
        m = len(shapes)
        mask = (rng.random((b, m)) < p_present).astype(np.float32)
        fused = poe_fusion_ref(
            rng.normal(size=(b, m, 8)).astype(np.float32),
            rng.normal(size=(b, m, 8)).astype(np.float32),
            mask,
        )
        inputs = [rng.random((b, *s), dtype=np.float32) for s in shapes]
        recons = [(x + rng.normal(scale=0.1, size=x.shape)).astype(np.float32) for x in inputs]
        p = m + 2
        return {
            "inputs": inputs,
            "recons": recons,
            "mask": mask,
            "kl_prior": fused.kl_prior,
            "cross_kl": fused.cross_kl,
            "mean": rng.normal(size=p).astype(np.float32),
            "std": (rng.random(p) + 0.1).astype(np.float32),
            "weight": rng.random(p).astype(np.float32),
        }

    yield "random B=6 cams+audio+motion", case(6, [(8, 16, 16)] * 3 + [(1, 32, 32), (16, 6)])
    yield (
        "max rule, B=6 cams+audio+motion",
        {
            **case(6, [(8, 16, 16)] * 3 + [(1, 32, 32), (16, 6)]),
            "combine": "max",
        },
    )
    yield "B=1 M=1", case(1, [(5,)], p_present=1.0)
    c = case(4, [(3, 7, 5), (11,)])
    c["mask"][1] = 0.0
    yield "all-masked row, odd sizes", c
    yield "max rule, all-masked row", {**c, "combine": "max"}
    yield "M=16 modalities", case(3, [(7,)] * 16)
    yield "large sample 8x64x64", case(2, [(8, 64, 64), (1, 3)])


def preprocess_cases(seed: int = 0) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, kwargs of preprocess_ref) pairs."""
    rng = np.random.default_rng(seed + 2)

    def frames(b: int, cams: int, t: int, h: int, w: int, c: int) -> np.ndarray:
        return rng.integers(0, 256, size=(b, cams, t, h, w, c), dtype=np.uint8)

    yield "640x480 RGB -> 64x64 gray", {"frames": frames(1, 2, 2, 480, 640, 3), "size": (64, 64),
                                        "channels": 1}  # fmt: skip
    yield "37x53 BGR -> 16x20 RGB", {"frames": frames(2, 3, 2, 37, 53, 3), "size": (16, 20),
                                     "channels": 3, "bgr": True}  # fmt: skip
    yield "13x17 gray upscaled -> 64x48 gray", {"frames": frames(1, 1, 3, 13, 17, 1),
                                                "size": (64, 48), "channels": 1}  # fmt: skip
    yield "gray -> RGB replicated", {"frames": frames(2, 1, 1, 20, 30, 1), "size": (9, 11),
                                     "channels": 3}  # fmt: skip
    yield "1280x720 RGBA -> 64x64 gray", {"frames": frames(1, 1, 1, 720, 1280, 4),
                                          "size": (64, 64), "channels": 1}  # fmt: skip
    yield "100x75 -> 64x64 (non-dividing)", {"frames": frames(1, 1, 2, 75, 100, 3),
                                             "size": (64, 64), "channels": 1}  # fmt: skip
    yield "same size 5x5", {"frames": frames(1, 1, 1, 5, 5, 3), "size": (5, 5), "channels": 3}
    yield "1x1 input", {"frames": frames(1, 1, 1, 1, 1, 3), "size": (4, 6), "channels": 1}


# --------------------------------------------------------------------------- runners
def _compare(kernel: str, case: str, got: Any, want: Any, tol: float) -> list[CheckResult]:
    if isinstance(want, tuple):  # NamedTuple outputs
        return [
            CheckResult(kernel, case, name, normalised_error(np.asarray(g), w), tol)
            for name, g, w in zip(want._fields, got, want, strict=True)
        ]
    return [CheckResult(kernel, case, "out", normalised_error(np.asarray(got), want), tol)]


def run_checks(impl: dict[str, Callable[..., Any]], tol: float, seed: int = 0) -> list[CheckResult]:
    """Run every case through ``impl[kernel](**case)`` and compare with the NumPy reference.

    Args:
        impl: ``{"poe_fusion": fn, "anomaly_score": fn, "preprocess": fn}``, each with the
            reference's signature and NumPy-convertible outputs.
        tol: normalised-error tolerance.
    """
    results: list[CheckResult] = []
    suites = (
        ("poe_fusion", poe_cases, poe_fusion_ref),
        ("anomaly_score", score_cases, anomaly_score_ref),
        ("preprocess", preprocess_cases, preprocess_ref),
    )
    for kernel, cases, ref in suites:
        if kernel not in impl:
            continue
        for name, kwargs in cases(seed):
            results += _compare(kernel, name, impl[kernel](**kwargs), ref(**kwargs), tol)
    return results


def run_host_checks(seed: int = 0) -> list[CheckResult]:
    """The kernels' host math (g++ build of the shared header) vs the NumPy references.

    Raises:
        MissingDependencyError: no C++ compiler; KernelError: the host math does not build.
    """
    from edgevae.kernels.hostmath import load_hostmath

    hm = load_hostmath()
    impl = {
        "poe_fusion": hm.poe_fusion,
        "anomaly_score": hm.anomaly_score,
        "preprocess": hm.preprocess,
    }
    return run_checks(impl, HOST_TOL, seed)


def gpu_impl(backend: str = "cuda-python") -> dict[str, Callable[..., Any]]:
    """NumPy-in/NumPy-out wrappers of :mod:`edgevae.kernels.torch_ops` on the current GPU.

    Raises:
        MissingDependencyError: no GPU visible to PyTorch.
    """
    import torch

    from edgevae.errors import MissingDependencyError
    from edgevae.kernels import torch_ops

    if not torch.cuda.is_available():
        raise MissingDependencyError("no CUDA GPU visible to PyTorch; the GPU checks need one.")

    def cuda(x: Any) -> Any:
        if x is None:
            return None
        if isinstance(x, list):
            return [cuda(v) for v in x]
        return torch.from_numpy(np.ascontiguousarray(x)).cuda()

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(**kwargs: Any) -> Any:
            args = {k: cuda(v) if not isinstance(v, tuple | bool | int) else v
                    for k, v in kwargs.items()}  # fmt: skip
            out = fn(**args, backend=backend)
            torch.cuda.synchronize()
            if isinstance(out, tuple):
                return type(out)(*(t.cpu().numpy() for t in out))
            return out.cpu().numpy()

        return run

    return {
        "poe_fusion": wrap(torch_ops.poe_fusion),
        "anomaly_score": wrap(torch_ops.anomaly_score),
        "preprocess": wrap(torch_ops.preprocess),
    }


def run_gpu_checks(backend: str = "cuda-python", seed: int = 0) -> list[CheckResult]:
    """The CUDA kernels (through :mod:`edgevae.kernels.torch_ops`) vs the NumPy references.

    Raises:
        MissingDependencyError: no GPU, or no cuda-python / pycuda; KernelError: load/launch.
    """
    return run_checks(gpu_impl(backend), GPU_TOL, seed)
