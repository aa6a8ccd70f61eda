"""PyTorch front-end of the CUDA kernels: CUDA tensors in, CUDA tensors out, no copies.

Each function validates its inputs, allocates its outputs with ``torch.empty`` on the inputs'
device (or writes into ``out=``), and launches one kernel per call (preprocess: one per camera
group) on PyTorch's *current* stream through :mod:`edgevae.kernels.launch`. So the kernels are
ordered with the surrounding PyTorch work and can be captured in a CUDA graph
(``torch.cuda.graph``) after one warm-up call outside the capture (that call loads the module).

CPU tensors raise :class:`~edgevae.errors.ShapeError` naming the CPU alternative
(``edgevae.kernels.eager`` / ``edgevae.model.fusion``). The math is
:mod:`edgevae.kernels.reference`; launch configurations are in each kernel's README.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from edgevae.errors import ShapeError
from edgevae.kernels.launch import KernelLauncher, get_launcher
from edgevae.kernels.reference import MAX_MODALITIES, PoeOutputs, ScoreOutputs
from edgevae.model.score_rules import COMBINE_RULES, check_combine

MAX_LATENT_DIM = 6144  # poe_fusion keeps 2 * D floats in shared memory (48 KiB)
_MAX_GRID_Z = 65535
_SCORE_THREADS = 256


class _ScoreInputs(ctypes.Structure):
    """Mirror of ``struct ScoreInputs`` in kernels/anomaly_score/anomaly_score.cu."""

    _fields_ = [
        ("inputs", ctypes.c_void_p * MAX_MODALITIES),
        ("recons", ctypes.c_void_p * MAX_MODALITIES),
        ("numel", ctypes.c_longlong * MAX_MODALITIES),
    ]


def _require_cuda(name: str, t: Tensor, cpu_alternative: str) -> None:
    if t.device.type != "cuda":
        raise ShapeError(
            f"'{name}' is on {t.device}, but the edgevae CUDA kernels need CUDA tensors: move "
            f"the inputs with .cuda(), or use {cpu_alternative} on the CPU."
        )


def _cuda_tensor(name: str, t: object, ndim: int | None, cpu_alternative: str) -> Tensor:
    """``t`` as a CUDA tensor of rank ``ndim`` (None: any rank >= 1), else ShapeError."""
    if not isinstance(t, Tensor):
        raise ShapeError(f"'{name}' must be a torch tensor, got {type(t).__name__}.")
    _require_cuda(name, t, cpu_alternative)
    if (ndim is None and t.ndim < 1) or (ndim is not None and t.ndim != ndim):
        want = "at least 1" if ndim is None else str(ndim)
        raise ShapeError(f"'{name}' must have {want} dimensions, got shape {tuple(t.shape)}.")
    return t


def _f32(name: str, t: object, ndim: int, cpu_alternative: str) -> Tensor:
    t = _cuda_tensor(name, t, ndim, cpu_alternative)
    if not (t.is_floating_point() or t.dtype == torch.bool):
        raise ShapeError(f"'{name}' must be a floating-point tensor, got {t.dtype}.")
    return t.to(torch.float32).contiguous()


def _same_device(device: torch.device, **tensors: Tensor) -> None:
    for name, t in tensors.items():
        if t.device != device:
            raise ShapeError(f"'{name}' is on {t.device}; every input must be on {device}.")


def _ptr(t: Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(None if t is None else t.data_ptr())


def _launcher(device: torch.device, backend: str) -> tuple[KernelLauncher, int]:
    index = device.index if device.index is not None else torch.cuda.current_device()
    return get_launcher(backend, index), torch.cuda.current_stream(device).cuda_stream


def poe_fusion(
    mu: Tensor,
    logvar: Tensor,
    mask: Tensor,
    eps: Tensor | None = None,
    *,
    backend: str = "cuda-python",
) -> PoeOutputs:
    """Masked PoE + reparameterisation + KL to the prior + cross-modal KL, one launch.

    Args:
        mu, logvar: expert means / log-variances (B, M, D), CUDA, floating point (used as FP32).
        mask: (B, M), 1 = present.
        eps: optional (B, D) noise; without it ``z`` is ``z_mu`` (the same tensor).
        backend: ``"cuda-python"`` or ``"pycuda"`` (see :mod:`edgevae.kernels.launch`).

    Returns:
        PoeOutputs of float32 CUDA tensors: z_mu, z_logvar, z (B, D), kl_prior (B,),
        cross_kl (B, M).

    Raises:
        ShapeError: CPU tensors, wrong shapes or dtypes, D > 6144.
    """
    alt = "edgevae.kernels.eager.poe_fusion_eager"
    mu = _f32("mu", mu, 3, alt)
    logvar = _f32("logvar", logvar, 3, alt)
    mask = _f32("mask", mask, 2, alt)
    b, m, d = mu.shape
    if logvar.shape != mu.shape or mask.shape != (b, m):
        raise ShapeError(
            f"poe_fusion: mu {tuple(mu.shape)}, logvar {tuple(logvar.shape)} and mask "
            f"{tuple(mask.shape)} must be (B, M, D), (B, M, D) and (B, M)."
        )
    if not 1 <= d <= MAX_LATENT_DIM or m < 1:
        raise ShapeError(f"poe_fusion: needs M >= 1 and 1 <= D <= {MAX_LATENT_DIM}, got {m}, {d}.")
    if eps is not None:
        eps = _f32("eps", eps, 2, alt)
        if eps.shape != (b, d):
            raise ShapeError(f"poe_fusion: eps {tuple(eps.shape)} must be (B, D) = {(b, d)}.")
    _same_device(mu.device, logvar=logvar, mask=mask, **({"eps": eps} if eps is not None else {}))
    z_mu = torch.empty((b, d), dtype=torch.float32, device=mu.device)
    z_logvar = torch.empty_like(z_mu)
    z = z_mu if eps is None else torch.empty_like(z_mu)
    kl = torch.empty((b,), dtype=torch.float32, device=mu.device)
    cross = torch.empty((b, m), dtype=torch.float32, device=mu.device)
    if b == 0:
        return PoeOutputs(z_mu, z_logvar, z, kl, cross)
    launcher, stream = _launcher(mu.device, backend)
    threads = min(256, (d + 31) // 32 * 32)
    args = [
        _ptr(mu), _ptr(logvar), _ptr(mask), _ptr(eps), _ptr(z_mu), _ptr(z_logvar),
        _ptr(None if eps is None else z), _ptr(kl), _ptr(cross),
        ctypes.c_int(b), ctypes.c_int(m), ctypes.c_int(d),
    ]  # fmt: skip
    launcher.launch("poe_fusion", (b, 1, 1), (threads, 1, 1), args, stream=stream, shared=8 * d)
    return PoeOutputs(z_mu, z_logvar, z, kl, cross)


def anomaly_score(
    inputs: Sequence[Tensor],
    recons: Sequence[Tensor],
    mask: Tensor,
    kl_prior: Tensor,
    cross_kl: Tensor,
    mean: Tensor,
    std: Tensor,
    weight: Tensor,
    combine: str = "sum",
    *,
    backend: str = "cuda-python",
) -> ScoreOutputs:
    """Reconstruction errors + standardisation + combined score, one launch per batch.

    Args:
        inputs, recons: M (1..16) CUDA tensors (B, ...) each (used as FP32).
        mask: (B, M), 1 = present.
        kl_prior: (B,) and cross_kl: (B, M), e.g. from :func:`poe_fusion`.
        mean, std, weight: (M + 2,) CUDA tensors (``ScoreStats.tensors(device)``); pass device
            tensors made once, so the call stays capturable in a CUDA graph.
        combine: ``sum`` or ``max`` (:mod:`edgevae.model.score_rules`).
        backend: ``"cuda-python"`` or ``"pycuda"``.

    Returns:
        ScoreOutputs of float32 CUDA tensors: score (B,), parts (B, M + 2), raw (B, M + 2).

    Raises:
        ShapeError: CPU tensors, wrong shapes, M outside 1..16.
    """
    alt = "edgevae.kernels.eager.anomaly_score_eager"
    m = len(inputs)
    if m != len(recons) or not 1 <= m <= MAX_MODALITIES:
        raise ShapeError(
            f"anomaly_score: {m} inputs and {len(recons)} reconstructions; give the same number, "
            f"1 to {MAX_MODALITIES}."
        )
    mask = _f32("mask", mask, 2, alt)
    b = mask.shape[0]
    xs, rs = [], []
    for i, (x, r) in enumerate(zip(inputs, recons, strict=True)):
        x = _cuda_tensor(f"inputs[{i}]", x, None, alt)
        r = _cuda_tensor(f"recons[{i}]", r, None, alt)
        if x.shape != r.shape or x.shape[0] != b or math.prod(x.shape[1:]) == 0:
            raise ShapeError(
                f"anomaly_score: modality {i}: input {tuple(x.shape)} and reconstruction "
                f"{tuple(r.shape)} must have the same non-empty shape with batch {b}."
            )
        xs.append(x.to(torch.float32).contiguous())
        rs.append(r.to(torch.float32).contiguous())
    kl = _f32("kl_prior", kl_prior, 1, alt)
    cross = _f32("cross_kl", cross_kl, 2, alt)
    stats = [_f32(n, s, 1, alt) for n, s in (("mean", mean), ("std", std), ("weight", weight))]
    if kl.shape != (b,) or cross.shape != (b, m) or any(s.shape != (m + 2,) for s in stats):
        raise ShapeError(
            f"anomaly_score: kl_prior {tuple(kl.shape)}, cross_kl {tuple(cross.shape)} and "
            f"mean/std/weight must be ({b},), ({b}, {m}) and ({m + 2},)."
        )
    device = mask.device
    _same_device(device, kl_prior=kl, cross_kl=cross, mean=stats[0], std=stats[1],
                 weight=stats[2], **{f"inputs[{i}]": x for i, x in enumerate(xs)},
                 **{f"recons[{i}]": r for i, r in enumerate(rs)})  # fmt: skip
    score = torch.empty((b,), dtype=torch.float32, device=device)
    parts = torch.empty((b, m + 2), dtype=torch.float32, device=device)
    raw = torch.empty_like(parts)
    if b == 0:
        return ScoreOutputs(score, parts, raw)
    table = _ScoreInputs()
    for i, (x, r) in enumerate(zip(xs, rs, strict=True)):
        table.inputs[i], table.recons[i] = x.data_ptr(), r.data_ptr()
        table.numel[i] = math.prod(x.shape[1:])
    launcher, stream = _launcher(device, backend)
    args = [
        table, _ptr(mask), _ptr(kl), _ptr(cross), *(_ptr(s) for s in stats),
        _ptr(raw), _ptr(parts), _ptr(score), ctypes.c_int(b), ctypes.c_int(m),
        ctypes.c_int(COMBINE_RULES.index(check_combine(combine))),
    ]  # fmt: skip
    launcher.launch("anomaly_score", (b, 1, 1), (_SCORE_THREADS, 1, 1), args, stream=stream)
    return ScoreOutputs(score, parts, raw)


def preprocess(
    frames: Tensor | Sequence[Tensor],
    size: tuple[int, int],
    channels: int,
    *,
    bgr: bool = False,
    out: Tensor | None = None,
    backend: str = "cuda-python",
) -> Tensor:
    """uint8 camera frames -> resized, colour-converted, /255, frame-stacked model input.

    Args:
        frames: one CUDA uint8 tensor (B, n_cams, T, H_in, W_in, C_in) (one launch), or a
            sequence of n_cams tensors (B, T, H_i, W_i, C_i) with per-camera resolutions and
            channel counts (one launch each). C_in is 1 (gray), 3 (RGB/BGR) or 4 (alpha ignored).
        size: model (H, W).
        channels: model channels per frame, 1 (BT.601 luma) or 3 (RGB).
        bgr: colour frames are B, G, R (OpenCV).
        out: optional float32 CUDA tensor (B, n_cams, T*channels, H, W), contiguous, to write
            into (static buffers for CUDA graphs).
        backend: ``"cuda-python"`` or ``"pycuda"``.

    Returns:
        float32 (B, n_cams, T*channels, H, W); channel index ``t * channels + c``.

    Raises:
        ShapeError: CPU tensors, wrong dtype/rank/channels, mismatched B or T, bad ``out``.
    """
    alt = "edgevae.kernels.eager.preprocess_eager"
    if isinstance(frames, Tensor):
        full = _cuda_tensor("frames", frames, 6, alt)
        groups = [full]
    else:
        groups = [
            _cuda_tensor(f"frames[{k}]", f, 5, alt).unsqueeze(1) for k, f in enumerate(frames)
        ]
        if not groups:
            raise ShapeError("preprocess: got an empty list of camera frames.")
    for k, g in enumerate(groups):
        if g.dtype != torch.uint8 or g.shape[-1] not in (1, 3, 4) or min(g.shape[3:5]) < 1:
            raise ShapeError(
                f"preprocess: frames (group {k}) must be uint8 (..., H, W, C) with C 1, 3 or 4 "
                f"and H, W >= 1, got {g.dtype} {tuple(g.shape)}."
            )
        if g.shape[0] != groups[0].shape[0] or g.shape[2] != groups[0].shape[2]:
            raise ShapeError("preprocess: every camera needs the same batch size B and frames T.")
    if channels not in (1, 3):
        raise ShapeError(f"preprocess: model channels must be 1 or 3, got {channels}.")
    out_h, out_w = (int(v) for v in size)
    if out_h < 1 or out_w < 1:
        raise ShapeError(f"preprocess: output size must be positive, got {size}.")
    b, t = groups[0].shape[0], groups[0].shape[2]
    n_cams = sum(g.shape[1] for g in groups)
    device = groups[0].device
    _same_device(device, **{f"frames[{k}]": g for k, g in enumerate(groups)})
    shape = (b, n_cams, t * channels, out_h, out_w)
    if out is None:
        out = torch.empty(shape, dtype=torch.float32, device=device)
    elif (
        not isinstance(out, Tensor) or out.shape != shape or out.dtype != torch.float32
        or out.device != device or not out.is_contiguous()
    ):  # fmt: skip
        raise ShapeError(
            f"preprocess: out must be a contiguous float32 {shape} tensor on {device}."
        )
    if out.numel() == 0:
        return out
    launcher, stream = _launcher(device, backend)
    cam_stride = t * channels * out_h * out_w
    block = (32, 8, 1)
    first_cam = 0
    for g in groups:
        g = g.contiguous()
        cams, in_h, in_w, in_c = g.shape[1], g.shape[3], g.shape[4], g.shape[5]
        n_frames = b * cams * t
        grid = ((out_w + 31) // 32, (out_h + 7) // 8, min(n_frames, _MAX_GRID_Z))
        args = [
            _ptr(g), ctypes.c_void_p(out.data_ptr() + first_cam * cam_stride * 4),
            *(ctypes.c_int(v) for v in (b, cams, t, in_h, in_w, in_c, out_h, out_w, channels)),
            ctypes.c_int(int(bgr)), ctypes.c_longlong(n_cams * cam_stride),
            ctypes.c_longlong(cam_stride),
        ]  # fmt: skip
        launcher.launch("preprocess", grid, block, args, stream=stream)
        first_cam += cams
    return out
