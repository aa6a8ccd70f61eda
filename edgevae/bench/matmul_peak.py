"""Measure this CPU's FP32 matrix-multiply throughput: the denominator of "fraction of peak".

A model's achieved GFLOP/s (``2 * MACs * batch / latency``) means little alone; divided by what
the same cores reach on a large square FP32 matmul (the best case for the BLAS the frameworks use)
it says how much of the machine a configuration uses. The figure is *measured here*, with the same
thread count as the benchmark, never taken from a spec sheet.

Example:
    >>> peak = measure_matmul_peak(size=256, seconds=0.05, threads=1)  # doctest: +SKIP
    >>> peak["gflops"] > 0                                              # doctest: +SKIP
    True
"""

from __future__ import annotations

import time
from typing import Any

from edgevae._util.choices import check_choice
from edgevae.errors import ConfigError


def measure_matmul_peak(
    size: int = 1024,
    *,
    seconds: float = 1.0,
    threads: int | None = None,
    backend: str = "torch",
) -> dict[str, Any]:
    """Best and median FP32 GFLOP/s of ``size x size`` matmuls repeated for ``seconds``.

    Args:
        size: matrix side (1024 fits in cache-friendly blocks yet is compute bound).
        seconds: how long to repeat after one warm-up product.
        threads: torch intra-op threads (``None``: leave as is). The numpy backend uses its BLAS's
            own thread setting and records it as unknown.
        backend: ``torch`` or ``numpy``.

    Returns:
        ``{"gflops": best, "gflops_median", "size", "threads", "backend", "reps", "library"}``.

    Raises:
        ConfigError: size < 16, non-positive seconds or threads, unknown backend.
    """
    check_choice(backend, ("torch", "numpy"), "matmul backend")
    if size < 16:
        raise ConfigError(f"matmul size must be >= 16, got {size}.")
    if not seconds > 0:
        raise ConfigError(f"seconds must be > 0, got {seconds}.")
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}.")
    flops = 2.0 * size**3
    if backend == "torch":
        import torch

        previous = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            a = torch.randn(size, size, dtype=torch.float32)
            b = torch.randn(size, size, dtype=torch.float32)
            out = torch.empty(size, size, dtype=torch.float32)
            times = _repeat(lambda: torch.mm(a, b, out=out), seconds)
            used_threads: int | None = torch.get_num_threads()
            library = f"torch {torch.__version__}"
        finally:
            torch.set_num_threads(previous)
    else:
        import numpy as np

        rng = np.random.default_rng(0)
        a = rng.standard_normal((size, size), dtype=np.float32)
        b = rng.standard_normal((size, size), dtype=np.float32)
        out = np.empty((size, size), np.float32)
        times = _repeat(lambda: np.matmul(a, b, out=out), seconds)
        used_threads = None
        library = f"numpy {np.__version__}"
    times.sort()
    return {
        "gflops": flops / times[0] / 1e9,
        "gflops_median": flops / times[len(times) // 2] / 1e9,
        "size": size,
        "threads": used_threads,
        "backend": backend,
        "reps": len(times),
        "library": library,
    }


def _repeat(fn: Any, seconds: float) -> list[float]:
    fn()  # warm-up: allocates BLAS buffers, wakes the thread pool
    times: list[float] = []
    start = time.perf_counter()
    while not times or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def fraction_of_peak(
    macs_per_sample: int, batch: int, latency_ms: float, peak_gflops: float
) -> dict:
    """Achieved GFLOP/s of one configuration and its fraction of the measured matmul peak."""
    if latency_ms <= 0 or peak_gflops <= 0:
        return {"gflops": None, "fraction_of_peak": None}
    gflops = 2.0 * macs_per_sample * batch / (latency_ms / 1e3) / 1e9
    return {"gflops": gflops, "fraction_of_peak": gflops / peak_gflops}
