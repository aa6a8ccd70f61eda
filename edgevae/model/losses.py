"""Training objectives (pure functions): the subset beta-ELBO and the autoencoder loss.

``training_loss(model, inputs, mask, step=, generator=)`` dispatches on ``model.config.kind``.

**mvae / unimodal: beta-ELBO over the full set plus subsets.** For each batch row, with
``present`` = modalities present in the data (and used by the model):

1. *Modality dropout*: the full-set term's encoder sees ``present`` with each modality hidden with
   probability ``modality_dropout`` (never all of them: one random present modality is kept).
2. *Subsets*: ``subsets_k`` random non-empty subsets of ``present`` per row (each present
   modality kept with probability 1/2; an empty draw keeps one random present modality). When
   ``2**M - 1 <= subsets_k`` every non-empty subset of the model's modalities is enumerated
   instead, and a subset counts for a row only when all its modalities are present there.
3. Every term's posterior ``q(z | X_S) = PoE(S)`` is sampled once (``eps`` from ``generator``) and
   decodes **all** present modalities (so subset posteriors learn to impute the others).
4. Per term: ``recon + beta_t * KL(q(z | X_S) || N(0, I))``; the loss is the mean over rows of
   ``full term + mean of the row's valid subset terms``.

**Likelihood**: Gaussian with fixed variance, i.e. squared error. With ``likelihood_rescaling``
(default) modality m contributes ``w_m * recon_scale * mean((x - x_hat)**2)``: the squared error is
divided by the modality's element count, so a 3x8x64x64 camera set does not drown a 1x32x32
spectrogram or a 16x18 motion series, and every modality counts as ``recon_scale`` elements (the
effective sample size that sets the balance against the KL). ``w_m`` comes from
``config.recon_weights`` (default 1). Without rescaling: ``w_m * sum((x - x_hat)**2)``.

**KL warm-up**: ``beta_t = beta * min(1, step / kl_warmup_steps)``.

**Missing data**: modalities with mask 0 are excluded from the encoders' product, from the subsets
and from the reconstruction loss, and their tensors are zeroed first, so whatever they hold does not
change the loss. A row with nothing present contributes only its prior term, which is 0.

**concat-ae**: reconstruction only (same likelihood and modality dropout, no KL, no subsets).

Everything random comes from ``generator``: the same generator state gives the same loss.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import torch
from torch import Tensor

from edgevae.model.fusion import kl_to_prior, poe, reparameterize
from edgevae.model.vae import MultimodalModel


class LossOutput(NamedTuple):
    """The loss to minimise and its parts (detached, for logging and NaN diagnosis).

    ``parts`` keys: ``recon_<m>`` per modality (loss units), ``kl`` (KL to the prior in nats,
    before the warm-up weight), ``kl_weight`` (beta_t) and ``total``; each is the mean over rows of
    full-set term + mean of the row's subset terms, so
    ``total == sum(recon_*) + kl_weight * kl / recon_scale``.
    """

    total: Tensor
    parts: dict[str, Tensor]


def kl_weight(beta: float, step: int, warmup_steps: int) -> float:
    """KL warm-up: ``beta * min(1, step / warmup_steps)`` (``beta`` when there is no warm-up)."""
    if warmup_steps <= 0:
        return float(beta)
    return float(beta) * min(1.0, max(step, 0) / warmup_steps)


def _rand(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> Tensor:
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _pick_one(present: Tensor, generator: torch.Generator) -> Tensor:
    """One random present modality per row as a one-hot (B, M); all zeros where none present."""
    scores = (_rand(tuple(present.shape), generator, present.device) + 1.0) * present
    onehot = torch.zeros_like(present).scatter_(1, scores.argmax(dim=1, keepdim=True), 1.0)
    return onehot * present


def modality_dropout(present: Tensor, p: float, generator: torch.Generator) -> Tensor:
    """Hide each present modality with probability ``p``, never all of a row's modalities.

    (B, M) 0/1 float -> (B, M) 0/1 float; a row whose draw hides everything keeps one random
    present modality; rows with nothing present stay empty.
    """
    keep = present * (_rand(tuple(present.shape), generator, present.device) >= p).float()
    emptied = (keep.sum(dim=1, keepdim=True) == 0) & (present.sum(dim=1, keepdim=True) > 0)
    return torch.where(emptied, _pick_one(present, generator), keep)


def random_subsets(present: Tensor, k: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``k`` random non-empty subsets of each row's present modalities.

    Returns masks (k, B, M) and validity (k, B): a row with nothing present has no subset.
    """
    masks = []
    for _ in range(k):
        bits = present * (_rand(tuple(present.shape), generator, present.device) < 0.5).float()
        empty = bits.sum(dim=1, keepdim=True) == 0
        masks.append(torch.where(empty, _pick_one(present, generator), bits))
    stacked = torch.stack(masks)  # (k, B, M)
    return stacked, (stacked.sum(dim=2) > 0).float()


