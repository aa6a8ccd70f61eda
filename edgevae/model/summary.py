"""Parameters and MACs per sample, per module, of a built model.

MACs (multiply-accumulates) are counted with forward hooks on every Conv1d/Conv2d/Linear (and
ConvTranspose, should one appear) during one batch-1 forward pass: ``output elements x
(input channels / groups x kernel size)`` for convolutions and ``output elements x in_features``
for linear layers. Activations, resizes, the PoE fusion and the sigmoid are not MACs and are not
counted (they are a fraction of a percent here). Shared weights (a camera share group) are counted
once in the parameters and once per view in the MACs, because every view runs them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from edgevae.modalities import ModalitySet
from edgevae.model.config import ModelConfig, default_modalities
from edgevae.model.vae import MultimodalModel, build_model

_COUNTED = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.Linear)


@dataclass(frozen=True)
class ModuleCost:
    """One row: a top-level module (an encoder, a decoder or the fusion MLP)."""

    name: str  # module path, e.g. "encoders.cams"
    role: str  # "encoder" | "decoder" | "fusion"
    modalities: tuple[str, ...]
    params: int
    macs: int  # per sample


@dataclass(frozen=True)
class ModelSummary:
    """Parameters and per-sample MACs of a model, per module and in total."""

    kind: str
    preset: str
    latent_dim: int
    rows: tuple[ModuleCost, ...]
    params: int
    macs: int
    encode_macs: int  # encoders + fusion (what encode.onnx costs)
    decode_macs: int  # decoders (what decode.onnx costs)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _layer_macs(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """MACs of one counted layer call with input ``x`` and output ``y`` (whole call).

    The pass runs with batch 1, so a whole call is one sample's cost (or V samples' for a share
    group, whose views run stacked on the batch axis: exactly the per-sample cost we want).
    """
    if isinstance(module, nn.Linear):
        return y.numel() * module.in_features
    kernel = math.prod(module.kernel_size)  # type: ignore[arg-type]
    if isinstance(module, nn.ConvTranspose1d | nn.ConvTranspose2d):
        # every input element scatters into (out_channels / groups) x kernel outputs
        return x.numel() * (module.out_channels // module.groups) * kernel
    return y.numel() * (module.in_channels // module.groups) * kernel  # type: ignore[operator]


@torch.no_grad()
def summarize(model: MultimodalModel) -> ModelSummary:
    """Count parameters and per-sample MACs of every top-level module of ``model``.

    Args:
        model: a model from :func:`edgevae.model.vae.build_model`.

    Returns:
        A :class:`ModelSummary`; rows in module order (encoders, fusion, decoders).
    """
    macs: dict[str, int] = {}

    def top_name(path: str) -> str:
        parts = path.split(".")
        return ".".join(parts[:2]) if parts[0] in ("encoders", "decoders") else parts[0]

    def hook(path: str):
        def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            name = top_name(path)
            macs[name] = macs.get(name, 0) + _layer_macs(module, inputs[0], output)

        return record

    handles = [
        m.register_forward_hook(hook(path))
        for path, m in model.named_modules()
        if isinstance(m, _COUNTED)
    ]
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters())
        inputs = {s.name: torch.zeros((1, *s.shape), device=param.device) for s in model.modalities}
        model(inputs, torch.ones((1, len(model.modalities)), device=param.device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    rows = []
    for path, child in model.named_children():
        if isinstance(child, nn.ModuleDict):
            for key, sub in child.items():
                role = "encoder" if path == "encoders" else "decoder"
                names = tuple(s.name for s in model.groups[key])
                rows.append(_row(f"{path}.{key}", role, names, sub, macs))
        else:
            rows.append(_row(path, "fusion", tuple(model.modalities.names), child, macs))
    rows.sort(key=lambda r: ("encoder", "fusion", "decoder").index(r.role))
    total_params = sum(p.numel() for p in model.parameters())
    return ModelSummary(
        kind=model.config.kind,
        preset=model.config.preset,
        latent_dim=model.config.latent_dim,
        rows=tuple(rows),
        params=total_params,
        macs=sum(r.macs for r in rows),
        encode_macs=sum(r.macs for r in rows if r.role != "decoder"),
        decode_macs=sum(r.macs for r in rows if r.role == "decoder"),
        extra={"modalities": list(model.modalities.names), "active": list(model.active)},
    )


def _row(
    name: str, role: str, names: tuple[str, ...], module: nn.Module, macs: dict[str, int]
) -> ModuleCost:
    params = sum(p.numel() for p in module.parameters())
    return ModuleCost(name, role, names, params, macs.get(name, 0))


def summarize_preset(
    preset: str, kind: str = "mvae", modalities: ModalitySet | None = None, **overrides: Any
) -> ModelSummary:
    """Build the model of ``preset``/``kind`` on ``modalities`` (default: the synthetic benchmark's
    shapes, :func:`edgevae.model.config.default_modalities`) and summarise it.

    Raises:
        ConfigError: unknown preset, kind or override (with a suggestion).
    """
    config = ModelConfig.from_preset(preset, kind, **overrides)
    return summarize(build_model(modalities or default_modalities(), config))
