"""Model configuration: presets, knobs and the default synthetic modality shapes (one place each).

A :class:`ModelConfig` fixes everything that shapes the network and its objective. Presets set the
width/depth knobs; any field can be overridden by keyword::

    >>> cfg = ModelConfig.from_preset("nano", kind="mvae", latent_dim=16)
    >>> ModelConfig.from_dict(cfg.to_dict()) == cfg
    True

Architecture choices that are fixed (not knobs), and why:

* **ReLU** activations: Conv+ReLU fuses into one INT8 kernel in ONNX Runtime (QLinearConv with the
  ReLU folded into the output range) and in TensorRT; SiLU becomes Sigmoid+Mul and LeakyReLU is
  not in ORT's QDQ registry, so both leave FP32 islands between INT8 convolutions.
* **No normalisation layers** by default (``norm="none"``): BatchNorm statistics would be skewed by
  masked-out (zero) modalities and modality dropout, and GroupNorm exports as Reshape +
  InstanceNormalization at opset 17, which ORT does not quantize and FP16 converters keep in FP32.
  The trunks are shallow (3-5 layers) and train fine without it under Adam. ``norm="group"`` is
  available for deeper presets.
* **Nearest upsample + 3x3 conv** decoders (``upsample="nearest"``), never ConvTranspose (DESIGN §4:
  no INT8 ConvTranspose in ORT CPU; no checkerboard artefacts); nearest is exact under INT8.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edgevae._util.choices import check_choice
from edgevae.errors import ConfigError
from edgevae.modalities import ModalityKind, ModalitySet, ModalitySpec

MODEL_KINDS = ("mvae", "concat-ae", "unimodal")
NORMS = ("none", "group")
UPSAMPLES = ("nearest", "bilinear")

# Width/depth knobs per preset; everything else keeps the dataclass defaults. Sizes of the mvae
# on the default synthetic modalities (`edgevae model summary --preset P`):
PRESETS: dict[str, dict[str, Any]] = {
    # 0.81 M parameters, 31 M MACs per sample: trains in minutes on a 2-core CPU. No subset terms:
    # each costs a decoder pass, and at a fixed CPU budget the extra epochs won (k=2 ran 2.8x
    # slower per epoch for a lower AUROC; benchmarks/baselines/results/ablation.md).
    "nano": {
        "subsets_k": 0,
        "width": 16,
        "max_width": 64,
        "decoder_width": 8,
        "blocks_per_stage": 1,
        "mlp_hidden": 128,
    },
    # 2.5 M parameters, 108 M MACs per sample.
    "small": {
        "subsets_k": 2,
        "width": 32,
        "max_width": 256,
        "decoder_width": 16,
        "blocks_per_stage": 1,
        "mlp_hidden": 256,
    },
    # 10.8 M parameters, 1.04 G MACs per sample: two convs per stage, for GPUs.
    "base": {
        "subsets_k": 2,
        "width": 64,
        "max_width": 512,
        "decoder_width": 32,
        "blocks_per_stage": 2,
        "mlp_hidden": 512,
    },
}


def default_modalities(
    cameras: int = 3, frames: int = 8, size: int = 64, motion_dims: int = 18
) -> ModalitySet:
    """The modality shapes of the built-in synthetic benchmark (used when no dataset is given).

    Args:
        cameras: number of camera views, ``cam0..``, sharing weights in group ``"cams"``.
        frames: frames per clip stacked as video channels.
        size: camera height and width in pixels.
        motion_dims: feature dimension of the ``motion`` series.

    Returns:
        cameras x video (frames, size, size) uint8, ``audio`` spectrogram (1, 32, 32) and
        ``motion`` series (16, motion_dims).
    """
    if cameras < 1:
        raise ConfigError(f"cameras must be >= 1, got {cameras}.")
    cams = [
        ModalitySpec(f"cam{i}", "video", (frames, size, size), dtype="uint8", share="cams")
        for i in range(cameras)
    ]
    return ModalitySet(
        [
            *cams,
            ModalitySpec("audio", "spectrogram", (1, 32, 32)),
            ModalitySpec("motion", "series", (16, motion_dims)),
        ]
    )


@dataclass(frozen=True)
class ModelConfig:
    """Network and objective settings (frozen; validated on construction).

    Args:
        kind: ``mvae`` (multimodal VAE), ``concat-ae`` (early-fusion autoencoder baseline) or
            ``unimodal`` (the VAE over camera modalities only).
        preset: the preset the width/depth knobs came from (``nano``, ``small``, ``base``).
        latent_dim: size D of the shared latent z.
        width: channels of the first encoder stage; doubles per stage up to ``max_width``.
        max_width: channel cap of the encoder stages.
        decoder_width: channels of the last (full-resolution) decoder stage; doubles per stage
            towards the latent, up to ``max_width``. Full-resolution convs dominate the MACs.
        blocks_per_stage: convs per resolution stage (1 = just the strided / upsampling conv).
        mlp_hidden: hidden width of MLPs (vector modalities, concat-ae fusion).
        norm: ``none`` or ``group`` (GroupNorm after every hidden conv).
        upsample: decoder upsampling mode, ``nearest`` or ``bilinear``.
        beta: weight of the KL term once warmed up.
        subsets_k: random non-empty modality subsets per batch row in the objective; when
            ``2**M - 1 <= subsets_k`` all subsets are enumerated instead.
        kl_warmup_steps: steps over which the KL weight rises linearly from 0 to ``beta``.
        modality_dropout: probability of hiding each present modality from the encoder in the
            full-set term (never all of them).
        likelihood_rescaling: divide each modality's squared error by its element count, so
            every modality weighs the same whatever its size (scaled by ``recon_scale``);
            off: plain summed squared error.
        recon_scale: elements each modality counts as when rescaling (the Gaussian likelihood's
            effective sample size; larger = sharper reconstructions, weaker KL pressure).
        recon_weights: extra per-modality likelihood weights, keyed by modality name or kind
            (a name wins over a kind); default 1.
        dense_max_elements: ``series`` and ``spectrogram`` modalities with at most this many
            elements get MLP encoders and decoders (width ``mlp_hidden``) instead of conv stacks;
            0 = conv stacks everywhere. Small modalities (the 16x18 motion series, the 32x32
            log-mel) learned several times faster dense at about the same MACs
            (benchmarks/baselines/results/ablation.md); cameras stay convolutional.
    """

    kind: str = "mvae"
    preset: str = "nano"
    latent_dim: int = 32
    width: int = 16
    max_width: int = 64
    decoder_width: int = 8
    blocks_per_stage: int = 1
    mlp_hidden: int = 128
    norm: str = "none"
    upsample: str = "nearest"
    beta: float = 1.0
    subsets_k: int = 0
    kl_warmup_steps: int = 500
    modality_dropout: float = 0.15
    likelihood_rescaling: bool = True
    recon_scale: float = 1024.0
    recon_weights: tuple[tuple[str, float], ...] = field(default_factory=tuple)
    dense_max_elements: int = 2048

    def __post_init__(self) -> None:
        check_choice(self.kind, MODEL_KINDS, "model kind")
        check_choice(self.preset, list(PRESETS), "preset")
        check_choice(self.norm, NORMS, "norm")
        check_choice(self.upsample, UPSAMPLES, "upsample mode")
        ints = {
            "latent_dim": (1, 4096),
            "width": (1, 4096),
            "max_width": (1, 8192),
            "decoder_width": (1, 4096),
            "blocks_per_stage": (1, 8),
            "mlp_hidden": (1, 65536),
            "subsets_k": (0, 4096),
            "kl_warmup_steps": (0, 10**9),
            "dense_max_elements": (0, 10**9),
        }
        for name, (lo, hi) in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ConfigError(
                    f"model config '{name}' must be an integer in [{lo}, {hi}], got {value!r}."
                )
        if self.max_width < self.width:
            raise ConfigError(
                f"model config 'max_width' ({self.max_width}) must be >= 'width' ({self.width})."
            )
        for name in ("beta", "recon_scale", "modality_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"model config '{name}' must be a number, got {value!r}.")
            object.__setattr__(self, name, float(value))
        if self.beta < 0:
            raise ConfigError(f"model config 'beta' must be >= 0, got {self.beta}.")
        if self.recon_scale <= 0:
            raise ConfigError(f"model config 'recon_scale' must be > 0, got {self.recon_scale}.")
        if not 0.0 <= self.modality_dropout < 1.0:
            raise ConfigError(
                f"model config 'modality_dropout' must be in [0, 1), got {self.modality_dropout}."
            )
        if not isinstance(self.likelihood_rescaling, bool):
            raise ConfigError("model config 'likelihood_rescaling' must be true or false.")
        object.__setattr__(self, "recon_weights", _weights_tuple(self.recon_weights))

    # -- construction / serialisation ---------------------------------------------------------

    @classmethod
    def from_preset(cls, preset: str = "nano", kind: str = "mvae", **overrides: Any) -> ModelConfig:
        """Config of ``preset`` for model ``kind`` with field ``overrides``.

        Raises:
            ConfigError: unknown preset, kind or field (with a suggestion), or an invalid value.
        """
        check_choice(preset, list(PRESETS), "preset")
        fields = {f.name for f in dataclasses.fields(cls)}
        for key in overrides:
            check_choice(key, sorted(fields - {"preset", "kind"}), "model config field")
        return cls(kind=kind, preset=preset, **{**PRESETS[preset], **overrides})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; :meth:`from_dict` inverts it."""
        d = dataclasses.asdict(self)
        d["recon_weights"] = dict(self.recon_weights)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        """Build from :meth:`to_dict` output; missing fields take the preset's values.

        Raises:
            ConfigError: not a mapping, or unknown keys (typo protection), or invalid values.
        """
        if not isinstance(d, Mapping):
            raise ConfigError(f"a model config must be a JSON object, got {type(d).__name__}.")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ConfigError(
                f"unknown model config keys {unknown}; valid keys: {', '.join(sorted(fields))}."
            )
        rest = {k: v for k, v in d.items() if k not in ("preset", "kind")}
        # runs saved before the knob existed were conv everywhere: keep loading them as such
        rest.setdefault("dense_max_elements", 0)
        return cls.from_preset(d.get("preset", "nano"), d.get("kind", "mvae"), **rest)

    # -- derived --------------------------------------------------------------------------------

    def is_dense(self, spec: ModalitySpec) -> bool:
        """Whether ``spec`` gets an MLP encoder/decoder (vectors always; small series and
        spectrograms up to ``dense_max_elements``)."""
        if spec.kind is ModalityKind.vector:
            return True
        small = math.prod(spec.shape) <= self.dense_max_elements
        return small and spec.kind in (ModalityKind.series, ModalityKind.spectrogram)

    def recon_weight(self, spec: ModalitySpec) -> float:
        """Likelihood weight of one modality (its name's entry, else its kind's, else 1)."""
        weights = dict(self.recon_weights)
        kind = spec.kind.value if isinstance(spec.kind, ModalityKind) else str(spec.kind)
        return float(weights.get(spec.name, weights.get(kind, 1.0)))


def _weights_tuple(value: Any) -> tuple[tuple[str, float], ...]:
    """Normalise ``recon_weights`` (a mapping or pairs) to sorted (key, float >= 0) pairs."""
    try:
        items = value.items() if isinstance(value, Mapping) else value
        pairs = sorted((str(k), float(v)) for k, v in items)
    except (TypeError, ValueError):
        raise ConfigError(
            f"model config 'recon_weights' must map modality names or kinds to numbers, "
            f"got {value!r}."
        ) from None
    bad = [k for k, v in pairs if not v >= 0]
    if bad:
        raise ConfigError(f"model config 'recon_weights': weights of {bad} must be >= 0.")
    return tuple(pairs)
