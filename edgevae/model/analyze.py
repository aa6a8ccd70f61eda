"""Export wrappers: the exact signatures of ``analyze.onnx``, ``encode.onnx`` and ``decode.onnx``.

DESIGN §6 (contract names). Inputs are positional, one per modality in spec order, then ``mask``::

    AnalyzeGraph(model, score_stats)(*modalities, mask)
        -> (z_mu, z_logvar, recon_<m> for m in spec order, score, score_parts)
    EncodeGraph(model)(*modalities, mask) -> (z_mu, z_logvar, expert_mu, expert_logvar)
    DecodeGraph(model)(z) -> (recon_<m> for m in spec order)

Each wrapper's ``input_names`` / ``output_names`` / ``dynamic_axes`` are the names to pass to
``torch.onnx.export``; the batch axis (0 of every input and output) is called ``batch``.
The score follows ``edgevae.model.scoring`` (the reference of the ``anomaly_score`` kernel) with
the model's effective mask, so inactive (baseline) modalities never count.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from edgevae.errors import ShapeError
from edgevae.model.scoring import ScoreStats, raw_parts, standardize
from edgevae.model.vae import MultimodalModel

BATCH_AXIS = "batch"


def _dynamic_axes(names: list[str]) -> dict[str, dict[int, str]]:
    return {n: {0: BATCH_AXIS} for n in names}


class _Graph(nn.Module):
    """Shared plumbing: positional modality inputs -> the dict the model takes."""

    def __init__(self, model: MultimodalModel):
        super().__init__()
        self.model = model
        self.names = tuple(model.modalities.names)

    @property
    def input_names(self) -> list[str]:
        return [*self.names, "mask"]

    @property
    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return _dynamic_axes([*self.input_names, *self.output_names])

    @property
    def output_names(self) -> list[str]:
        raise NotImplementedError

    def _inputs(self, tensors: tuple[Tensor, ...]) -> dict[str, Tensor]:
        return dict(zip(self.names, tensors, strict=True))

    def example_inputs(self, batch: int = 2) -> tuple[Tensor, ...]:
        """Zeros of the right shapes (all modalities present), e.g. for tracing."""
        device = next(self.model.parameters()).device
        xs = [torch.zeros((batch, *s.shape), device=device) for s in self.model.modalities]
        return (*xs, torch.ones((batch, len(self.names)), device=device))


class AnalyzeGraph(_Graph):
    """Encode, fuse, decode ``z = z_mu`` and score in one graph.

    Args:
        model: the trained model (put it in eval mode before export).
        score_stats: standardisation statistics (normal validation data); identity if None.
    """

    def __init__(self, model: MultimodalModel, score_stats: ScoreStats | None = None):
        super().__init__(model)
        stats = score_stats or ScoreStats.identity(self.names)
        expected = ScoreStats.identity(self.names).names
        if list(stats.names) != expected:
            raise ShapeError(
                f"score statistics are for parts {stats.names}, the model has {expected}; "
                "refit them on this model's validation data."
            )
        mean, std, weight = stats.tensors()
        self.register_buffer("score_mean", mean)
        self.register_buffer("score_std", std)
        self.register_buffer("score_weight", weight)
        self.score_combine = stats.combine  # a Python constant: sum or max ops in the graph

    @property
    def output_names(self) -> list[str]:
        return ["z_mu", "z_logvar", *(f"recon_{n}" for n in self.names), "score", "score_parts"]

    def forward(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        *xs, mask = tensors
        inputs = self._inputs(tuple(xs))
        out = self.model(inputs, mask)
        recons = [out.recon[n] for n in self.names]
        eff = self.model.effective_mask(mask)  # inactive modalities never scored
        raw = raw_parts(
            list(inputs.values()),
            recons,
            eff,
            out.z_mu,
            out.z_logvar,
            out.expert_mu,
            out.expert_logvar,
        )  # (B, M + 2)
        score, parts = standardize(
            raw, eff, self.score_mean, self.score_std, self.score_weight, self.score_combine
        )
        return (out.z_mu, out.z_logvar, *recons, score, parts)


class EncodeGraph(_Graph):
    """Encoders + fusion: (*modalities, mask) -> z_mu, z_logvar, expert_mu, expert_logvar."""

    @property
    def output_names(self) -> list[str]:
        return ["z_mu", "z_logvar", "expert_mu", "expert_logvar"]

    def forward(self, *tensors: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        *xs, mask = tensors
        return self.model.encode(self._inputs(tuple(xs)), mask)


class DecodeGraph(_Graph):
    """Decoders: z (B, D) -> recon_<m> (B, *shape) per modality, in spec order."""

    @property
    def input_names(self) -> list[str]:
        return ["z"]

    @property
    def output_names(self) -> list[str]:
        return [f"recon_{n}" for n in self.names]

    def example_inputs(self, batch: int = 2) -> tuple[Tensor, ...]:
        device = next(self.model.parameters()).device
        return (torch.zeros((batch, self.model.latent_dim), device=device),)

    def forward(self, z: Tensor) -> tuple[Tensor, ...]:
        recon = self.model.decode(z)
        return tuple(recon[n] for n in self.names)
