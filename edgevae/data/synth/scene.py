"""The 3D scene: 1-3 spheres in the unit box, constant velocity, wall bounces, optional gravity.

Coordinates are box units: ``x, y`` horizontal, ``z`` up, the box is ``[0, 1]^3``. A sphere of
radius ``r`` keeps its centre in ``[r, 1 - r]`` and bounces elastically off the walls. The physics
runs at ``SynthConfig.sim_rate`` (80 Hz by default); every other signal (camera frames, motion
readings, the audio's pitch and loudness) is sampled from the same trajectory, which is what ties
the modalities together.

Tracked objects fill motion slots in order of size (slot 0 = largest), so a model can tell from
the cameras which slot an object belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgevae.data.synth.config import SynthConfig

# Radius range of each motion slot (slot 0 is the largest): object identity is visible.
SLOT_RADII: tuple[tuple[float, float], ...] = (
    (0.11, 0.13),
    (0.085, 0.10),
    (0.065, 0.078),
    (0.05, 0.06),
)
SPEED_RANGE = (0.25, 0.6)  # box units / s
BRIGHTNESS_RANGE = (0.6, 1.0)


@dataclass
class SceneObject:
    """One sphere.

    Args:
        radius, brightness: size (box units) and albedo in [0, 1].
        position, velocity: initial state (3,), box units and units/s.
        timbre: weight of the second harmonic of its tone.
        audible / tracked: whether it makes sound / appears in the motion modality.
        slot: motion slot (None when not tracked).
        visible: (first, end) video frames in which cameras see it; None = always.
    """

    radius: float
    brightness: float
    position: np.ndarray
    velocity: np.ndarray
    timbre: float = 0.3
    audible: bool = True
    tracked: bool = True
    slot: int | None = None
    visible: tuple[int, int] | None = None

    def visible_mask(self, n_frames: int, first_frame: int = 0) -> np.ndarray:
        """(n_frames,) bool: is the object visible in frames ``first_frame + i``."""
        frames = np.arange(first_frame, first_frame + n_frames)
        if self.visible is None:
            return np.ones(n_frames, bool)
        return (frames >= self.visible[0]) & (frames < self.visible[1])


@dataclass
class Scene:
    """All objects of one video plus per-video conditions."""

    objects: list[SceneObject]
    audio_noise: float  # background noise std of the waveform
    illumination: float  # global light level multiplying every camera's image
    events: list[PhysicsEvent] = field(default_factory=list)


@dataclass(frozen=True)
class PhysicsEvent:
    """Something an anomaly does to the physics at the start of ``substep``.

    kinds: ``teleport`` (move object to the first of ``candidates`` (n, 3) at least 0.35 away
    from where it is and 0.2 in height), ``scale_speed`` (multiply its velocity by ``factor``).
    """

    substep: int
    obj: int
    kind: str
    factor: float = 1.0
    candidates: np.ndarray | None = None


@dataclass
class Trajectory:
    """Sampled physics: state at the start of every substep.

    Attributes:
        pos, vel: (K, S, 3) float64 per object and substep.
        bounces: (n, 3) float64 rows ``(substep, object, normal speed)`` of wall hits.
    """

    pos: np.ndarray
    vel: np.ndarray
    bounces: np.ndarray


def random_object(rng: np.random.Generator, slot: int) -> SceneObject:
    """A sphere with the size range of ``slot``, random brightness, position and velocity."""
    lo, hi = SLOT_RADII[slot]
    radius = float(rng.uniform(lo, hi))
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction) + 1e-12
    return SceneObject(
        radius=radius,
        brightness=float(rng.uniform(*BRIGHTNESS_RANGE)),
        position=rng.uniform(radius, 1.0 - radius, size=3),
        velocity=direction * rng.uniform(*SPEED_RANGE),
        timbre=float(rng.uniform(0.1, 0.5)),
        slot=slot,
    )


def random_scene(rng: np.random.Generator, config: SynthConfig, n_objects: int) -> Scene:
    """A scene with ``n_objects`` tracked, audible objects in slots ``0..n_objects-1``."""
    objects = [random_object(rng, k) for k in range(n_objects)]
    return Scene(
        objects=objects,
        audio_noise=float(rng.uniform(0.006, 0.015)),
        illumination=float(rng.uniform(0.85, 1.15)),
    )


def simulate(scene: Scene, n_substeps: int, dt: float, gravity: float = 0.0) -> Trajectory:
    """Integrate the scene for ``n_substeps`` steps of ``dt`` seconds, applying ``scene.events``.

    Bounces reflect the position about the wall and flip that velocity component; each one is
    recorded with the speed that hit the wall (it makes a click in the audio).
    """
    k = len(scene.objects)
    pos = np.array([o.position for o in scene.objects], np.float64).reshape(k, 3)
    vel = np.array([o.velocity for o in scene.objects], np.float64).reshape(k, 3)
    radii = np.array([o.radius for o in scene.objects], np.float64).reshape(k, 1)
    lo, hi = radii, 1.0 - radii  # (K, 1) allowed centre range per object
    out_pos = np.empty((k, n_substeps, 3))
    out_vel = np.empty((k, n_substeps, 3))
    bounces: list[tuple[float, float, float]] = []
    by_step: dict[int, list[PhysicsEvent]] = {}
    for ev in scene.events:
        by_step.setdefault(ev.substep, []).append(ev)
    for s in range(n_substeps):
        for ev in by_step.get(s, ()):
            _apply_event(ev, pos, vel)
        out_pos[:, s] = pos
        out_vel[:, s] = vel
        if gravity:
            vel[:, 2] -= gravity * dt
        pos += vel * dt
        below, above = pos < lo, pos > hi
        if below.any() or above.any():
            hit = below | above
            pos[:] = np.where(below, 2 * lo - pos, np.where(above, 2 * hi - pos, pos))
            np.clip(pos, lo, hi, out=pos)  # a very fast object cannot tunnel through
            for obj, axis in zip(*np.nonzero(hit), strict=True):
                bounces.append((s + 1, obj, abs(vel[obj, axis])))
            vel[:] = np.where(hit, -vel, vel)
    return Trajectory(out_pos, out_vel, np.array(bounces, np.float64).reshape(-1, 3))


def _apply_event(ev: PhysicsEvent, pos: np.ndarray, vel: np.ndarray) -> None:
    if ev.kind == "scale_speed":
        vel[ev.obj] *= ev.factor
    elif ev.kind == "teleport" and ev.candidates is not None:
        jump = ev.candidates - pos[ev.obj]  # (n, 3)
        dist = np.linalg.norm(jump, axis=1)
        far = np.nonzero((dist >= 0.35) & (np.abs(jump[:, 2]) >= 0.2))[0]  # pitch jumps too
        pos[ev.obj] = ev.candidates[far[0] if far.size else int(np.argmax(dist))]
    else:
        raise ValueError(f"unknown physics event kind {ev.kind!r}")  # programming error
