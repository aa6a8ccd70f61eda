"""The multimodal VAE (DESIGN §4) and the model registry.

``build_model(modalities, config)`` dispatches on ``config.kind``: ``mvae`` (here), ``concat-ae``
and ``unimodal`` (``model/baselines.py``). Every model has the same API::

    model.encode(inputs, mask) -> (z_mu (B, D), z_logvar (B, D), expert_mu (B, M, D),
                                   expert_logvar (B, M, D))
    model.decode(z (B, D)) -> {name: (B, *shape)}        # normalised input space
    model(inputs, mask) -> AnalyzeOutput                 # deterministic: z = z_mu
    model.active -> tuple[bool, ...]                     # which modalities the model uses

``inputs`` maps every modality name to its normalised tensor (a missing one is still fed, as
zeros); ``mask`` (B, M) float, 1 = present, in spec order. The forward pass has no random op, no
optional input and no branch on tensor values, so it exports to ONNX as one static graph.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import torch
from torch import Tensor, nn

from edgevae._util.choices import check_choice
from edgevae.errors import ConfigError, ShapeError
from edgevae.modalities import ModalitySet, ModalitySpec
from edgevae.model.config import MODEL_KINDS, ModelConfig
from edgevae.model.decoders import GroupDecoder
from edgevae.model.encoders import GroupEncoder
from edgevae.model.fusion import poe


class AnalyzeOutput(NamedTuple):
    """Everything one deterministic forward pass produces."""

    z_mu: Tensor  # (B, D)
    z_logvar: Tensor  # (B, D)
    expert_mu: Tensor  # (B, M, D)
    expert_logvar: Tensor  # (B, M, D)
    recon: dict[str, Tensor]  # name -> (B, *shape), normalised input space


def weight_groups(
    modalities: ModalitySet, active: tuple[bool, ...]
) -> dict[str, list[ModalitySpec]]:
    """Active modalities grouped by shared weights: module key -> members in spec order.

    The key is the share group's name, or the modality's name when it shares with nobody; a share
    group whose name collides with an unrelated modality gets the prefix ``group_``.
    """
    names = set(modalities.names)
    groups: dict[str, list[ModalitySpec]] = {}
    for spec, used in zip(modalities, active, strict=True):
        if not used:
            continue
        key = spec.name if spec.share is None else spec.share
        if spec.share is not None and spec.share in names and spec.share != spec.name:
            key = f"group_{spec.share}"
        groups.setdefault(key, []).append(spec)
    return groups


class MultimodalModel(nn.Module):
    """Shared parts of every model kind: specs, active modalities, decoders, decode, forward.

    Subclasses build ``self.encoders`` and implement :meth:`encode`.
    """

    variational: bool = True

    def __init__(
        self, modalities: ModalitySet, config: ModelConfig, active: tuple[bool, ...] | None = None
    ):
        super().__init__()
        self.modalities = modalities
        self.config = config
        self.active = tuple(active) if active is not None else (True,) * len(modalities)
        if len(self.active) != len(modalities) or not any(self.active):
            raise ConfigError("a model needs at least one active modality.")
        self.groups = weight_groups(modalities, self.active)
        # (M,) 1 for used modalities: forces inactive mask columns to 0 inside encode
        self.register_buffer(
            "active_mask", torch.tensor(self.active, dtype=torch.float32), persistent=False
        )
        self.decoders = nn.ModuleDict(
            {key: GroupDecoder(specs, config) for key, specs in self.groups.items()}
        )

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def effective_mask(self, mask: Tensor) -> Tensor:
        """(B, M) data mask -> mask actually used: inactive modalities forced to 0, float32."""
        return mask.float() * self.active_mask

    def check_inputs(self, inputs: Mapping[str, Tensor], mask: Tensor) -> None:
        """Raise ShapeError for missing modalities or wrong shapes (skipped while tracing)."""
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return
        missing = [n for n in self.modalities.names if n not in inputs]
        if missing:
            raise ShapeError(
                f"inputs lack modalities {missing}; feed every modality (zeros where missing) "
                "and mark absent ones with 0 in the mask."
            )
        b = mask.shape[0] if mask.ndim else 0
        if tuple(mask.shape) != (b, len(self.modalities)):
            raise ShapeError(
                f"mask has shape {tuple(mask.shape)}; expected (batch, {len(self.modalities)}) "
                f"with columns {list(self.modalities.names)}."
            )
        for spec in self.modalities:
            got = tuple(inputs[spec.name].shape)
            if got != (b, *spec.shape):
                raise ShapeError(
                    f"modality '{spec.name}' has shape {got}; expected {(b, *spec.shape)} "
                    "(batch first, same batch as the mask)."
                )

    def encode(
        self, inputs: Mapping[str, Tensor], mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        raise NotImplementedError

    def decode(self, z: Tensor) -> dict[str, Tensor]:
        """z (B, D) -> {name: (B, *shape)} for every modality; zeros for inactive ones."""
        out: dict[str, Tensor] = {}
        for key, specs in self.groups.items():
            for spec, x in zip(specs, self.decoders[key](z), strict=True):
                out[spec.name] = x
        for spec, used in zip(self.modalities, self.active, strict=True):
            if not used:  # stable output names: zeros of the right shape
                out[spec.name] = z.new_zeros((z.shape[0], *spec.shape))
        return {n: out[n] for n in self.modalities.names}

    def forward(self, inputs: Mapping[str, Tensor], mask: Tensor) -> AnalyzeOutput:
        """Deterministic analysis pass: encode, fuse, decode z = z_mu."""
        z_mu, z_logvar, expert_mu, expert_logvar = self.encode(inputs, mask)
        return AnalyzeOutput(z_mu, z_logvar, expert_mu, expert_logvar, self.decode(z_mu))


class MultimodalVAE(MultimodalModel):
    """Per-modality experts fused by the masked product of experts with a N(0, I) prior.

    Args:
        modalities: the modality specs (mask column order).
        config: model config.
        active: which modalities the model uses (default all); inactive ones get zero experts and
            a 0 mask column, so they never reach the posterior.
    """

    def __init__(
        self, modalities: ModalitySet, config: ModelConfig, active: tuple[bool, ...] | None = None
    ):
        super().__init__(modalities, config, active)
        self.encoders = nn.ModuleDict(
            {key: GroupEncoder(specs, config) for key, specs in self.groups.items()}
        )

    def experts(self, inputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Expert parameters of every modality: (B, M, D) mu and logvar (zeros if inactive)."""
        found: dict[str, tuple[Tensor, Tensor]] = {}
        for key, specs in self.groups.items():
            outs = self.encoders[key]([inputs[s.name] for s in specs])
            found.update({s.name: o for s, o in zip(specs, outs, strict=True)})
        for name in self.modalities.names:
            if name not in found:  # inactive: zeros sized from its own input, so the input
                x = inputs[name]  # stays in the exported graph (stable input names)
                zeros = x.new_zeros((x.shape[0], self.latent_dim))
                found[name] = (zeros, zeros)
        mus = [found[n][0] for n in self.modalities.names]
        logvars = [found[n][1] for n in self.modalities.names]
        return torch.stack(mus, dim=1), torch.stack(logvars, dim=1)  # (B, M, D) each

    def encode(
        self, inputs: Mapping[str, Tensor], mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Experts and their masked PoE: returns z_mu, z_logvar, expert_mu, expert_logvar."""
        self.check_inputs(inputs, mask)
        expert_mu, expert_logvar = self.experts(inputs)
        z_mu, z_logvar = poe(expert_mu, expert_logvar, self.effective_mask(mask))
        return z_mu, z_logvar, expert_mu, expert_logvar


ModelBuilder = Callable[[ModalitySet, ModelConfig], MultimodalModel]
MODEL_BUILDERS: dict[str, ModelBuilder] = {"mvae": MultimodalVAE}


def register_model(kind: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator adding a builder for ``config.kind == kind`` to the registry."""

    def add(builder: ModelBuilder) -> ModelBuilder:
        MODEL_BUILDERS[kind] = builder
        return builder

    return add


def build_model(modalities: ModalitySet, config: ModelConfig) -> MultimodalModel:
    """Build the model of ``config.kind`` for ``modalities``.

    Raises:
        ConfigError: unknown kind, or modalities the kind cannot use (unimodal without cameras).
    """
    from edgevae.model import baselines  # noqa: F401  (registers concat-ae and unimodal)

    check_choice(config.kind, MODEL_KINDS, "model kind")
    return MODEL_BUILDERS[config.kind](modalities, config)
