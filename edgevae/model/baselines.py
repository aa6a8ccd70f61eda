"""Baselines trained and evaluated through the same API, to show what multimodality buys.

* ``concat-ae``: an early-fusion deterministic autoencoder. The same encoder trunks as the VAE
  produce features per modality; missing modalities' features are zeroed by the mask, the mask
  itself is appended, and an MLP maps the concatenation to one latent ``z``. No experts:
  ``expert_mu``/``expert_logvar`` are zeros and ``z_logvar`` is 0. Trained on reconstruction only.
* ``unimodal``: the multimodal VAE restricted to the camera (``video``) modalities; the others
  are inactive (zero experts, mask column forced to 0, zero reconstructions).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from edgevae.errors import ConfigError
from edgevae.modalities import ModalityKind, ModalitySet
from edgevae.model.config import ModelConfig
from edgevae.model.encoders import GroupEncoder
from edgevae.model.vae import MultimodalModel, MultimodalVAE, register_model


@register_model("concat-ae")
class ConcatAE(MultimodalModel):
    """Early-fusion autoencoder over all modalities (deterministic, single latent).

    Args:
        modalities: the modality specs (mask column order).
        config: model config (``kind == "concat-ae"``).
    """

    variational = False

    def __init__(self, modalities: ModalitySet, config: ModelConfig):
        super().__init__(modalities, config)
        self.encoders = nn.ModuleDict(
            {key: GroupEncoder(specs, config, heads=False) for key, specs in self.groups.items()}
        )
        n_features = sum(
            enc.features * len(enc.names)
            for enc in self.encoders.values()  # type: ignore[union-attr]
        )
        # hidden width 2D: as many weights as the VAE's expert heads (F x 2D per modality)
        self.fusion = nn.Sequential(
            nn.Linear(n_features + len(modalities), 2 * config.latent_dim),
            nn.ReLU(),
            nn.Linear(2 * config.latent_dim, config.latent_dim),
        )

    def encode(
        self, inputs: Mapping[str, Tensor], mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """z from the concatenated masked features; zeros for z_logvar and the expert tensors."""
        self.check_inputs(inputs, mask)
        mask = self.effective_mask(mask)
        column = {n: i for i, n in enumerate(self.modalities.names)}
        feats = []
        for key, specs in self.groups.items():
            hs = self.encoders[key].trunk_features([inputs[s.name] for s in specs])
            feats += [h * mask[:, column[s.name], None] for s, h in zip(specs, hs, strict=True)]
        z = self.fusion(torch.cat([*feats, mask], dim=1))  # (B, D)
        m = len(self.modalities)
        expert_mu = torch.zeros_like(z).unsqueeze(1).repeat(1, m, 1)  # (B, M, D)
        expert_logvar = torch.zeros_like(z).unsqueeze(1).repeat(1, m, 1)
        return z, torch.zeros_like(z), expert_mu, expert_logvar


@register_model("unimodal")
def build_unimodal(modalities: ModalitySet, config: ModelConfig) -> MultimodalVAE:
    """The VAE over the camera (video) modalities only.

    Raises:
        ConfigError: the modalities include no video modality.
    """
    active = tuple(s.kind is ModalityKind.video for s in modalities)
    if not any(active):
        raise ConfigError(
            "the unimodal baseline uses the camera (video) modalities, and these data have none; "
            "use --model mvae or concat-ae."
        )
    return MultimodalVAE(modalities, config, active=active)
