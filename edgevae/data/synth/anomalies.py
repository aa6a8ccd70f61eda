"""The six anomaly types of the benchmark: segment planning, injectors and frame labels.

Test videos hold anomalous *segments* (``segment_frames`` consecutive video frames, crossing clip
boundaries freely); every frame of a segment is labelled with its type id (position in
``ANOMALY_TYPES``). Train and validation videos have none.

==============  ==========================================================================  =======
type            what happens during the segment                                              seen by
==============  ==========================================================================  =======
teleport        one object jumps to a random far position every 3-5 frames (height too)      all
speed           one object moves 2.8-3.6x faster (louder), then slows back down              all
intruder        an extra object is visible to the cameras but makes no sound, not tracked    across
av_desync       the audio is replaced by audio of the same scene >= 3 s later, at a moment   across
                when the objects were at clearly different heights (pitch)
camera_fault    one camera is frozen, black, or shows another scene (cycled in that order)  camera
sensor_fault    the tracker drifts away or has a noise burst (cycled)                        motion
==============  ==========================================================================  =======

"across" means each modality alone looks normal: only their disagreement shows the anomaly.

Each injector has two hooks, called in segment order: :meth:`Injector.prepare` changes the scene
before the physics runs (events, extra objects) and draws the segment's parameters;
:meth:`Injector.apply` changes the rendered signals. ``Segment.details`` (JSON) records what was
done and is stored in the dataset index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edgevae.data.synth.cameras import background_texture, render
from edgevae.data.synth.config import ANOMALY_TYPES, SUBSTEPS_PER_FRAME, SynthConfig
from edgevae.data.synth.scene import PhysicsEvent, random_object, random_scene, simulate
from edgevae.errors import ConfigError

if TYPE_CHECKING:
    from edgevae.data.synth.generate import VideoBuild

DESYNC_MIN_OFFSET_FRAMES = 30  # av_desync audio comes from at least 3 s later (at 10 fps)
DESYNC_TAIL_FRAMES = 60  # hidden normal continuation simulated after a video for av_desync
_MARGIN = 2  # frames kept normal at both ends of a test video
_GAP = 6  # minimum normal frames between two segments


@dataclass
class Segment:
    """An anomalous stretch ``[start, end)`` of video frames of one anomaly type.

    ``ordinal`` counts segments of the same type across the whole test split (used to cycle
    sub-modes); ``details`` is JSON stored in the index; ``state`` is private working data.
    """

    kind: str
    start: int
    end: int
    ordinal: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def frames(self) -> int:
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "start_frame": self.start, "end_frame": self.end, **self.details}


def plan_segments(config: SynthConfig) -> list[list[Segment]]:
    """Anomaly segments of every test video (index = position among the test videos).

    Every type gets the same number of segments, at least ``min_segments_per_type``, enough to
    make about ``anomaly_fraction`` of the test frames anomalous; types are shuffled over the
    videos, each video's segments are spread over equal slots of the video with normal gaps.

    Raises:
        ConfigError: the test videos are too short or too few to hold the segments.
    """
    rng = np.random.default_rng([config.seed, 9_000])
    kinds = ANOMALY_TYPES[1:]
    n_frames = config.frames_per_video
    lo, hi = config.segment_frames
    total = config.test_videos * n_frames
    per_type = max(
        config.min_segments_per_type,
        round(config.anomaly_fraction * total / ((lo + hi) / 2) / len(kinds)),
    )
    n_seg = per_type * len(kinds)
    order = [k for k in kinds for _ in range(per_type)]
    rng.shuffle(order)
    counts = [
        n_seg // config.test_videos + (v < n_seg % config.test_videos)
        for v in range(config.test_videos)
    ]
    slot = (n_frames - 2 * _MARGIN) // max(max(counts), 1)
    if slot < lo + _GAP:
        raise ConfigError(
            f"{config.test_videos} test videos of {n_frames} frames cannot hold {n_seg} anomaly "
            f"segments ({per_type} of each of the {len(kinds)} types, >= {lo} frames each); "
            "raise --clips-per-video or --videos."
        )
    plan: list[list[Segment]] = []
    seen: dict[str, int] = {}
    it = iter(order)
    for count in counts:
        segs = []
        for j in range(count):
            kind = next(it)
            length = int(rng.integers(lo, min(hi, slot - _GAP) + 1))
            start = _MARGIN + j * slot + _GAP // 2 + int(rng.integers(0, slot - _GAP - length + 1))
            segs.append(Segment(kind, start, start + length, ordinal=seen.get(kind, 0)))
            seen[kind] = seen.get(kind, 0) + 1
        plan.append(segs)
    return plan


def frame_labels(segments: list[Segment], n_frames: int) -> np.ndarray:
    """(n_frames,) uint8 type id per video frame (0 = normal)."""
    labels = np.zeros(n_frames, np.uint8)
    for seg in segments:
        labels[seg.start : seg.end] = ANOMALY_TYPES.index(seg.kind)
    return labels


class Injector:
    """Base class: an anomaly type's effect on a video; both hooks default to doing nothing."""

    name: ClassVar[str] = ""

    def prepare(self, video: VideoBuild, seg: Segment) -> None:
        """Change the scene before the physics runs and draw the segment's parameters."""

    def apply(self, video: VideoBuild, seg: Segment) -> None:
        """Change the rendered signals (``video.frames``, ``video.wave``, ``video.motion``)."""


