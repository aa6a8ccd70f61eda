"""Masked product of experts with a N(0, I) prior expert (DESIGN §4 contract), in FP32.

For experts m = 1..M with (mu_m, logvar_m) over a D-dim latent and a mask (B, M), 1 = present::

    logvar_m = clamp(logvar_m, -8, 8)
    prec_m   = mask_m * exp(-logvar_m)
    P        = 1 + sum_m prec_m            # the 1 is the prior expert
    mu       = sum_m prec_m * mu_m / P
    logvar   = -log P

An all-masked row gives the prior exactly: mu = 0, logvar = 0. Missing experts are removed by the
multiplication with the mask, never by an infinite variance (that breaks FP16/INT8 engines). The
CUDA kernel ``kernels/poe_fusion`` implements the same math; this module is its reference.
"""

from __future__ import annotations

import torch
from torch import Tensor

LOGVAR_MIN = -8.0
LOGVAR_MAX = 8.0


def poe(mu: Tensor, logvar: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Fuse experts: (B, M, D), (B, M, D), (B, M) -> mu (B, D), logvar (B, D), in FP32."""
    mu, logvar, mask = mu.float(), logvar.float(), mask.float()
    prec = mask.unsqueeze(-1) * torch.exp(-logvar.clamp(LOGVAR_MIN, LOGVAR_MAX))  # (B, M, D)
    total = 1.0 + prec.sum(dim=1)  # (B, D), prior precision 1 included
    fused_mu = (prec * mu).sum(dim=1) / total
    return fused_mu, -torch.log(total)


def kl_to_prior(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over the latent: (B, D) -> (B,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)


def cross_modal_kl(mu: Tensor, logvar: Tensor, mask: Tensor) -> Tensor:
    """Per present expert m, KL(q_m || PoE of the other present experts and the prior).

    (B, M, D), (B, M, D), (B, M) -> (B, M); 0 for absent experts. It needs no decoder and grows
    when one modality disagrees with the rest (a faulty camera, audio from another moment).
    """
    mu, mask = mu.float(), mask.float()
    logvar = logvar.float().clamp(LOGVAR_MIN, LOGVAR_MAX)
    prec = mask.unsqueeze(-1) * torch.exp(-logvar)  # (B, M, D)
    total = 1.0 + prec.sum(dim=1, keepdim=True)  # (B, 1, D)
    weighted = (prec * mu).sum(dim=1, keepdim=True)  # (B, 1, D)
    p_rest = total - prec  # (B, M, D) precision of "all others + prior" for each m
    mu_rest = (weighted - prec * mu) / p_rest
    # KL(N(mu_m, v_m) || N(mu_r, 1/p_r))
    #   = 0.5 * (-log p_r - logvar_m + (v_m + (mu_m - mu_r)^2) * p_r - 1)
    spread = logvar.exp() + (mu - mu_rest).pow(2)
    kl = 0.5 * (-torch.log(p_rest) - logvar + spread * p_rest - 1.0)
    return kl.sum(dim=-1) * mask  # (B, M)


def reparameterize(mu: Tensor, logvar: Tensor, eps: Tensor) -> Tensor:
    """z = mu + exp(logvar / 2) * eps, with eps given explicitly (no random op in any graph)."""
    return mu + torch.exp(0.5 * logvar) * eps
