"""Run edgevae.kernels.torch_ops on CPU tensors by emulating each kernel launch with the
kernels' host harness (the same per-element C++ math, serial loops).

The emulated launcher receives exactly the grid, block, shared-memory size and ctypes argument
list torch_ops would pass to cuLaunchKernel, checks the launch geometry against each kernel's
README, and runs the host harness on the same raw pointers. So the marshalling in torch_ops
(pointers, offsets, strides, the by-value struct) is tested without a GPU.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

import numpy as np
import pytest

from edgevae.kernels import torch_ops
from edgevae.kernels.hostmath import HostMath


def _v(arg) -> int | None:
    return arg.value


@dataclass
class EmulatedLauncher:
    hm: HostMath
    launches: list[tuple[str, tuple, tuple, int]] = field(default_factory=list)

    def launch(self, kernel, grid, block, args, *, stream=0, shared=0) -> None:
        self.launches.append((kernel, grid, block, shared))
        getattr(self, f"_{kernel}")(grid, block, shared, args)

    def _poe_fusion(self, grid, block, shared, args) -> None:
        b, m, d = (a.value for a in args[9:12])
        assert grid == (b, 1, 1)
        assert block[0] % 32 == 0 and block[0] <= 256 and block[1:] == (1, 1)
        assert block[0] >= min(d, 256)
        assert shared == 8 * d
        work = np.empty(2 * d, np.float32)
        self.hm._lib.ev_poe_fusion_host(*(_v(a) for a in args[:9]), b, m, d, work.ctypes.data)

    def _anomaly_score(self, grid, block, shared, args) -> None:
        table, rest = args[0], args[1:]
        b, m, combine = rest[-3].value, rest[-2].value, rest[-1].value
        assert grid == (b, 1, 1)
        assert block == (256, 1, 1)
        assert shared == 0
        xs = (ctypes.c_void_p * m)(*table.inputs[:m])
        rs = (ctypes.c_void_p * m)(*table.recons[:m])
        numel = (ctypes.c_longlong * m)(*table.numel[:m])
        status = self.hm._lib.ev_anomaly_score_host(
            ctypes.addressof(xs), ctypes.addressof(rs), ctypes.addressof(numel), m,
            *(_v(a) for a in rest[:9]), b, combine,
        )  # fmt: skip
        assert status == 0

    def _preprocess(self, grid, block, shared, args) -> None:
        vals = [a.value for a in args]
        b, cams, t, out_h, out_w = vals[2], vals[3], vals[4], vals[8], vals[9]
        assert block == (32, 8, 1)
        assert grid[0] * 32 >= out_w and grid[1] * 8 >= out_h
        assert grid[2] == min(b * cams * t, 65535)
        assert shared == 0
        self.hm._lib.ev_preprocess_host(*vals)


def install_emulation(monkeypatch, tmp_path_factory) -> EmulatedLauncher:
    """Patch torch_ops to accept CPU tensors and launch through the host harness (skips the
    test without a C++ compiler). Use it from a fixture."""
    from edgevae.errors import MissingDependencyError
    from edgevae.kernels.hostmath import load_hostmath

    try:
        hm = load_hostmath(out_dir=tmp_path_factory.getbasetemp() / "hostmath-emulation")
    except MissingDependencyError as exc:
        pytest.skip(f"no C++ compiler for the host harness: {exc}")
    launcher = EmulatedLauncher(hm)
    monkeypatch.setattr(torch_ops, "_require_cuda", lambda name, t, alt: None)
    monkeypatch.setattr(torch_ops, "_launcher", lambda device, backend: (launcher, 0))
    return launcher