def _tracked_object(video: VideoBuild) -> int:
    tracked = [i for i, o in enumerate(video.scene.objects) if o.tracked]
    return int(video.rng.choice(tracked))


class Teleport(Injector):
    name = "teleport"

    def prepare(self, video: VideoBuild, seg: Segment) -> None:
        obj = _tracked_object(video)
        r = video.scene.objects[obj].radius
        step = int(video.rng.integers(3, 6))
        jumps = list(range(seg.start, seg.end, step))
        for frame in jumps:
            candidates = video.rng.uniform(r, 1.0 - r, size=(16, 3))
            video.scene.events.append(
                PhysicsEvent(frame * SUBSTEPS_PER_FRAME, obj, "teleport", candidates=candidates)
            )
        seg.details = {"slot": video.scene.objects[obj].slot, "jump_frames": jumps}


class Speed(Injector):
    name = "speed"

    def prepare(self, video: VideoBuild, seg: Segment) -> None:
        obj = _tracked_object(video)
        factor = float(video.rng.uniform(2.8, 3.6))
        events = video.scene.events
        events.append(PhysicsEvent(seg.start * SUBSTEPS_PER_FRAME, obj, "scale_speed", factor))
        events.append(PhysicsEvent(seg.end * SUBSTEPS_PER_FRAME, obj, "scale_speed", 1 / factor))
        seg.details = {"slot": video.scene.objects[obj].slot, "factor": round(factor, 3)}


class Intruder(Injector):
    name = "intruder"

    def prepare(self, video: VideoBuild, seg: Segment) -> None:
        size_class = int(video.rng.integers(0, video.config.max_objects))
        obj = random_object(video.rng, size_class)
        obj.audible, obj.tracked, obj.slot = False, False, None
        obj.visible = (seg.start, seg.end)
        video.scene.objects.append(obj)
        seg.details = {"size_class": size_class}


