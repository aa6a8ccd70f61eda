"""The motion modality: a noisy tracker reading each tracked object's position and velocity.

Layout (per reading, ``6 * max_objects`` columns): slot ``k`` (objects ordered by size, slot 0 the
largest) occupies columns ``6k .. 6k+5`` = ``x, y, z, vx, vy, vz`` in box units and units/s.
Slots without an object (videos with fewer objects) are exactly 0. Objects that are not tracked
(an intruder) do not appear. Readings are taken at ``motion_rate`` Hz, each in the middle of its
sampling interval.
"""

from __future__ import annotations

import numpy as np

from edgevae.data.synth.config import MOTION_FIELDS, SynthConfig
from edgevae.data.synth.scene import Scene, Trajectory

POSITION_NOISE = 0.004  # box units
VELOCITY_NOISE = 0.02  # box units / s


def reading_substeps(config: SynthConfig, n_readings: int) -> np.ndarray:
    """Physics substep index sampled by each motion reading."""
    per = config.sim_rate // config.motion_rate
    return np.arange(n_readings) * per + per // 2


def read_motion(
    scene: Scene, traj: Trajectory, config: SynthConfig, rng: np.random.Generator, n_readings: int
) -> np.ndarray:
    """Tracker readings over the video: (n_readings, 6 * max_objects) float32."""
    steps = reading_substeps(config, n_readings)
    out = np.zeros((n_readings, len(MOTION_FIELDS) * config.max_objects), np.float64)
    noise = np.array([POSITION_NOISE] * 3 + [VELOCITY_NOISE] * 3)
    for k, obj in enumerate(scene.objects):
        if not obj.tracked or obj.slot is None:
            continue
        state = np.concatenate([traj.pos[k, steps], traj.vel[k, steps]], axis=1)  # (n, 6)
        cols = slice(6 * obj.slot, 6 * obj.slot + 6)
        out[:, cols] = state + rng.normal(0.0, 1.0, state.shape) * noise
    return out.astype(np.float32)
