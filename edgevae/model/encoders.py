"""Encoders: one trunk per modality kind, shared by a share group, with a head per member.

Kinds and trunks (inputs are the *normalised* tensors, batch first):

* ``video`` (B, T*C, H, W): 2D conv stack, stride 2 per stage, frames (x colours) as channels.
* ``spectrogram`` (B, 1, n_mels, frames): the same 2D conv stack.
* ``series`` (B, steps, dims): 1D conv stack over steps, the dims as channels.
* ``vector`` (B, dim): MLP.
* small ``series`` / ``spectrogram`` (at most ``config.dense_max_elements`` values): flattened,
  then an MLP like a vector (``ModelConfig.is_dense``): they learn much faster than through a
  narrow conv stack and cost few MACs.

Stages halve the resolution until the smallest side is <= 4 (so a 64x64 camera takes 4 stages,
a 16-step series 2); the flattened features then go through a per-member linear head to the expert
``(mu_m, logvar_m)`` of the shared latent.

**Share groups** (cameras): the conv trunk is shared and runs once on all views stacked along the
batch axis; each view keeps its own linear head (a per-view adapter), so the views stay
distinguishable and each camera's own geometry maps to the shared latent with its own weights.

Expert log-variances are soft-bounded, ``8 * tanh(raw / 8)``, inside the contract clamp range
[-8, 8], so the clamp in the fusion never cuts off gradients.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from edgevae.modalities import ModalityKind, ModalitySpec
from edgevae.model.config import ModelConfig
from edgevae.model.fusion import LOGVAR_MAX
from edgevae.model.layers import ConvStage, down_sizes, stage_channels


@dataclass(frozen=True)
class TrunkLayout:
    """Geometry of a conv trunk, mirrored by the decoder.

    ``dim`` is 1 or 2 conv dims (0 for a dense MLP: vectors, small series/spectrograms),
    ``in_channels`` / ``in_size`` the input, ``sizes`` the spatial size after each stage and
    ``channels`` each stage's channels.
    """

    dim: int
    in_channels: int
    in_size: tuple[int, ...]
    sizes: tuple[tuple[int, ...], ...]
    channels: tuple[int, ...]

    @property
    def features(self) -> int:
        """Flattened feature size at the trunk's output."""
        return self.channels[-1] * math.prod(self.sizes[-1]) if self.dim else self.channels[-1]


def trunk_layout(spec: ModalitySpec, config: ModelConfig) -> TrunkLayout:
    """The stage geometry of ``spec``'s encoder trunk under ``config``."""
    kind = spec.kind
    if config.is_dense(spec):  # flattened -> MLP
        return TrunkLayout(0, math.prod(spec.shape), (), (), (config.mlp_hidden,))
    if kind is ModalityKind.series:
        steps, dims = spec.shape
        dim, in_channels, in_size = 1, dims, (steps,)
    else:  # video / spectrogram: (C, H, W)
        dim, in_channels, in_size = 2, spec.shape[0], tuple(spec.shape[1:])
    sizes = down_sizes(in_size)
    channels = stage_channels(config.width, config.max_width, len(sizes))
    return TrunkLayout(dim, in_channels, in_size, tuple(sizes), tuple(channels))


def _to_channels_first(spec: ModalitySpec, x: Tensor) -> Tensor:
    """Series (B, steps, dims) -> (B, dims, steps); other kinds unchanged."""
    return x.transpose(1, 2) if spec.kind is ModalityKind.series else x


class Trunk(nn.Module):
    """Feature extractor of one modality kind: (N, *shape) -> (N, F)."""

    def __init__(self, spec: ModalitySpec, config: ModelConfig):
        super().__init__()
        self.spec = spec
        self.layout = layout = trunk_layout(spec, config)
        if layout.dim == 0:  # dense modality: MLP over the flattened values
            hidden = config.mlp_hidden
            layers: list[nn.Module] = [nn.Linear(layout.in_channels, hidden), nn.ReLU()]
            for _ in range(config.blocks_per_stage):
                layers += [nn.Linear(hidden, hidden), nn.ReLU()]
            self.body = nn.Sequential(*layers)
        else:
            stages = []
            c_prev = layout.in_channels
            for c in layout.channels:
                stages.append(
                    ConvStage(layout.dim, c_prev, c, 2, config.blocks_per_stage, config.norm)
                )
                c_prev = c
            self.body = nn.Sequential(*stages)

    def forward(self, x: Tensor) -> Tensor:
        if self.layout.dim == 0:
            return self.body(x.flatten(1))  # (N, *shape) -> (N, prod(shape)) -> (N, F)
        return self.body(_to_channels_first(self.spec, x)).flatten(1)  # (N, F)


class ExpertHead(nn.Module):
    """Linear features -> expert (mu, logvar), logvar soft-bounded to (-8, 8)."""

    def __init__(self, features: int, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.linear = nn.Linear(features, 2 * latent_dim)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        out = self.linear(h)  # (B, 2D)
        mu, raw = out[:, : self.latent_dim], out[:, self.latent_dim :]
        return mu, LOGVAR_MAX * torch.tanh(raw / LOGVAR_MAX)


class GroupEncoder(nn.Module):
    """Encoder of one share group (or a single modality): shared trunk, one head per member.

    Args:
        specs: the members (identical kind and shape), in spec order.
        config: model config.
        heads: build the expert heads (False: features only, for the concat-ae baseline).
    """

    def __init__(self, specs: Sequence[ModalitySpec], config: ModelConfig, heads: bool = True):
        super().__init__()
        self.names = tuple(s.name for s in specs)
        self.trunk = Trunk(specs[0], config)
        self.features = self.trunk.layout.features
        self.heads = (
            nn.ModuleList(ExpertHead(self.features, config.latent_dim) for _ in specs)
            if heads
            else None
        )

    def trunk_features(self, xs: Sequence[Tensor]) -> list[Tensor]:
        """Per-member features: V tensors (B, *shape) -> V tensors (B, F)."""
        if len(xs) == 1:
            return [self.trunk(xs[0])]
        h = self.trunk(torch.cat(list(xs), dim=0))  # views stacked on the batch axis: (V*B, F)
        return list(h.reshape(len(xs), -1, self.features).unbind(0))  # V x (B, F)

    def forward(self, xs: Sequence[Tensor]) -> list[tuple[Tensor, Tensor]]:
        """Experts per member: V tensors (B, *shape) -> V pairs (mu (B, D), logvar (B, D))."""
        if self.heads is None:
            raise RuntimeError("this encoder was built without expert heads (features only)")
        return [head(h) for head, h in zip(self.heads, self.trunk_features(xs), strict=True)]
