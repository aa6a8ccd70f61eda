"""The eager PyTorch op sequences each kernel replaces (CPU or CUDA tensors).

These are the baselines of ``benchmarks/kernels/bench_kernels.py`` and the eager half of the GPU
pipeline's parity check. They are built only from the contract functions in
``edgevae.model.fusion`` / ``edgevae.model.scoring`` plus ``torch.nn.functional.interpolate``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from edgevae.errors import ShapeError
from edgevae.kernels.reference import LUMA_WEIGHTS, PoeOutputs, ScoreOutputs
from edgevae.model.fusion import cross_modal_kl, kl_to_prior, poe, reparameterize
from edgevae.model.scoring import recon_errors, standardize


def poe_fusion_eager(
    mu: Tensor, logvar: Tensor, mask: Tensor, eps: Tensor | None = None
) -> PoeOutputs:
    """``poe`` + ``reparameterize`` + ``kl_to_prior`` + ``cross_modal_kl`` (torch tensors)."""
    z_mu, z_logvar = poe(mu, logvar, mask)
    z = z_mu if eps is None else reparameterize(z_mu, z_logvar, eps.float())
    return PoeOutputs(
        z_mu, z_logvar, z, kl_to_prior(z_mu, z_logvar), cross_modal_kl(mu, logvar, mask)
    )


def anomaly_score_eager(
    inputs: Sequence[Tensor],
    recons: Sequence[Tensor],
    mask: Tensor,
    kl_prior: Tensor,
    cross_kl: Tensor,
    mean: Tensor,
    std: Tensor,
    weight: Tensor,
    combine: str = "sum",
) -> ScoreOutputs:
    """``scoring.raw_parts`` (given the fusion's KL outputs) + ``scoring.standardize``."""
    mask = mask.float()
    errs = recon_errors(inputs, recons) * mask  # (B, M)
    n_present = mask.sum(dim=1).clamp(min=1.0)
    raw = torch.cat([errs, kl_prior[:, None], (cross_kl.sum(dim=1) / n_present)[:, None]], dim=1)
    score, parts = standardize(raw, mask, mean, std, weight, combine)
    return ScoreOutputs(score, parts, raw)


def preprocess_eager(
    frames: Tensor, size: tuple[int, int], channels: int, *, bgr: bool = False
) -> Tensor:
    """uint8 (B, n_cams, T, H_in, W_in, C_in) -> float32 (B, n_cams, T*C, H, W), as the kernel.

    float -> NCHW -> ``interpolate(bilinear, align_corners=False, antialias=False)`` -> BT.601
    luma (gray model) or RGB order -> ``* (1/255)`` -> frame-major channel stacking.
    """
    if frames.ndim != 6 or frames.dtype != torch.uint8 or frames.shape[-1] not in (1, 3, 4):
        raise ShapeError(
            "preprocess: frames must be uint8 (B, n_cams, T, H, W, C) with C 1, 3 or 4, got "
            f"{frames.dtype} {tuple(frames.shape)}."
        )
    if channels not in (1, 3):
        raise ShapeError(f"preprocess: model channels must be 1 or 3, got {channels}.")
    b, n_cams, t, in_h, in_w, in_c = frames.shape
    x = frames.reshape(b * n_cams * t, in_h, in_w, in_c).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=False)
    if in_c == 1:
        x = x.expand(-1, channels, -1, -1)
    else:
        rgb = x[:, [2, 1, 0]] if bgr else x[:, :3]
        if channels == 1:
            w = torch.tensor(LUMA_WEIGHTS, dtype=torch.float32, device=x.device)
            x = (rgb * w[None, :, None, None]).sum(dim=1, keepdim=True)
        else:
            x = rgb
    x = x * (1.0 / 255.0)  # as Normalizer (float32 scale); (F, C, H, W)
    return x.reshape(b, n_cams, t * channels, size[0], size[1]).contiguous()
