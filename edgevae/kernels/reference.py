"""NumPy references of the three CUDA kernels (FP32), the same math as the PyTorch references.

* :func:`poe_fusion_ref`: ``edgevae.model.fusion`` (``poe``, ``kl_to_prior``, ``cross_modal_kl``,
  ``reparameterize``) in one function.
* :func:`anomaly_score_ref`: ``edgevae.model.scoring`` (``raw_parts`` given the fusion outputs,
  then ``standardize``).
* :func:`preprocess_ref`: uint8 HWC frames -> ``torch.nn.functional.interpolate(mode="bilinear",
  align_corners=False, antialias=False)`` -> BT.601 luma where the model is gray -> ``* (1/255)``
  (``float32(1/255)``, as ``edgevae.data.transforms.Normalizer``) ->
  ``(B, n_cams, T*C, H, W)``, channel index ``t * C + c``.

Tests pin these to the PyTorch functions (tests/unit/test_kernels_reference.py) and the kernels'
host math to these (tests/unit/test_kernels_hostmath.py). No torch import here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from edgevae.errors import ShapeError
from edgevae.model.score_rules import combine_numpy

LOGVAR_MIN = -8.0  # same as edgevae.model.fusion (a test checks)
LOGVAR_MAX = 8.0
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601, R G B
MAX_MODALITIES = 16  # kernels/common/edgevae_math.cuh kMaxModalities

_F32 = np.float32


class PoeOutputs(NamedTuple):
    """poe_fusion outputs: fused posterior, sample, KL to the prior, per-expert cross-modal KL.

    Float32 NumPy arrays here and in the host math; torch tensors from the kernels / eager ops.
    """

    z_mu: Any  # (B, D)
    z_logvar: Any  # (B, D)
    z: Any  # (B, D); z_mu when no eps was given
    kl_prior: Any  # (B,)
    cross_kl: Any  # (B, M), 0 for absent experts


class ScoreOutputs(NamedTuple):
    """anomaly_score outputs: combined score, standardised parts and unstandardised parts
    (NumPy arrays or torch tensors, as :class:`PoeOutputs`)."""

    score: Any  # (B,)
    parts: Any  # (B, M + 2), columns [recon_<m>..., kl_prior, cross_modal]
    raw: Any  # (B, M + 2)


def _f32(name: str, x: np.ndarray, ndim: int) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != ndim:
        raise ShapeError(f"'{name}' must have {ndim} dimensions, got shape {x.shape}.")
    return x.astype(_F32, copy=False)


def poe_fusion_ref(
    mu: np.ndarray, logvar: np.ndarray, mask: np.ndarray, eps: np.ndarray | None = None
) -> PoeOutputs:
    """Masked PoE with a N(0, I) prior expert, KL to the prior and cross-modal KL, in FP32.

    Args:
        mu, logvar: expert means / log-variances (B, M, D); logvar is clamped to [-8, 8].
        mask: (B, M), 1 = present; an all-masked row fuses to the prior (mu 0, logvar 0).
        eps: optional (B, D) noise; then ``z = mu + exp(logvar / 2) * eps``, else ``z = mu``.

    Returns:
        PoeOutputs (float32 arrays).

    Raises:
        ShapeError: on inconsistent shapes.
    """
    mu, logvar, mask = _f32("mu", mu, 3), _f32("logvar", logvar, 3), _f32("mask", mask, 2)
    if logvar.shape != mu.shape or mask.shape != mu.shape[:2]:
        raise ShapeError(
            f"poe_fusion: mu {mu.shape}, logvar {logvar.shape} and mask {mask.shape} must be "
            "(B, M, D), (B, M, D) and (B, M)."
        )
    lv = np.clip(logvar, _F32(LOGVAR_MIN), _F32(LOGVAR_MAX))
    prec = mask[:, :, None] * np.exp(-lv)  # (B, M, D)
    total = _F32(1.0) + prec.sum(axis=1)  # (B, D), the prior's precision 1 included
    weighted = (prec * mu).sum(axis=1)  # (B, D)
    z_mu = weighted / total
    z_logvar = -np.log(total)
    if eps is None:
        z = z_mu.copy()
    else:
        eps = _f32("eps", eps, 2)
        if eps.shape != z_mu.shape:
            raise ShapeError(f"poe_fusion: eps {eps.shape} must be (B, D) = {z_mu.shape}.")
        z = z_mu + np.exp(_F32(0.5) * z_logvar) * eps
    kl = _F32(0.5) * (z_mu * z_mu + np.exp(z_logvar) - _F32(1.0) - z_logvar)
    p_rest = total[:, None, :] - prec  # (B, M, D): precision of the others + the prior
    mu_rest = (weighted[:, None, :] - prec * mu) / p_rest
    spread = np.exp(lv) + (mu - mu_rest) ** 2
    cross = _F32(0.5) * (-np.log(p_rest) - lv + spread * p_rest - _F32(1.0))
    return PoeOutputs(
        z_mu.astype(_F32),
        z_logvar.astype(_F32),
        z.astype(_F32),
        kl.sum(axis=-1).astype(_F32),
        (cross.sum(axis=-1) * mask).astype(_F32),
    )


def anomaly_score_ref(
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
    """Score parts ``[recon_<m>..., kl_prior, cross_modal]``, standardised and combined.

    Args:
        inputs, recons: M arrays (B, ...) each: normalised inputs and their reconstructions.
        mask: (B, M), 1 = present; a missing modality's recon part is 0 (raw and standardised).
        kl_prior: (B,) KL to the prior; cross_kl: (B, M) per-expert cross-modal KL (0 if absent).
        mean, std, weight: (M + 2,) standardisation statistics (``ScoreStats``).
        combine: ``sum`` or ``max`` (:mod:`edgevae.model.score_rules`).

    Returns:
        ScoreOutputs: score (B,), parts (B, M + 2), raw (B, M + 2), float32.

    Raises:
        ShapeError: on inconsistent shapes or more than 16 modalities.
    """
    m = len(inputs)
    if m != len(recons) or not 1 <= m <= MAX_MODALITIES:
        raise ShapeError(
            f"anomaly_score: {m} inputs and {len(recons)} reconstructions; give the same number, "
            f"1 to {MAX_MODALITIES}."
        )
    mask = _f32("mask", mask, 2)
    b = mask.shape[0]
    errs = []
    for i, (x, r) in enumerate(zip(inputs, recons, strict=True)):
        x, r = np.asarray(x, dtype=_F32), np.asarray(r, dtype=_F32)
        if x.shape != r.shape or x.shape[0] != b:
            raise ShapeError(
                f"anomaly_score: modality {i}: input {x.shape} and reconstruction {r.shape} must "
                f"have the same shape with batch {b}."
            )
        errs.append(((x - r) ** 2).reshape(b, -1).mean(axis=1, dtype=_F32))
    raw_recon = np.stack(errs, axis=1) * mask  # (B, M)
    n_present = np.maximum(mask.sum(axis=1), _F32(1.0))
    cross_mean = _f32("cross_kl", cross_kl, 2).sum(axis=1) / n_present
    raw = np.concatenate(
        [raw_recon, _f32("kl_prior", kl_prior, 1)[:, None], cross_mean[:, None]], axis=1
    ).astype(_F32)
    stats = [np.asarray(v, dtype=_F32).reshape(-1) for v in (mean, std, weight)]
    if any(s.shape != (m + 2,) for s in stats):
        raise ShapeError(f"anomaly_score: mean, std and weight must have M + 2 = {m + 2} entries.")
    keep = np.concatenate([mask, np.ones((b, 2), dtype=_F32)], axis=1)
    parts = (raw - stats[0]) / stats[1] * keep
    score = combine_numpy(parts, keep, stats[2], combine)
    return ScoreOutputs(score.astype(_F32), parts.astype(_F32), raw)


def bilinear_taps_ref(in_size: int, out_size: int) -> tuple[np.ndarray, ...]:
    """Source taps (i0, i1, w0, w1) for each output index, PyTorch's align_corners=False rule.

    ``scale = in/out``; ``src = max(scale * (dst + 0.5) - 0.5, 0)``; ``i0 = min(floor(src),
    in - 1)``; ``i1 = i0 + (i0 < in - 1)``; ``w1 = clip(src - i0, 0, 1)``; ``w0 = 1 - w1``.
    """
    if in_size < 1 or out_size < 1:
        raise ShapeError(f"bilinear resize needs positive sizes, got {in_size} -> {out_size}.")
    scale = _F32(in_size) / _F32(out_size)
    src = np.maximum(scale * (np.arange(out_size, dtype=_F32) + _F32(0.5)) - _F32(0.5), _F32(0))
    i0 = np.minimum(np.floor(src).astype(np.int32), in_size - 1)
    w1 = np.clip(src - i0.astype(_F32), _F32(0), _F32(1)).astype(_F32)
    i1 = i0 + (i0 < in_size - 1).astype(np.int32)
    return i0, i1, (_F32(1) - w1).astype(_F32), w1


def preprocess_ref(
    frames: np.ndarray, size: tuple[int, int], channels: int, *, bgr: bool = False
) -> np.ndarray:
    """uint8 frames (B, n_cams, T, H_in, W_in, C_in) -> float32 (B, n_cams, T*C, H, W) in [0, 1].

    Args:
        frames: uint8, C_in 1 (gray), 3 (RGB, or BGR with ``bgr``) or 4 (alpha ignored).
        size: model (H, W); the frames are resized to it (stretched, no letterbox).
        channels: model channels per frame: 1 (BT.601 luma of colour frames) or 3 (RGB; a gray
            frame is replicated).
        bgr: colour frames are in B, G, R order (OpenCV).

    Returns:
        float32 array; frame t's channel c is at channel index ``t * channels + c``.

    Raises:
        ShapeError: on a wrong rank, dtype or channel count.
    """
    frames = np.asarray(frames)
    if frames.ndim != 6 or frames.dtype != np.uint8 or frames.shape[-1] not in (1, 3, 4):
        raise ShapeError(
            "preprocess: frames must be uint8 (B, n_cams, T, H, W, C) with C 1, 3 or 4, got "
            f"{frames.dtype} {frames.shape}."
        )
    if channels not in (1, 3):
        raise ShapeError(f"preprocess: model channels must be 1 or 3, got {channels}.")
    b, n_cams, t, in_h, in_w, in_c = frames.shape
    out_h, out_w = size
    y0, y1, wy0, wy1 = bilinear_taps_ref(in_h, out_h)
    x0, x1, wx0, wx1 = bilinear_taps_ref(in_w, out_w)
    f = frames.astype(_F32)
    wy0, wy1 = wy0[:, None, None], wy1[:, None, None]
    wx0, wx1 = wx0[None, :, None], wx1[None, :, None]

    def rows(y: np.ndarray) -> np.ndarray:  # (..., out_h, out_w, C): one source row per output row
        r = f[..., y, :, :]
        return r[..., :, x0, :] * wx0 + r[..., :, x1, :] * wx1

    resized = rows(y0) * wy0 + rows(y1) * wy1  # (B, n_cams, T, out_h, out_w, C_in), 0..255
    if in_c == 1:
        out = np.repeat(resized, channels, axis=-1)
    else:
        ri, bi = (2, 0) if bgr else (0, 2)
        r, g, bl = resized[..., ri], resized[..., 1], resized[..., bi]
        if channels == 1:
            lr, lg, lb = (_F32(w) for w in LUMA_WEIGHTS)
            out = (lr * r + lg * g + lb * bl)[..., None]
        else:
            out = np.stack([r, g, bl], axis=-1)
    out = (out * _F32(1.0 / 255.0)).astype(_F32)  # as Normalizer; (B, n_cams, T, H, W, C)
    out = out.transpose(0, 1, 2, 5, 3, 4)  # (B, n_cams, T, C, H, W)
    return np.ascontiguousarray(out.reshape(b, n_cams, t * channels, out_h, out_w))
