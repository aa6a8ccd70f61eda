"""Quickly Deployable Plugins ``edgevae::poe_fusion`` and ``edgevae::anomaly_score`` (AOT).

Imported only by the engine builder in plugin mode, where TensorRT >= 10.9 exists. Each plugin is
a shape descriptor (``@trtp.register``), a fixed FP32 type combination (``@trtp.autotune``) and an
ahead-of-time implementation (``@trtp.aot_impl``) that returns the PTX of
``kernels/plugins/common/edgevaePluginKernels.cu`` with its launch parameters; TensorRT bakes the
kernel into the engine, so running it needs no Python (reference/tensorrt.md §3.1). The ONNX
nodes come from :mod:`edgevae.trt.plugin_graph`; the I/O contract is documented there.

Kernel arguments follow the AOT rule "input pointers, int32 scalars, output pointers":

* poe_fusion(expert_mu, expert_logvar, mask, B, M, D, z_mu, z_logvar, kl_prior, cross_modal)
* anomaly_score(x_cat, recon_cat, mask, kl_prior, cross_modal, offsets, mean, std, weight,
  B, M, N, score, score_parts)

No ``from __future__ import annotations`` here: TensorRT's decorators inspect the annotations as
classes.
"""

from typing import Any, Tuple, Union  # noqa: UP035 - TensorRT validates typing.Tuple/Union forms

from edgevae._util.lazy import require
from edgevae.errors import EngineBuildError
from edgevae.trt.plugin_graph import ANOMALY_SCORE, NAMESPACE, POE_FUSION
from edgevae.trt.plugin_kernels import (
    MAX_LATENT,
    POE_ENTRY,
    POE_THREADS,
    SCORE_ENTRY,
    SCORE_THREADS,
    plugin_ptx,
)
from edgevae.trt.versions import ComputeCapability, CudaVersion

PLUGIN_IDS = (f"{NAMESPACE}::{POE_FUSION}", f"{NAMESPACE}::{ANOMALY_SCORE}")
_REGISTERED: dict[int, str] = {}  # id(tensorrt.plugin module) -> PTX arch registered with


def _trtp(trt: Any) -> Any:
    mod = getattr(trt, "plugin", None)
    return mod if mod is not None else require("tensorrt.plugin")


def _constant(expr: Any) -> int | None:
    """The value of a build-time-constant shape expression, else None."""
    try:
        if getattr(expr, "is_fake", False) or not expr.is_constant:
            return None
        return int(expr.constant_value())
    except (AttributeError, RuntimeError, TypeError):
        return None


