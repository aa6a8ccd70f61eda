"""Decoders: mirror the encoder trunks with upsample + conv (never ConvTranspose).

For a conv trunk with stage sizes s_1 .. s_L (s_L smallest) the decoder maps z with a linear layer
to a (d_L, s_L) feature map, then per stage upsamples x2 (nearest by default) and applies a 3-wide
conv + ReLU, ending at the input size with a plain conv to the modality's channels. Decoder
channels are ``decoder_width * 2**i`` (capped at ``max_width``), narrowest at full resolution,
where the convs cost the most MACs. Dense modalities (vectors, small series and spectrograms; see
``ModelConfig.is_dense``) get an MLP whose last linear layer emits every value, reshaped.

Outputs are in the normalised input space: ``video`` through a sigmoid (inputs are in [0, 1]),
the standardised kinds linear. Share groups share the conv stack; each member has its own input
linear layer (the per-view adapter), and all views run through the stack stacked on the batch axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from edgevae.modalities import ModalityKind, ModalitySpec
from edgevae.model.config import ModelConfig
from edgevae.model.encoders import trunk_layout
from edgevae.model.layers import UpStage, stage_channels


class UpTrunk(nn.Module):
    """Shared upsampling stack of one kind: (N, d_L * prod(s_L)) -> (N, *shape)."""

    def __init__(self, spec: ModalitySpec, config: ModelConfig):
        super().__init__()
        self.spec = spec
        layout = trunk_layout(spec, config)
        self.dim = layout.dim
        if layout.dim == 0:  # vector or small dense modality: MLP mirror
            hidden = config.mlp_hidden
            self.in_features = hidden
            layers: list[nn.Module] = []
            for _ in range(config.blocks_per_stage):
                layers += [nn.Linear(hidden, hidden), nn.ReLU()]
            layers.append(nn.Linear(hidden, math.prod(spec.shape)))
            self.body = nn.Sequential(*layers)
            return
        n = len(layout.sizes)
        widths = stage_channels(config.decoder_width, config.max_width, n)  # d_1 .. d_L
        self.start = (widths[-1], *layout.sizes[-1])  # (d_L, *s_L)
        self.in_features = math.prod(self.start)
        stages = []
        targets = [*reversed(layout.sizes[:-1]), layout.in_size]  # s_{L-1} .. s_1, input size
        sources = list(reversed(layout.sizes))  # s_L .. s_1
        out_widths = [*reversed(widths[:-1]), layout.in_channels]  # d_{L-1} .. d_1, channels
        c_prev = widths[-1]
        for i, (src, dst, c) in enumerate(zip(sources, targets, out_widths, strict=True)):
            last = i == n - 1
            stages.append(
                UpStage(
                    layout.dim,
                    c_prev,
                    c,
                    src,
                    dst,
                    config.blocks_per_stage,
                    config.norm,
                    config.upsample,
                    last=last,
                )
            )
            c_prev = c
        self.body = nn.Sequential(*stages)

    def forward(self, h: Tensor) -> Tensor:
        if self.dim == 0:
            return self.body(h).reshape(-1, *self.spec.shape)  # (N, prod(shape)) -> (N, *shape)
        x = self.body(h.reshape(-1, *self.start))  # (N, C, *spatial)
        if self.spec.kind is ModalityKind.series:
            x = x.transpose(1, 2)  # (N, dims, steps) -> (N, steps, dims)
        if self.spec.kind is ModalityKind.video:
            x = torch.sigmoid(x)  # video inputs are in [0, 1]
        return x


class GroupDecoder(nn.Module):
    """Decoder of one share group (or a single modality): per-member input layer, shared stack.

    Args:
        specs: the members (identical kind and shape), in spec order.
        config: model config.
    """

    def __init__(self, specs: Sequence[ModalitySpec], config: ModelConfig):
        super().__init__()
        self.names = tuple(s.name for s in specs)
        self.shape = tuple(specs[0].shape)
        self.trunk = UpTrunk(specs[0], config)
        self.inputs = nn.ModuleList(
            nn.Sequential(nn.Linear(config.latent_dim, self.trunk.in_features), nn.ReLU())
            for _ in specs
        )

    def forward(self, z: Tensor) -> list[Tensor]:
        """z (B, D) -> one reconstruction (B, *shape) per member."""
        hs = [layer(z) for layer in self.inputs]  # V x (B, F)
        if len(hs) == 1:
            return [self.trunk(hs[0])]
        x = self.trunk(torch.cat(hs, dim=0))  # views stacked on the batch axis: (V*B, *shape)
        return list(x.reshape(len(hs), -1, *self.shape).unbind(0))