def all_subsets(present: Tensor, active: tuple[bool, ...]) -> tuple[Tensor, Tensor]:
    """Every non-empty subset of the active modalities; valid for a row iff it is within present.

    Returns masks (S, B, M) and validity (S, B), S = 2**n_active - 1.
    """
    cols = [i for i, a in enumerate(active) if a]
    rows = []
    for bits in range(1, 2 ** len(cols)):
        row = [0.0] * len(active)
        for j, col in enumerate(cols):
            if bits >> j & 1:
                row[col] = 1.0
        rows.append(row)
    subsets = torch.tensor(rows, dtype=present.dtype, device=present.device)  # (S, M)
    masks = subsets[:, None, :].expand(-1, present.shape[0], -1)  # (S, B, M)
    inside = ((masks * (1.0 - present)).sum(dim=2) == 0).float()  # S subset of present
    return masks * present, inside


def _nats_per_unit(cfg) -> float:
    """Loss unit: the summed Gaussian log-likelihood (nats) is divided by this, so the loss is
    O(1) per modality (a mean squared error) and gradient clipping acts on sensible norms."""
    return cfg.recon_scale


def _recon_terms(
    model: MultimodalModel,
    inputs: Mapping[str, Tensor],
    recon: Mapping[str, Tensor],
    present: Tensor,
    n_terms: int,
) -> Tensor:
    """Weighted reconstruction error per term, row and modality: (T, B, M), 0 where absent."""
    cfg = model.config
    cols = []
    for i, spec in enumerate(model.modalities):
        x = inputs[spec.name].float()  # (B, *shape)
        r = recon[spec.name].float().reshape(n_terms, *x.shape)  # (T, B, *shape)
        sq = (r - x.unsqueeze(0)).pow(2).flatten(2)  # (T, B, N)
        # per-element mean (rescaled, counts as recon_scale elements) or plain sum, in loss units
        err = sq.mean(dim=2) if cfg.likelihood_rescaling else sq.sum(dim=2) / _nats_per_unit(cfg)
        cols.append(err * cfg.recon_weight(spec) * present[:, i])
    return torch.stack(cols, dim=2)  # (T, B, M)


def _masked_inputs(
    model: MultimodalModel, inputs: Mapping[str, Tensor], mask: Tensor
) -> tuple[dict[str, Tensor], Tensor]:
    """Present mask (data and model) and inputs with absent modalities zeroed."""
    model.check_inputs(inputs, mask)
    present = (model.effective_mask(mask) > 0).float()  # (B, M)
    clean = {}
    for i, name in enumerate(model.modalities.names):
        x = inputs[name].float()
        keep = present[:, i].reshape(-1, *([1] * (x.dim() - 1))) > 0
        clean[name] = torch.where(keep, x, torch.zeros_like(x))
    return clean, present


