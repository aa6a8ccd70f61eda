"""Run any ``nn.Module`` behind the :class:`~edgevae.runtime.base.Runner` interface.

The module is called positionally with the inputs in the order the caller names them, under
``torch.inference_mode``; its result (a tensor, a tuple/list or NamedTuple in output order, or a
dict keyed by output name) becomes ``{output name: numpy array}``.

Example:
    >>> runner = TorchRunner(
    ...     model,
    ...     inputs=[TensorInfo("x", ("batch", 4), np.dtype("float32"))],
    ...     outputs=[TensorInfo("y", ("batch", 2), np.dtype("float32"))],
    ... )  # doctest: +SKIP
    >>> runner.run({"x": np.zeros((1, 4), np.float32)})["y"].shape  # doctest: +SKIP
    (1, 2)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevae._util.choices import check_choice
from edgevae.errors import ConfigError, MissingDependencyError, ShapeError
from edgevae.runtime.base import TensorInfo, check_feed

if TYPE_CHECKING:
    import torch

DEVICES = ("cpu", "cuda")


def _as_infos(specs: Sequence[TensorInfo] | Mapping[str, TensorInfo], what: str) -> dict:
    items = list(specs.values()) if isinstance(specs, Mapping) else list(specs)
    if not items:
        raise ConfigError(f"TorchRunner needs at least one {what} (name, shape, dtype).")
    out: dict[str, TensorInfo] = {}
    for info in items:
        if not isinstance(info, TensorInfo):
            raise ConfigError(
                f"TorchRunner {what}s must be TensorInfo(name, shape, dtype), got {info!r}."
            )
        if info.name in out:
            raise ConfigError(f"duplicate {what} name '{info.name}'; names must be unique.")
        out[info.name] = TensorInfo(info.name, tuple(info.shape), np.dtype(info.dtype))
    return out


class TorchRunner:
    """PyTorch eager (or ``torch.compile``) execution of a module with named inputs/outputs.

    Args:
        module: the model; ``module(*inputs in order)`` must return the outputs in order.
        inputs: input names, shapes (symbolic dims as strings, e.g. ``"batch"``) and dtypes.
        outputs: output names, shapes and dtypes, in the order the module returns them.
        device: ``"cpu"`` or ``"cuda"``.
        threads: intra-op threads used while this runner runs (``None``: leave torch's setting).
            Re-applied on every ``run`` because ``torch.set_num_threads`` is process-wide.
        name: label in reports (default ``"torch"``).

    Raises:
        ConfigError: bad device, thread count or tensor specs.
        MissingDependencyError: ``device="cuda"`` without a CUDA build of torch or a GPU.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        inputs: Sequence[TensorInfo] | Mapping[str, TensorInfo],
        outputs: Sequence[TensorInfo] | Mapping[str, TensorInfo],
        *,
        device: str = "cpu",
        threads: int | None = None,
        name: str = "torch",
    ) -> None:
        import torch

        check_choice(device, DEVICES, "device")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"threads must be a positive integer, got {threads!r}.")
        if device == "cuda" and not torch.cuda.is_available():
            raise MissingDependencyError(
                "device 'cuda' was asked for but torch sees no CUDA GPU "
                f"(torch {torch.__version__}); use --device cpu or install a CUDA build of torch."
            )
        self.name = name
        self.device = device
        self.threads = threads
        self._inputs = _as_infos(inputs, "input")
        self._outputs = _as_infos(outputs, "output")
        self._torch = torch
        self.module = module.to(device).eval()
        self._callable: Any = self.module

    @classmethod
    def compiled(
        cls,
        module: torch.nn.Module,
        inputs: Sequence[TensorInfo] | Mapping[str, TensorInfo],
        outputs: Sequence[TensorInfo] | Mapping[str, TensorInfo],
        *,
        device: str = "cpu",
        threads: int | None = None,
        mode: str | None = None,
        compile_backend: str = "inductor",
        dynamic: bool = True,
        name: str = "torch-compile",
    ) -> TorchRunner:
        """The same runner with ``torch.compile(module, mode=, backend=compile_backend, dynamic=)``.

        Compilation happens on the first ``run`` (it can take tens of seconds on a CPU; the
        benchmark's warm-up absorbs it). ``dynamic=True`` keeps one graph for every batch size.

        Raises:
            ConfigError: an unknown ``mode``.
        """
        import torch

        valid_modes = (
            None,
            "default",
            "reduce-overhead",
            "max-autotune",
            "max-autotune-no-cudagraphs",
        )
        if mode not in valid_modes:
            raise ConfigError(
                f"unknown torch.compile mode {mode!r}; valid: {', '.join(map(str, valid_modes))}."
            )
        runner = cls(module, inputs, outputs, device=device, threads=threads, name=name)
        runner._callable = torch.compile(
            runner.module, mode=mode, backend=compile_backend, dynamic=dynamic
        )
        return runner

    @property
    def inputs(self) -> dict[str, TensorInfo]:
        return dict(self._inputs)

    @property
    def outputs(self) -> dict[str, TensorInfo]:
        return dict(self._outputs)

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch. Raises ShapeError on a feed that does not match :attr:`inputs`, or when
        the module returns a different number of outputs than named."""
        torch = self._torch
        check_feed(feed, self._inputs, self.name)
        if self.threads is not None and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        args = [torch.from_numpy(np.ascontiguousarray(feed[n])) for n in self._inputs]
        if self.device != "cpu":
            args = [a.to(self.device, non_blocking=True) for a in args]
        with torch.inference_mode():
            result = self._callable(*args)
        return self._to_named(result)

    def _to_named(self, result: Any) -> dict[str, np.ndarray]:
        torch = self._torch
        names = list(self._outputs)
        if isinstance(result, Mapping):
            missing = [n for n in names if n not in result]
            if missing:
                raise ShapeError(
                    f"{self.name}: the module's result has no outputs {missing}; it returned "
                    f"{list(result)}. Fix the output names given to TorchRunner."
                )
            values = [result[n] for n in names]
        elif isinstance(result, torch.Tensor):
            values = [result]
        else:
            values = list(result)
        if len(values) != len(names):
            raise ShapeError(
                f"{self.name}: the module returned {len(values)} outputs but {len(names)} names "
                f"were given ({names}); pass one TensorInfo per returned tensor, in order."
            )
        return {n: v.detach().cpu().numpy() for n, v in zip(names, values, strict=True)}