def register_plugins(
    trt: Any, cc: ComputeCapability, driver_cuda: CudaVersion | None = None
) -> list[str]:
    """Register both AOT plugins with TensorRT's plugin registry (once per process).

    Args:
        trt: the imported ``tensorrt`` module (>= 10.9).
        cc: the GPU the engine is built for (the PTX targets ``compute_<cc>``).
        driver_cuda: the driver's CUDA version, to refuse PTX it cannot JIT.

    Returns:
        The registered plugin ids.

    Raises:
        MissingDependencyError: no nvcc or kernel sources to make the PTX.
        KernelError: the PTX does not compile or is too new for the driver.
        EngineBuildError: already registered in this process for another GPU architecture.
    """
    trtp = _trtp(trt)
    ptx = plugin_ptx(cc, driver_cuda=driver_cuda)
    key = id(trtp)
    if key in _REGISTERED:
        if _REGISTERED[key] != ptx.arch:
            raise EngineBuildError(
                f"the edgevae plugins are already registered for {_REGISTERED[key]} in this "
                f"process; build for {ptx.arch} in a new process."
            )
        return list(PLUGIN_IDS)
    f32 = trt.DataType.FLOAT
    kernel_ptx = ptx.text.encode()
    TensorDesc = trtp.TensorDesc

    # ---------------------------------------------------------------- poe_fusion
    @trtp.register(PLUGIN_IDS[0])
    def poe_fusion_desc(
        expert_mu: TensorDesc, expert_logvar: TensorDesc, mask: TensorDesc
    ) -> Tuple[TensorDesc, TensorDesc, TensorDesc, TensorDesc]:  # noqa: UP006
        b, m, d = expert_mu.shape_expr[0], expert_mu.shape_expr[1], expert_mu.shape_expr[2]
        latent = _constant(d)
        if latent is not None and latent > MAX_LATENT:
            raise ValueError(f"poe_fusion plugin supports D <= {MAX_LATENT}, got {latent}")
        return (
            trtp.from_shape_expr((b, d), dtype=f32),  # z_mu
            trtp.from_shape_expr((b, d), dtype=f32),  # z_logvar
            trtp.from_shape_expr((b,), dtype=f32),  # kl_prior
            trtp.from_shape_expr((b, m), dtype=f32),  # cross_modal
        )

    @trtp.autotune(PLUGIN_IDS[0])
    def poe_fusion_autotune(expert_mu, expert_logvar, mask, outputs):
        # no return annotation: TensorRT only accepts List[AutoTuneCombination] or none
        return [trtp.AutoTuneCombination("FP32, FP32, FP32, FP32, FP32, FP32, FP32")]

    @trtp.aot_impl(PLUGIN_IDS[0])
    def poe_fusion_aot(
        expert_mu: TensorDesc, expert_logvar: TensorDesc, mask: TensorDesc, outputs, tactic
    ) -> Tuple[  # noqa: UP006
        Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymExprs  # noqa: UP007
    ]:
        b, m, d = expert_mu.shape_expr[0], expert_mu.shape_expr[1], expert_mu.shape_expr[2]
        params = trtp.KernelLaunchParams()
        params.grid_x = trtp.SymInt32(b)  # one block per sample (grid takes int/SymInt32)
        params.block_x = POE_THREADS
        params.shared_mem = 0  # static shared memory in the kernel
        extra = trtp.SymIntExprs.from_tuple([trtp.SymInt32(e) for e in (b, m, d)])
        return POE_ENTRY, kernel_ptx, params, extra

    # ---------------------------------------------------------------- anomaly_score
    @trtp.register(PLUGIN_IDS[1])
    def anomaly_score_desc(
        x_cat: TensorDesc,
        recon_cat: TensorDesc,
        mask: TensorDesc,
        kl_prior: TensorDesc,
        cross_modal: TensorDesc,
        offsets: TensorDesc,
        mean: TensorDesc,
        std: TensorDesc,
        weight: TensorDesc,
    ) -> Tuple[TensorDesc, TensorDesc]:  # noqa: UP006
        b, m = mask.shape_expr[0], mask.shape_expr[1]
        return (
            trtp.from_shape_expr((b,), dtype=f32),  # score
            trtp.from_shape_expr((b, m + 2), dtype=f32),  # score_parts
        )

    @trtp.autotune(PLUGIN_IDS[1])
    def anomaly_score_autotune(
        x_cat, recon_cat, mask, kl_prior, cross_modal, offsets, mean, std, weight, outputs
    ):
        types = "FP32, FP32, FP32, FP32, FP32, INT32, FP32, FP32, FP32, FP32, FP32"
        return [trtp.AutoTuneCombination(types)]

    @trtp.aot_impl(PLUGIN_IDS[1])
    def anomaly_score_aot(
        x_cat: TensorDesc,
        recon_cat: TensorDesc,
        mask: TensorDesc,
        kl_prior: TensorDesc,
        cross_modal: TensorDesc,
        offsets: TensorDesc,
        mean: TensorDesc,
        std: TensorDesc,
        weight: TensorDesc,
        outputs,
        tactic,
    ) -> Tuple[  # noqa: UP006
        Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymExprs  # noqa: UP007
    ]:
        b, m, n = mask.shape_expr[0], mask.shape_expr[1], x_cat.shape_expr[1]
        params = trtp.KernelLaunchParams()
        params.grid_x = trtp.SymInt32(b)
        params.block_x = SCORE_THREADS
        params.shared_mem = 0
        extra = trtp.SymIntExprs.from_tuple([trtp.SymInt32(e) for e in (b, m, n)])
        return SCORE_ENTRY, kernel_ptx, params, extra

    _REGISTERED[key] = ptx.arch
    return list(PLUGIN_IDS)