class AvDesync(Injector):
    name = "av_desync"

    def apply(self, video: VideoBuild, seg: Segment) -> None:
        source = self._pick_source(video, seg)
        spf = video.config.samples_per_frame
        a, b = seg.start * spf, seg.end * spf
        src = video.wave[source * spf :][: b - a].copy()
        fade = min(80, (b - a) // 4)  # 10 ms cross-fades: no splice click
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        src[:fade] = ramp * src[:fade] + (1 - ramp) * video.wave[a : a + fade]
        src[-fade:] = ramp[::-1] * src[-fade:] + ramp * video.wave[b - fade : b]
        video.wave[a:b] = src

    @staticmethod
    def _pick_source(video: VideoBuild, seg: Segment) -> int:
        """A source moment in the hidden tail after the video whose pitch differs clearly.

        Draws 16 candidate start frames and keeps the first whose audible objects are on average
        at least 0.25 box units away in height (pitch), else the most different one.
        """
        first = max(video.n_frames, seg.start + DESYNC_MIN_OFFSET_FRAMES)
        last = video.n_frames + video.tail_frames - seg.frames
        candidates = video.rng.integers(first, last + 1, size=16)
        audible = [i for i, o in enumerate(video.scene.objects) if o.audible]
        z = video.traj.pos[audible, SUBSTEPS_PER_FRAME // 2 :: SUBSTEPS_PER_FRAME, 2]  # (A, F)
        now = z[:, seg.start : seg.end]
        diff = np.array([np.abs(z[:, c : c + seg.frames] - now).mean() for c in candidates])
        good = np.nonzero(diff >= 0.25)[0]
        pick = int(good[0]) if good.size else int(np.argmax(diff))
        seg.details = {
            "source_frame": int(candidates[pick]),
            "height_mismatch": round(float(diff[pick]), 3),
        }
        return int(candidates[pick])


class CameraFault(Injector):
    name = "camera_fault"
    modes: ClassVar[tuple[str, ...]] = ("frozen", "black", "swap")

    def prepare(self, video: VideoBuild, seg: Segment) -> None:
        cam = int(video.rng.integers(0, len(video.cameras)))
        mode = self.modes[seg.ordinal % len(self.modes)]
        seg.details = {"camera": video.cameras[cam].name, "mode": mode}
        seg.state["camera"] = cam
        if mode == "swap":  # another scene: other objects, other background
            n = int(video.rng.integers(video.config.min_objects, video.config.max_objects + 1))
            other = random_scene(video.rng, video.config, n)
            traj = simulate(
                other,
                seg.frames * SUBSTEPS_PER_FRAME,
                1 / video.config.sim_rate,
                video.config.gravity,
            )
            seg.state["other"] = (other, traj)
            seg.state["background"] = background_texture(video.rng, video.config.image_size)

    def apply(self, video: VideoBuild, seg: Segment) -> None:
        cam = seg.state["camera"]
        mode = seg.details["mode"]
        frames = video.frames[cam]  # (F, H, W) uint8, edited in place
        if mode == "frozen":
            frames[seg.start : seg.end] = frames[seg.start]
        elif mode == "black":
            noise = video.rng.normal(3.0, 2.0, size=frames[seg.start : seg.end].shape)
            frames[seg.start : seg.end] = np.clip(np.rint(noise), 0, 255).astype(np.uint8)
        else:
            other, traj = seg.state["other"]
            idx = np.arange(seg.frames) * SUBSTEPS_PER_FRAME + SUBSTEPS_PER_FRAME // 2
            frames[seg.start : seg.end] = render(
                video.cameras[cam],
                np.array([o.radius for o in other.objects]),
                np.array([o.brightness for o in other.objects]),
                traj.pos[:, idx],
                np.ones((len(other.objects), seg.frames), bool),
                other.illumination,
                video.rng,
                background=seg.state["background"],
            )


class SensorFault(Injector):
    name = "sensor_fault"
    modes: ClassVar[tuple[str, ...]] = ("drift", "noise")

    def prepare(self, video: VideoBuild, seg: Segment) -> None:
        mode = self.modes[seg.ordinal % len(self.modes)]
        direction = video.rng.normal(size=3)
        direction /= np.linalg.norm(direction) + 1e-12
        if mode == "drift":
            rate = float(video.rng.uniform(0.5, 0.8))  # box units / s
            seg.state["drift"] = direction * rate
            seg.details = {"mode": mode, "rate": round(rate, 3)}
        else:
            level = float(video.rng.uniform(0.06, 0.1))  # position noise std, box units
            seg.state["level"] = level
            seg.details = {"mode": mode, "std": round(level, 3)}

    def apply(self, video: VideoBuild, seg: Segment) -> None:
        cfg = video.config
        per_frame = cfg.motion_rate // cfg.fps
        rows = slice(seg.start * per_frame, seg.end * per_frame)
        block = video.motion[rows]  # (n, 6 * max_objects) view, edited in place
        n = len(block)
        for obj in video.scene.objects:
            if not obj.tracked or obj.slot is None:
                continue
            pos = slice(6 * obj.slot, 6 * obj.slot + 3)
            vel = slice(6 * obj.slot + 3, 6 * obj.slot + 6)
            if seg.details["mode"] == "drift":
                t = (np.arange(n) + 1)[:, None] / cfg.motion_rate  # seconds into the fault
                block[:, pos] += (t * seg.state["drift"]).astype(np.float32)
            else:
                level = seg.state["level"]
                block[:, pos] += video.rng.normal(0.0, level, (n, 3)).astype(np.float32)
                block[:, vel] += video.rng.normal(0.0, 6 * level, (n, 3)).astype(np.float32)


INJECTORS: dict[str, Injector] = {
    cls.name: cls() for cls in (Teleport, Speed, Intruder, AvDesync, CameraFault, SensorFault)
}