def elbo_loss(
    model: MultimodalModel,
    inputs: Mapping[str, Tensor],
    mask: Tensor,
    *,
    step: int,
    generator: torch.Generator,
) -> LossOutput:
    """Subset beta-ELBO of a multimodal VAE (see the module docstring)."""
    cfg = model.config
    inputs, present = _masked_inputs(model, inputs, mask)
    b, m = present.shape
    full = modality_dropout(present, cfg.modality_dropout, generator)  # (B, M)
    n_active = sum(model.active)
    if cfg.subsets_k > 0 and 2**n_active - 1 <= cfg.subsets_k:
        sub_masks, sub_valid = all_subsets(present, model.active)
    elif cfg.subsets_k > 0:
        sub_masks, sub_valid = random_subsets(present, cfg.subsets_k, generator)
    else:
        sub_masks, sub_valid = present.new_zeros((0, b, m)), present.new_zeros((0, b))
    masks = torch.cat([full[None], sub_masks])  # (T, B, M): term 0 = full set
    n_terms = masks.shape[0]

    expert_mu, expert_logvar = model.experts(inputs)  # (B, M, D) each, computed once
    rep = (n_terms, 1, 1)
    z_mu, z_logvar = poe(
        expert_mu.repeat(rep), expert_logvar.repeat(rep), masks.reshape(n_terms * b, m)
    )  # (T*B, D)
    eps = torch.randn(tuple(z_mu.shape), generator=generator, device=generator.device).to(
        z_mu.device
    )
    recon = model.decode(reparameterize(z_mu, z_logvar, eps))  # one decoder pass for all terms

    rec = _recon_terms(model, inputs, recon, present, n_terms)  # (T, B, M)
    kl = kl_to_prior(z_mu, z_logvar).reshape(n_terms, b)  # (T, B)
    # term weights per row: 1 for the full set, 1 / (valid subsets) for each valid subset
    n_valid = sub_valid.sum(dim=0)  # (B,)
    weights = torch.cat([torch.ones_like(n_valid)[None], sub_valid / n_valid.clamp(min=1.0)])
    beta_t = kl_weight(cfg.beta, step, cfg.kl_warmup_steps)

    recon_per_mod = (rec * weights[:, :, None]).sum(dim=0).mean(dim=0)  # (M,)
    kl_term = (kl * weights).sum(dim=0).mean()
    total = recon_per_mod.sum() + beta_t * kl_term / _nats_per_unit(cfg)
    parts = {f"recon_{n}": recon_per_mod[i].detach() for i, n in enumerate(model.modalities.names)}
    parts["kl"] = kl_term.detach()
    parts["kl_weight"] = torch.tensor(beta_t)
    parts["total"] = total.detach()
    return LossOutput(total, parts)


def autoencoder_loss(
    model: MultimodalModel,
    inputs: Mapping[str, Tensor],
    mask: Tensor,
    *,
    step: int,
    generator: torch.Generator,
) -> LossOutput:
    """Reconstruction-only loss of the concat-ae baseline (modality dropout on the input side)."""
    del step  # no schedule: same signature as elbo_loss
    inputs, present = _masked_inputs(model, inputs, mask)
    seen = modality_dropout(present, model.config.modality_dropout, generator)
    z, _, _, _ = model.encode(inputs, seen)
    rec = _recon_terms(model, inputs, model.decode(z), present, 1)[0]  # (B, M)
    recon_per_mod = rec.mean(dim=0)  # (M,)
    total = recon_per_mod.sum()
    parts = {f"recon_{n}": recon_per_mod[i].detach() for i, n in enumerate(model.modalities.names)}
    parts["kl"] = torch.zeros(())
    parts["kl_weight"] = torch.zeros(())
    parts["total"] = total.detach()
    return LossOutput(total, parts)


LossFn = Callable[..., LossOutput]
LOSSES: dict[str, LossFn] = {
    "mvae": elbo_loss,
    "unimodal": elbo_loss,
    "concat-ae": autoencoder_loss,
}


def training_loss(
    model: MultimodalModel,
    inputs: Mapping[str, Tensor],
    mask: Tensor,
    *,
    step: int,
    generator: torch.Generator,
) -> LossOutput:
    """The training loss of ``model`` (dispatch on ``model.config.kind``) for one batch.

    Args:
        model: a model from :func:`edgevae.model.vae.build_model`.
        inputs: normalised tensors per modality, (B, *shape) each.
        mask: (B, M) float, 1 = present in the data.
        step: global optimisation step (KL warm-up).
        generator: source of all randomness (dropout, subsets, eps); on any device.

    Returns:
        :class:`LossOutput` with the differentiable ``total`` and detached ``parts``.

    Raises:
        ShapeError: inputs or mask that do not match the model's modalities.
    """
    return LOSSES[model.config.kind](model, inputs, mask, step=step, generator=generator)


__all__ = [
    "LOSSES",
    "LossOutput",
    "all_subsets",
    "autoencoder_loss",
    "elbo_loss",
    "kl_weight",
    "modality_dropout",
    "random_subsets",
    "training_loss",
]
