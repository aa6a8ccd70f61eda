"""``synthesize``: write the synthetic benchmark as an edgevae dataset, deterministically.

Each video is an independent unit of work with its own random stream (derived from the seed and
the video id), so the output does not depend on how many worker processes render it or in which
order they finish: results are written strictly in video order (train, then val, then test).
Workers are ``spawn``-started processes; at most ``2 * workers`` finished videos wait in memory.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from edgevae.data.format import DatasetWriter
from edgevae.data.synth import audio, cameras, motion
from edgevae.data.synth.anomalies import (
    DESYNC_TAIL_FRAMES,
    INJECTORS,
    Segment,
    frame_labels,
    plan_segments,
)
from edgevae.data.synth.config import (
    ANOMALY_TYPES,
    GENERATOR,
    GENERATOR_VERSION,
    SUBSTEPS_PER_FRAME,
    SynthConfig,
)
from edgevae.data.synth.scene import Scene, Trajectory, random_scene, simulate
from edgevae.errors import ConfigError, EdgeVAEError
from edgevae.modalities import ModalitySet, ModalitySpec

ProgressFn = Callable[[int, int], None]


def synth_modalities(config: SynthConfig) -> ModalitySet:
    """The dataset's modality specs: ``cam0..camN-1`` (video, share group ``cams``), ``audio``
    (spectrogram) and ``motion`` (series), in that (mask) order."""
    t, s = config.clip_frames, config.image_size
    specs = [
        ModalitySpec(name, "video", (t, s, s), dtype="uint8", share="cams")
        for name in config.camera_names()
    ]
    specs.append(ModalitySpec("audio", "spectrogram", (1, config.n_mels, config.mel_frames)))
    specs.append(ModalitySpec("motion", "series", (config.motion_steps, config.motion_dims)))
    return ModalitySet(specs)


@dataclass
class VideoTask:
    """One continuous simulation to render."""

    split: str
    video_id: int
    segments: list[Segment] = field(default_factory=list)


@dataclass
class VideoBuild:
    """Working state of one video, shared with the anomaly injectors.

    ``frames`` (C, F, H, W) uint8, ``wave`` ((F + tail) * samples_per_frame,) float32 and
    ``motion`` (F * readings_per_frame, D) float32 exist after rendering.
    """

    config: SynthConfig
    rng: np.random.Generator
    scene: Scene
    cameras: list[cameras.Camera]
    n_frames: int
    tail_frames: int
    traj: Trajectory | None = None
    frames: np.ndarray | None = None
    wave: np.ndarray | None = None
    motion: np.ndarray | None = None


@dataclass
class VideoResult:
    """A rendered video, cut into clips."""

    split: str
    video_id: int
    arrays: dict[str, np.ndarray]
    frame_labels: np.ndarray  # (clips, clip_frames) uint8
    segments: list[dict[str, Any]]


def render_video(config: SynthConfig, cams: list[cameras.Camera], task: VideoTask) -> VideoResult:
    """Simulate, render and cut one video (pure function of ``config`` and ``task``)."""
    rng = np.random.default_rng([config.seed, 1_000, task.video_id])
    kinds = {s.kind for s in task.segments}
    top = config.max_objects - 1 if "intruder" in kinds else config.max_objects
    n_objects = int(rng.integers(min(config.min_objects, top), top + 1))
    scene = random_scene(rng, config, n_objects)
    n_frames = config.frames_per_video
    tail = config.segment_frames[1] + DESYNC_TAIL_FRAMES if "av_desync" in kinds else 0
    video = VideoBuild(config, rng, scene, cams, n_frames, tail)
    for seg in task.segments:
        INJECTORS[seg.kind].prepare(video, seg)

    video.traj = traj = simulate(
        scene, (n_frames + tail) * SUBSTEPS_PER_FRAME, 1.0 / config.sim_rate, config.gravity
    )
    frame_steps = np.arange(n_frames) * SUBSTEPS_PER_FRAME + SUBSTEPS_PER_FRAME // 2
    radii = np.array([o.radius for o in scene.objects])
    bright = np.array([o.brightness for o in scene.objects])
    visible = np.stack([o.visible_mask(n_frames) for o in scene.objects])  # (K, F)
    positions = traj.pos[:, frame_steps]  # (K, F, 3)
    video.frames = np.stack(
        [
            cameras.render(c, radii, bright, positions, visible, scene.illumination, rng)
            for c in cams
        ]
    )
    video.wave = audio.render_waveform(scene, traj, config, rng)
    readings = n_frames * config.motion_rate // config.fps
    video.motion = motion.read_motion(scene, traj, config, rng, readings)
    for seg in task.segments:
        INJECTORS[seg.kind].apply(video, seg)

    n_clips = config.clips_per_video
    t, s = config.clip_frames, config.image_size
    arrays = {c.name: video.frames[i].reshape(n_clips, t, s, s) for i, c in enumerate(cams)}
    mel = audio.log_mel(video.wave[: n_frames * config.samples_per_frame], config)
    # (clips * mel_frames, n_mels) -> (clips, 1, n_mels, mel_frames)
    arrays["audio"] = np.ascontiguousarray(
        mel.reshape(n_clips, config.mel_frames, config.n_mels).transpose(0, 2, 1)[:, None]
    )
    arrays["motion"] = video.motion.reshape(n_clips, config.motion_steps, config.motion_dims)
    labels = frame_labels(task.segments, n_frames).reshape(n_clips, t)
    segs = [{"video_id": task.video_id, **seg.to_dict()} for seg in task.segments]
    return VideoResult(task.split, task.video_id, arrays, labels, segs)


def plan_videos(config: SynthConfig) -> list[VideoTask]:
    """All videos in write order; video ids are unique across splits (train, val, test)."""
    tasks: list[VideoTask] = []
    for split, count in (
        ("train", config.train_videos),
        ("val", config.val_videos),
        ("test", config.test_videos),
    ):
        first = len(tasks)
        tasks.extend([VideoTask(split, first + i) for i in range(count)])
    test = [t for t in tasks if t.split == "test"]
    for task, segs in zip(test, plan_segments(config), strict=True):
        task.segments = segs
    return tasks


# -- worker processes ------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(config_dict: dict[str, Any]) -> None:
    config = SynthConfig.from_dict(config_dict)
    _WORKER["config"] = config
    _WORKER["cameras"] = cameras.make_cameras(config)


def _work(task: VideoTask) -> VideoResult:
    return render_video(_WORKER["config"], _WORKER["cameras"], task)


def _results(config: SynthConfig, tasks: list[VideoTask], workers: int) -> Iterator[VideoResult]:
    """Rendered videos in task order, in this process or in ``workers`` spawned processes."""
    if workers <= 1:
        cams = cameras.make_cameras(config)
        for task in tasks:
            yield render_video(config, cams, task)
        return
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=get_context("spawn"),
        initializer=_init_worker,
        initargs=(config.to_dict(),),
    ) as pool:
        pending: deque[Future[VideoResult]] = deque()
        todo = iter(tasks)
        try:
            for task in todo:
                pending.append(pool.submit(_work, task))
                if len(pending) >= 2 * workers:
                    break
            while pending:
                try:
                    result = pending.popleft().result()  # strictly in submission order
                except BrokenProcessPool:
                    raise EdgeVAEError(
                        "a synth worker process died (out of memory, or a script calling "
                        "synthesize(workers > 1) lacks the `if __name__ == '__main__':` guard that "
                        "spawned workers need); add the guard or use workers=1."
                    ) from None
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(pool.submit(_work, nxt))
                yield result
        finally:
            for fut in pending:
                fut.cancel()


def _resolve_workers(workers: int, n_videos: int) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"workers must be 0 (automatic) or a positive integer, got {workers!r}.")
    if workers == 0:
        workers = min(os.cpu_count() or 1, 8)
    return max(1, min(workers, n_videos))


def synthesize(
    out: str | os.PathLike[str],
    config: SynthConfig,
    *,
    overwrite: bool = False,
    workers: int = 1,
    progress: ProgressFn | None = None,
) -> Path:
    """Generate the synthetic multi-view audio-visual benchmark (DESIGN §5) into ``out``.

    Args:
        out: dataset directory to create.
        config: what to generate (see :class:`SynthConfig`, :func:`preset_config`).
        overwrite: replace a non-empty ``out``.
        workers: rendering processes (0 = one per CPU core, up to 8); never changes the output.
            Workers are spawned, so a script calling this with ``workers > 1`` needs the usual
            ``if __name__ == "__main__":`` guard.
        progress: called as ``progress(clips_done, clips_total)`` after each video.

    Returns:
        The dataset path. Same config -> byte-identical files (``index.json`` included).

    Raises:
        OutputExistsError: ``out`` is not empty and ``overwrite`` is false.
        ConfigError: a config the anomaly plan cannot satisfy, or a bad ``workers`` value.

    Example:
        >>> synthesize(tmp / "ds", preset_config("tiny", seed=1))  # doctest: +SKIP
    """
    tasks = plan_videos(config)  # validates the anomaly plan before anything is written
    workers = _resolve_workers(workers, len(tasks))
    meta: dict[str, Any] = {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "seed": config.seed,
        "preset": config.preset,
        "config": config.to_dict(),
        "cameras": [c.describe() for c in cameras.make_cameras(config)],
        "motion_channels": config.motion_channels(),
        "audio": {
            "sample_rate": config.sample_rate,
            "n_fft": 2 * config.hop,
            "hop": config.hop,
            "fmin_hz": audio.MEL_FMIN,
            "pitch_hz": f"{audio.F_LOW:g} * ({audio.F_HIGH:g} / {audio.F_LOW:g}) ** z",
            "value": f"ln(mel power + {audio.LOG_FLOOR:g})",
        },
    }
    total = config.total_videos * config.clips_per_video
    done = 0
    segments: list[dict[str, Any]] = []
    with DatasetWriter(
        out,
        synth_modalities(config),
        anomaly_types=ANOMALY_TYPES,
        label_frames=config.clip_frames,
        meta=meta,
        shard_clips=config.shard_clips,
        overwrite=overwrite,
    ) as writer:
        for result in _results(config, tasks, workers):
            n = len(result.frame_labels)
            writer.add(
                result.split,
                result.arrays,
                frame_labels=result.frame_labels,
                video_id=result.video_id,
                clip_index=np.arange(n, dtype=np.int32),
            )
            segments.extend(result.segments)
            done += n
            if progress is not None:
                progress(done, total)
        writer.meta["segments"] = segments
    return Path(out)
