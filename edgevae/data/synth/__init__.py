"""The built-in synthetic multi-view audio-visual benchmark (DESIGN §5).

Moving spheres in a 3D box seen by several cameras, heard by a microphone and followed by a noisy
tracker, cut into clips; test videos hold labelled segments of six anomaly types, several of which
only show up across modalities. Pure NumPy; deterministic from a seed.

Example:
    >>> from edgevae.data.synth import preset_config, synthesize
    >>> synthesize("data/tiny", preset_config("tiny", seed=0))  # doctest: +SKIP
"""

from edgevae.data.synth.config import (
    ANOMALY_TYPES,
    GENERATOR,
    GENERATOR_VERSION,
    PRESETS,
    SynthConfig,
    preset_config,
)
from edgevae.data.synth.generate import synth_modalities, synthesize

__all__ = [
    "ANOMALY_TYPES",
    "GENERATOR",
    "GENERATOR_VERSION",
    "PRESETS",
    "SynthConfig",
    "preset_config",
    "synth_modalities",
    "synthesize",
]
