"""The synthetic benchmark: config, determinism, anomaly plan and injectors, physics/audio/camera
relations, and the loader over a synthesized dataset."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from edgevae.data import open_dataset
from edgevae.data.synth import ANOMALY_TYPES, SynthConfig, preset_config, synthesize
from edgevae.data.synth import anomalies as anomalies_mod
from edgevae.data.synth.anomalies import INJECTORS, plan_segments
from edgevae.data.synth.audio import log_mel, mel_bin, pitch_hz, render_waveform
from edgevae.data.synth.cameras import make_cameras, render
from edgevae.data.synth.config import SUBSTEPS_PER_FRAME
from edgevae.data.synth.generate import VideoBuild
from edgevae.data.synth.motion import read_motion
from edgevae.data.synth.scene import Scene, SceneObject, random_scene, simulate
from edgevae.errors import ConfigError

# Small but complete: 3 train, 1 val, 3 test videos of 16 clips; every anomaly type 3 times.
SMALL = dict(
    train_videos=3,
    val_videos=1,
    test_videos=3,
    clips_per_video=16,
    segment_frames=(6, 10),
    min_segments_per_type=3,
    shard_clips=20,
)


def small_config(**changes) -> SynthConfig:
    return preset_config("tiny", **{**SMALL, **changes})


@pytest.fixture(scope="session")
def synth_ds(tmp_path_factory) -> Path:
    return synthesize(tmp_path_factory.mktemp("synth") / "ds", small_config(seed=3))


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _videos(reader, split: str) -> dict[int, dict[str, np.ndarray]]:
    """Per video: every field concatenated over its clips in clip order (frames on axis 0)."""
    sp = reader.split(split)
    data = sp.read(np.arange(len(sp)))
    out = {}
    for vid in np.unique(data["video_id"]):
        idx = np.nonzero(data["video_id"] == vid)[0]
        idx = idx[np.argsort(data["clip_index"][idx])]
        out[int(vid)] = {
            "cams": [np.concatenate(data[f"cam{c}"][idx]) for c in range(3)],  # (F, H, W)
            "motion": np.concatenate(data["motion"][idx]),  # (F * 2, D)
            "labels": np.concatenate(data["frame_labels"][idx]),  # (F,)
            "clip_index": data["clip_index"][idx],
        }
    return out


# -- config --------------------------------------------------------------------------------------
def test_unknown_preset_names_the_closest():
    with pytest.raises(ConfigError, match=r"unknown preset 'tiyn'\. Did you mean 'tiny'"):
        preset_config("tiyn")


def test_unknown_field_names_the_closest():
    with pytest.raises(ConfigError, match="Did you mean 'cameras'"):
        preset_config("tiny", camras=2)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cameras": 9}, r"cameras must be an integer in \[1, 8\], got 9"),
        ({"cameras": 0}, r"cameras must be an integer in \[1, 8\]"),
        ({"clips_per_video": 0}, "clips_per_video must be an integer"),
        ({"seed": -1}, "seed must be an integer"),
        ({"gravity": "x"}, r"gravity must be a number in \[0, 20\]"),
        ({"anomaly_fraction": 0.7}, r"anomaly_fraction must be a number in \(0, 0.5\)"),
        ({"segment_frames": (5,)}, "segment_frames must be"),
        ({"min_objects": 3, "max_objects": 2}, "min_objects .* exceeds max_objects"),
        ({"motion_rate": 30}, "motion_rate 30 Hz must divide"),
        ({"mel_frames": 33}, "mel_frames 33 must divide"),
        ({"fps": 20, "motion_rate": 32}, "not a whole number of motion steps at 32 Hz"),
        ({"sample_rate": 8100}, "sample_rate 8100 must be a multiple of the physics rate 80 Hz"),
        ({"preset": ""}, "preset must be a non-empty name"),
        ({"cameras": True}, r"cameras must be an integer in \[1, 8\], got True"),
        ({"image_size": 8}, r"image_size must be an integer in \[16, 512\]"),
    ],
)
def test_invalid_config_values(changes, message):
    with pytest.raises(ConfigError, match=message):
        preset_config("tiny", **changes)


def test_config_round_trip_and_presets():
    cfg = preset_config("default", seed=5, cameras=4)
    assert SynthConfig.from_dict(cfg.to_dict()) == cfg
    tiny = preset_config("tiny")
    assert (tiny.train_videos * tiny.clips_per_video, tiny.val_videos * tiny.clips_per_video) == (
        256,
        64,
    )
    assert tiny.test_videos * tiny.clips_per_video == 192
    d = preset_config("default")
    sizes = [n * d.clips_per_video for n in (d.train_videos, d.val_videos, d.test_videos)]
    assert sizes == [2400, 400, 1200]
    with pytest.raises(ConfigError, match="Did you mean 'seed'"):
        SynthConfig.from_dict({**cfg.to_dict(), "sed": 1})
    with pytest.raises(ConfigError, match="a SynthConfig must be a JSON object, got list"):
        SynthConfig.from_dict([1, 2])
    again = json.loads(json.dumps(cfg.to_dict()))  # through JSON text: tuples come back as lists
    assert SynthConfig.from_dict(again) == cfg and again["segment_frames"] == [10, 24]


def test_with_total_videos_keeps_every_split():
    cfg = preset_config("tiny").with_total_videos(10)
    assert cfg.total_videos == 10
    assert min(cfg.train_videos, cfg.val_videos, cfg.test_videos) >= 1
    assert preset_config("default").with_total_videos(3).total_videos == 3
    with pytest.raises(ConfigError, match="--videos must be at least 3"):
        preset_config("tiny").with_total_videos(2)


# -- anomaly plan --------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["tiny", "default"])
def test_presets_plan_every_type_in_several_segments(preset):
    cfg = preset_config(preset)
    plan = plan_segments(cfg)
    assert len(plan) == cfg.test_videos
    kinds = [s.kind for segs in plan for s in segs]
    for kind in ANOMALY_TYPES[1:]:
        assert kinds.count(kind) >= 3, kind
    frames = sum(s.frames for segs in plan for s in segs)
    assert 0.10 <= frames / (cfg.test_videos * cfg.frames_per_video) <= 0.25
    lo, hi = cfg.segment_frames
    for segs in plan:
        for a, b in itertools.pairwise(segs):
            assert a.end < b.start  # disjoint, normal gap between
        assert all(s.start > 0 and s.end < cfg.frames_per_video for s in segs)
        assert all(lo <= s.frames <= hi for s in segs)


def test_plan_refuses_too_short_test_videos():
    with pytest.raises(ConfigError, match="raise --clips-per-video or --videos"):
        plan_segments(preset_config("tiny", test_videos=1, clips_per_video=2))


# -- the dataset ---------------------------------------------------------------------------------
def test_modalities_shapes_dtypes_and_meta(synth_ds):
    reader = open_dataset(synth_ds)
    specs = {s.name: s for s in reader.modalities}
    assert reader.modalities.names == ("cam0", "cam1", "cam2", "audio", "motion")
    for c in ("cam0", "cam1", "cam2"):
        s = specs[c]
        assert (s.kind.value, s.shape, s.dtype, s.share) == ("video", (8, 64, 64), "uint8", "cams")
    assert (specs["audio"].kind.value, specs["audio"].shape) == ("spectrogram", (1, 32, 32))
    assert (specs["motion"].kind.value, specs["motion"].shape) == ("series", (16, 18))
    assert specs["audio"].dtype == specs["motion"].dtype == "float32"
    assert reader.anomaly_types == list(ANOMALY_TYPES)
    assert reader.label_frames == 8
    meta = reader.index["meta"]
    assert SynthConfig.from_dict(meta["config"]) == small_config(seed=3)
    assert (meta["seed"], meta["preset"], meta["generator_version"]) == (3, "tiny", 1)
    assert len(meta["motion_channels"]) == 18 and meta["motion_channels"][2] == "obj0_z"
    batch = reader.split("test").read(np.arange(5))
    assert batch["cam0"].dtype == np.uint8 and batch["audio"].dtype == np.float32
    assert np.all(batch["mask"] == 1)
    assert np.isfinite(batch["audio"]).all() and np.isfinite(batch["motion"]).all()


def test_every_anomaly_type_labelled_in_test_only(synth_ds):
    reader = open_dataset(synth_ds)
    for split in ("train", "val"):
        assert reader.anomalous_frames(split) == {}
        labels = reader.split(split).read(np.arange(len(reader.split(split))))["frame_labels"]
        assert not labels.any()
    counts = reader.anomalous_frames("test")
    assert set(counts) == set(ANOMALY_TYPES[1:])
    segments = reader.index["meta"]["segments"]
    for kind in ANOMALY_TYPES[1:]:
        assert sum(s["type"] == kind for s in segments) >= 3
    for vid, v in _videos(reader, "test").items():
        for seg in (s for s in segments if s["video_id"] == vid):
            span = v["labels"][seg["start_frame"] : seg["end_frame"]]
            assert np.all(span == ANOMALY_TYPES.index(seg["type"]))
            assert seg["end_frame"] - seg["start_frame"] >= 6  # several consecutive frames


def test_videos_are_consecutive_clips_with_unique_ids(synth_ds):
    reader = open_dataset(synth_ds)
    ids = {}
    for split in reader.splits:
        videos = _videos(reader, split)
        ids[split] = set(videos)
        for v in videos.values():
            assert v["clip_index"].tolist() == list(range(16))
    assert not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"])
    # motion continues across clip boundaries as it does inside clips
    v = next(iter(_videos(reader, "train").values()))
    pos = v["motion"][:, 0:3]
    step = np.linalg.norm(np.diff(pos, axis=0), axis=1)
    boundary = step[15::16]  # reading 16k-1 -> 16k
    assert np.median(boundary) < 3 * np.median(step) + 0.01


def test_same_seed_same_bytes_other_seed_differs(synth_ds, tmp_path):
    again = synthesize(tmp_path / "again", small_config(seed=3))
    assert _files(again) == _files(synth_ds)
    other = synthesize(tmp_path / "other", small_config(seed=4))
    a, b = _files(other), _files(synth_ds)
    assert a.keys() == b.keys()
    assert a["index.json"] != b["index.json"]
    assert a["train/shard-00000/cam0.npy"] != b["train/shard-00000/cam0.npy"]


def test_worker_processes_do_not_change_the_bytes(synth_ds, tmp_path):
    seen = []
    out = synthesize(
        tmp_path / "w2", small_config(seed=3), workers=2, progress=lambda d, t: seen.append((d, t))
    )
    assert _files(out) == _files(synth_ds)
    assert seen[-1] == (7 * 16, 7 * 16) and len(seen) == 7


@pytest.mark.parametrize("workers", [-1, True, 1.5])
def test_bad_worker_counts_are_refused_before_writing(tmp_path, workers):
    with pytest.raises(ConfigError, match="workers must be 0 \\(automatic\\) or a positive"):
        synthesize(tmp_path / "ds", small_config(), workers=workers)
    assert not (tmp_path / "ds").exists()


def test_interrupted_synth_leaves_no_complete_looking_dir(tmp_path, monkeypatch):
    def boom(video, seg):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(INJECTORS["sensor_fault"], "apply", boom)
    out = tmp_path / "ds"
    with pytest.raises(RuntimeError, match="injected failure"):
        synthesize(out, small_config())
    assert not (out / "index.json").exists()
    assert list(tmp_path.iterdir()) == []  # partial directory removed too


def test_existing_output_is_refused_without_overwrite(tmp_path):
    from edgevae.errors import OutputExistsError

    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        synthesize(out, small_config())
    assert (out / "keep.txt").read_text() == "x"


# -- the injectors did what they say (checked on the stored data) --------------------------------
def _segments(reader, kind):
    return [s for s in reader.index["meta"]["segments"] if s["type"] == kind]


def test_teleport_and_speed_show_in_motion(synth_ds):
    reader = open_dataset(synth_ds)
    videos = _videos(reader, "test")
    for seg in _segments(reader, "teleport"):
        m = videos[seg["video_id"]]["motion"]
        cols = slice(6 * seg["slot"], 6 * seg["slot"] + 3)
        for f in seg["jump_frames"]:  # reading 2f is just after the jump, 2f-1 just before
            assert np.linalg.norm(m[2 * f, cols] - m[2 * f - 1, cols]) > 0.3
    for seg in _segments(reader, "speed"):
        m = videos[seg["video_id"]]["motion"]
        vel = np.linalg.norm(m[:, 6 * seg["slot"] + 3 : 6 * seg["slot"] + 6], axis=1)
        before = np.median(vel[2 * seg["start_frame"] - 8 : 2 * seg["start_frame"]])
        during = np.median(vel[2 * seg["start_frame"] : 2 * seg["end_frame"]])
        assert during / before == pytest.approx(seg["factor"], rel=0.15)


def test_camera_faults_show_in_their_camera(synth_ds):
    reader = open_dataset(synth_ds)
    videos = _videos(reader, "test")
    modes = set()
    for seg in _segments(reader, "camera_fault"):
        frames = videos[seg["video_id"]]["cams"][int(seg["camera"][3:])].astype(np.float32)
        s, e = seg["start_frame"], seg["end_frame"]
        modes.add(seg["mode"])
        if seg["mode"] == "frozen":
            assert np.all(frames[s:e] == frames[s])
        elif seg["mode"] == "black":
            assert frames[s:e].mean() < 10 < frames[s - 4 : s].mean()
        else:  # another scene: another background (compared on 8x8 block means)

            def look(x):
                return np.median(x, axis=0).reshape(8, 8, 8, 8).mean(axis=(1, 3))

            before = look(frames[s - 6 : s])
            change = np.abs(look(frames[s:e]) - before).mean()
            assert change > 3 * np.abs(look(frames[s - 12 : s - 6]) - before).mean()
    assert modes == {"frozen", "black", "swap"}


def test_sensor_faults_break_position_velocity_consistency(synth_ds):
    reader = open_dataset(synth_ds)
    videos = _videos(reader, "test")
    rate = reader.index["meta"]["config"]["motion_rate"]
    for seg in _segments(reader, "sensor_fault"):
        m = videos[seg["video_id"]]["motion"][:, 0:6]  # slot 0 always exists
        # residual between the position change and the measured velocity, per reading
        resid = np.linalg.norm(np.diff(m[:, :3], axis=0) * rate - m[1:, 3:], axis=1)
        s, e = 2 * seg["start_frame"], 2 * seg["end_frame"]
        assert np.median(resid[s : e - 1]) > 2 * np.median(resid[: s - 2]) + 0.1


# -- the physics, audio, motion and camera relations ---------------------------------------------
def _one_object_scene(z: float, speed: float) -> Scene:
    obj = SceneObject(0.1, 0.9, np.array([0.5, 0.5, z]), np.array([speed, 0.0, 0.0]), timbre=0.2)
    obj.slot = 0
    return Scene([obj], audio_noise=0.01, illumination=1.0)


def test_pitch_follows_height_and_loudness_follows_speed():
    cfg = preset_config("tiny")
    steps = 8 * SUBSTEPS_PER_FRAME  # one clip, no wall reached (x 0.5 -> 0.62)
    peaks, energy = [], []
    for z, speed in ((0.25, 0.15), (0.75, 0.15), (0.75, 0.45)):
        scene = _one_object_scene(z, speed)
        traj = simulate(scene, steps, 1 / cfg.sim_rate)
        mel = log_mel(render_waveform(scene, traj, cfg, np.random.default_rng(0)), cfg)
        peak = int(np.median(mel.argmax(axis=1)))
        assert abs(peak - mel_bin(pitch_hz(z), cfg)) <= 1.0
        peaks.append(peak)
        energy.append(mel.max(axis=1).mean())
    assert peaks[1] > peaks[0] + 5  # higher object, higher pitch
    assert energy[2] > energy[1] + 1.0  # faster object, louder (log power)


def test_bounces_click():
    cfg = preset_config("tiny")
    scene = _one_object_scene(0.5, 0.6)
    scene.objects[0].position = np.array([0.85, 0.5, 0.5])  # hits the x = 1 wall quickly
    traj = simulate(scene, 80, 1 / cfg.sim_rate)
    assert len(traj.bounces) == 1
    assert traj.pos[0, :, 0].max() <= 1 - 0.1 + 1e-9  # reflected, never inside the wall
    assert traj.vel[0, -1, 0] == pytest.approx(-0.6)
    wave = render_waveform(scene, traj, cfg, np.random.default_rng(0))
    per_step = cfg.sample_rate // cfg.sim_rate
    at = int(traj.bounces[0, 0]) * per_step
    click = np.abs(wave[at : at + 40]).max()
    assert click > 2 * np.abs(wave[: at - 100]).max()


def test_gravity_pulls_down_and_objects_stay_in_the_box():
    cfg = preset_config("tiny", gravity=3.0)
    scene = random_scene(np.random.default_rng(1), cfg, 3)
    traj = simulate(scene, 800, 1 / cfg.sim_rate, cfg.gravity)
    for k, obj in enumerate(scene.objects):
        assert traj.pos[k].min() >= obj.radius - 1e-9 and traj.pos[k].max() <= 1 - obj.radius
    assert np.mean(traj.pos[:, :, 2]) < 0.5  # time spent low


def test_motion_reads_the_trajectory_with_small_noise():
    cfg = preset_config("tiny")
    scene = random_scene(np.random.default_rng(2), cfg, 2)
    traj = simulate(scene, 16 * 4, 1 / cfg.sim_rate)
    m = read_motion(scene, traj, cfg, np.random.default_rng(0), 16)
    truth = traj.pos[0, 2::4]
    assert np.abs(m[:, 0:3] - truth).mean() < 0.01
    assert np.all(m[:, 12:] == 0)  # slot 2 empty


def test_cameras_see_the_same_object_at_its_projection():
    cfg = preset_config("tiny")
    cams = make_cameras(cfg)
    assert [c.view for c in cams] == ["top", "front", "oblique"]
    pos = np.array([[[0.3, 0.7, 0.6]]])  # (K=1, F=1, 3)
    for cam in cams:
        img = render(
            cam,
            np.array([0.12]),
            np.array([1.0]),
            pos,
            np.ones((1, 1), bool),
            1.0,
            np.random.default_rng(0),
        )[0].astype(np.float32)
        u, v, _ = cam.project(pos[0, 0])
        row, col = np.unravel_index(np.argmax(img), img.shape)
        assert abs(row - v) <= 3 and abs(col - u) <= 3, cam.view
    assert len({(c.gain, c.noise, c.blur) for c in cams}) == 3  # each its own sensor


def test_eight_cameras_see_the_whole_box():
    cams = make_cameras(preset_config("tiny", cameras=8))
    corners = np.array(np.meshgrid([0, 1], [0, 1], [0, 1])).reshape(3, -1).T.astype(float)
    for cam in cams:
        u, v, depth = cam.project(corners)
        assert np.all(depth > 0) and u.min() >= 0 and v.min() >= 0 and u.max() <= 63, cam.view


def test_intruder_is_seen_but_not_heard_or_tracked():
    cfg = preset_config("tiny")
    scene = random_scene(np.random.default_rng(5), cfg, 1)
    video = VideoBuild(cfg, np.random.default_rng(6), scene, make_cameras(cfg), 24, 0)
    seg = anomalies_mod.Segment("intruder", 8, 16)
    INJECTORS["intruder"].prepare(video, seg)
    assert len(scene.objects) == 2
    traj = simulate(scene, 24 * SUBSTEPS_PER_FRAME, 1 / cfg.sim_rate)
    alone = Scene(scene.objects[:1], scene.audio_noise, scene.illumination)
    alone_traj = simulate(alone, 24 * SUBSTEPS_PER_FRAME, 1 / cfg.sim_rate)

    def rendered(sc, tr):
        rng = np.random.default_rng(0)
        at = tr.pos[:, SUBSTEPS_PER_FRAME // 2 :: SUBSTEPS_PER_FRAME]
        vis = np.stack([o.visible_mask(24) for o in sc.objects])
        radii = np.array([o.radius for o in sc.objects])
        bright = np.array([o.brightness for o in sc.objects])
        return (
            render(video.cameras[0], radii, bright, at, vis, 1.0, rng),
            render_waveform(sc, tr, cfg, rng),
            read_motion(sc, tr, cfg, rng, 48),
        )

    frames, wave, motion = rendered(scene, traj)
    frames0, wave0, motion0 = rendered(alone, alone_traj)
    assert np.array_equal(wave, wave0) and np.array_equal(motion, motion0)
    assert np.array_equal(frames[:8], frames0[:8]) and np.array_equal(frames[16:], frames0[16:])
    assert not np.array_equal(frames[8:16], frames0[8:16])


def test_av_desync_replaces_audio_with_a_later_moment():
    cfg = preset_config("tiny")
    scene = random_scene(np.random.default_rng(7), cfg, 2)
    n, tail = 40, 80
    video = VideoBuild(cfg, np.random.default_rng(8), scene, [], n, tail)
    video.traj = simulate(scene, (n + tail) * SUBSTEPS_PER_FRAME, 1 / cfg.sim_rate)
    video.wave = np.sin(np.arange((n + tail) * cfg.samples_per_frame) * 0.01).astype(np.float32)
    original = video.wave.copy()
    seg = anomalies_mod.Segment("av_desync", 10, 20)
    INJECTORS["av_desync"].apply(video, seg)
    src = seg.details["source_frame"]
    assert src >= max(n, 10 + anomalies_mod.DESYNC_MIN_OFFSET_FRAMES)
    spf = cfg.samples_per_frame
    inner = slice(10 * spf + 80, 20 * spf - 80)
    shifted = slice(src * spf + 80, (src + 10) * spf - 80)
    assert np.array_equal(video.wave[inner], original[shifted])
    assert np.array_equal(video.wave[: 10 * spf], original[: 10 * spf])


# -- loader over a synthesized dataset -----------------------------------------------------------
def test_loader_shapes_and_standardisation(synth_ds):
    from edgevae.data.loader import make_loader

    reader = open_dataset(synth_ds)
    batches = list(make_loader(reader, "train", 16))
    b = batches[0]
    assert b["cam1"].shape == (16, 8, 64, 64) and str(b["cam1"].dtype) == "torch.float32"
    assert float(b["cam1"].min()) >= 0.0 and float(b["cam1"].max()) <= 1.0
    assert b["audio"].shape == (16, 1, 32, 32) and b["motion"].shape == (16, 16, 18)
    assert b["mask"].shape == (16, 5) and float(b["mask"].min()) == 1.0
    assert b["frame_labels"].shape == (16, 8)
    audio = np.concatenate([x["audio"].numpy() for x in batches])
    assert abs(audio.mean()) < 1e-3 and audio.std() == pytest.approx(1.0, abs=1e-2)
    per_bin = audio.transpose(2, 0, 1, 3).reshape(32, -1)
    assert np.abs(per_bin.mean(axis=1)).max() < 1e-3
    motion = np.concatenate([x["motion"].numpy() for x in batches]).reshape(-1, 18)
    present = reader.split("train").read(np.arange(48))["motion"].reshape(-1, 18).std(axis=0) > 0
    assert np.abs(motion.mean(axis=0)).max() < 1e-3
    assert np.allclose(motion.std(axis=0)[present], 1.0, atol=1e-2)
    test = next(iter(make_loader(reader, "test", 48)))
    assert int(test["anomaly"].max()) > 0
