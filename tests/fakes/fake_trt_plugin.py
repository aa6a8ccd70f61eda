"""FAKE ``tensorrt.plugin`` and plugin registry, part of tests/fakes/fake_tensorrt.py.

The fake decorators store the functions edgevae registers; at "build" time the fake parser calls
the register (shape) and aot_impl functions with symbolic shapes, as TensorRT would, and keeps
what aot_impl returned (kernel name, PTX, launch parameters, extra int32 arguments) for the tests
to inspect. It proves the registration call sequence, not that TensorRT accepts it.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

FAKE_NS = "edgevae"


class FakePluginRegistry:
    """Plugin creators: from QDP registration (fake ``tensorrt.plugin``) or ``load_library``."""

    def __init__(self, calls: list) -> None:
        self.calls = calls
        self.qdp: dict[str, dict[str, Any]] = {}
        self.libraries: list[str] = []
        self.aot_results: dict[str, Any] = {}

    def load_library(self, path: str) -> Any:
        self.calls.append(("load_library", Path(path).name))
        if not Path(path).is_file():
            return None
        self.libraries.append(path)
        return object()

    def has(self, op: str) -> bool:
        return bool(self.libraries) or f"{FAKE_NS}::{op}" in self.qdp

    def instantiate(self, node: Any, network: Any) -> None:
        """What TensorRT does with an AOT QDP at build time: call register + aot_impl."""
        plugin_id = f"{FAKE_NS}::{node.op_type}"
        entry = self.qdp.get(plugin_id)
        if entry is None or "aot_impl" not in entry:
            return  # C++ library route: nothing to call in Python
        self.calls.append(("qdp.instantiate", plugin_id))
        descs = [_FakeTensorDesc(_symbolic_shape(network, name)) for name in node.input]
        outs = entry["register"](*descs)
        outs = outs if isinstance(outs, tuple) else (outs,)
        self.aot_results[plugin_id] = entry["aot_impl"](*descs, outs, 0)


def _symbolic_shape(network: Any, name: str) -> list:
    dims = network.shapes.get(name, (-1, -2))  # unknown (custom-op outputs): batch + "?"
    return [_Sym("B") if d == -1 else _Sym("?" if d == -2 else d) for d in dims]


class _Sym:
    """A symbolic dimension expression (records arithmetic as text)."""

    def __init__(self, expr: Any) -> None:
        self.expr = expr

    def __repr__(self) -> str:
        return f"Sym({self.expr})"

    def _op(self, other: Any, sym: str) -> _Sym:
        o = other.expr if isinstance(other, _Sym) else other
        return _Sym(f"({self.expr}{sym}{o})")

    def __mul__(self, other: Any) -> _Sym:
        return self._op(other, "*")

    def __add__(self, other: Any) -> _Sym:
        return self._op(other, "+")


class _FakeShapeExpr(list):
    def numel(self) -> _Sym:
        out = _Sym(1)
        for d in self:
            out = out * d
        return out


class _FakeTensorDesc:
    def __init__(self, shape: list) -> None:
        self.shape_expr = _FakeShapeExpr(shape)
        self.dtype = "float32"

    @property
    def ndim(self) -> int:
        return len(self.shape_expr)


def _fake_trtp(registry: FakePluginRegistry) -> types.ModuleType:
    """A fake ``tensorrt.plugin``: decorators that store the functions edgevae registers."""
    trtp = types.ModuleType("tensorrt.plugin")
    trtp.TensorDesc = _FakeTensorDesc

    class KernelLaunchParams:
        def __init__(self) -> None:
            self.grid_x = self.grid_y = self.grid_z = 1
            self.block_x = self.block_y = self.block_z = 1
            self.shared_mem = 0

    class SymExprs(tuple):
        pass

    class SymIntExprs(SymExprs):
        @classmethod
        def from_tuple(cls, items: Any) -> SymIntExprs:
            return cls(items)

    class AutoTuneCombination:
        def __init__(self, io_types: str = "", layouts: str = "") -> None:
            self.io_types, self.layouts = io_types, layouts

    trtp.KernelLaunchParams, trtp.SymExprs, trtp.SymIntExprs = (
        KernelLaunchParams,
        SymExprs,
        SymIntExprs,
    )
    trtp.AutoTuneCombination = AutoTuneCombination
    trtp.SymInt32 = lambda e: ("i32", e.expr if isinstance(e, _Sym) else e)
    trtp.cdiv = lambda a, b: _Sym(f"cdiv({a.expr if isinstance(a, _Sym) else a},{b})")
    trtp.from_shape_expr = lambda shape, dtype=None: _FakeTensorDesc(list(shape))

    def decorator(kind: str):
        def outer(plugin_id: str, *args: Any, **kwargs: Any):
            def inner(fn):
                registry.calls.append((f"trtp.{kind}", plugin_id))
                registry.qdp.setdefault(plugin_id, {})[kind] = fn
                return fn

            return inner

        return outer

    trtp.register = decorator("register")
    trtp.aot_impl = decorator("aot_impl")
    trtp.autotune = decorator("autotune")
    trtp.impl = decorator("impl")
    return trtp
