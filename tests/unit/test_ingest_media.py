"""Camera decoding and alignment on real H.264 files, motion CSV parsing, and `edgevae data ingest`
on a multi-camera recording with known content."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgevae.analyze.video_io import to_model_frame
from edgevae.cli import run
from edgevae.data.audio import clip_log_mel
from edgevae.data.format import open_dataset
from edgevae.data.media import AlignedCameras, read_motion_csv
from edgevae.errors import MediaError
from tests import media
from tests.cli_util import invoke

# Three cameras that differ in frame rate, resolution, start and length (seconds).
CAMS = [
    {"fps": 10.0, "width": 64, "height": 48, "start": 0.0, "duration": 3.0},
    {"fps": 15.0, "width": 48, "height": 48, "start": 0.2, "duration": 2.6, "audio": False},
    {"fps": 25.0, "width": 32, "height": 32, "start": 0.0, "duration": 3.2, "audio": False},
]
SMALL = ["--size", "32", "--clip-frames", "4", "--audio-frames", "16", "--n-mels", "16"]


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("rec")
    files = {f"cam{i}": media.write_camera(d / f"c{i}.mp4", i, **kw) for i, kw in enumerate(CAMS)}
    files["motion"] = media.write_motion_csv(d / "m.csv", duration=3.5, nan_rows=(20, 21))
    return files


def _native_time(t: float, cam: dict) -> float:
    """Timestamp of the camera's latest frame at or before ``t``."""
    k = np.floor((t - cam["start"]) * cam["fps"] + 1e-3)
    return cam["start"] + k / cam["fps"]


def _match_error(img: np.ndarray, cam_index: int, t_native: float) -> float:
    cam = CAMS[cam_index]
    ref = media.view(cam_index, t_native, cam["width"], cam["height"])
    ref = to_model_frame(ref, img.shape[:2], 1)
    return float(np.abs(img.astype(np.float64) - ref).mean())


def test_cameras_align_on_presentation_timestamps(rec) -> None:
    files = {k: v for k, v in rec.items() if k.startswith("cam")}
    with AlignedCameras(files, fps=10.0, size=(32, 32)) as sources:
        out = list(sources.frames())
        report = sources.report()
    # overlap only: cam1 starts last (0.2 s) and ends first (2.8 s)
    assert out[0][1] == pytest.approx(0.2)
    assert len(out) == 26
    assert report["span"] == {"start": pytest.approx(0.2), "end": pytest.approx(2.8), "frames": 26}
    by_name = {s["name"]: s for s in report["sources"]}
    assert by_name["cam0"]["trimmed_head_s"] == pytest.approx(0.2)
    assert by_name["cam2"]["trimmed_tail_s"] == pytest.approx(0.4, abs=1e-3)
    assert by_name["cam1"]["native_fps"] == pytest.approx(15.0, rel=1e-3)
    assert by_name["cam0"]["native_size"] == [64, 48]
    for _, t, frames in out:
        for i in range(3):
            img = frames[f"cam{i}"]
            assert img.shape == (32, 32) and img.dtype == np.uint8
            # the frame shown is the latest native frame at or before t, not a neighbour
            step = 1 / CAMS[i]["fps"]
            right = _match_error(img, i, _native_time(t, CAMS[i]))
            wrong = min(_match_error(img, i, _native_time(t, CAMS[i]) + d) for d in (-step, step))
            assert right < 3.0, (t, i, right)
            assert right <= wrong + 0.5, (t, i, right, wrong)


def test_motion_csv_rows(tmp_path, rec) -> None:
    log = read_motion_csv(rec["motion"])
    assert log.columns == ("y", "vy") and log.skipped_rows == 2
    truth = [media.position(1.0), media.velocity(1.0)]
    np.testing.assert_allclose(log.sample(np.array([1.0]))[0], truth, atol=1e-3)
    bad = tmp_path / "bad.csv"
    for text, message in [
        ("time,y\n0,1\n0.1,x\n", "line 3 column 'y': 'x' is not a number"),
        ("time,y\n0,1\n0.2,2\n0.1,3\n", "time does not increase at t=0.100 s"),
        ("time,y\n0,nan\n0.1,2\n", "1 usable rows"),
        ("time\n0\n1\n", "only a time column"),
        ("", "is empty"),
        ("time,y\n0,1,2\n", "line 2 has 3 cells"),
    ]:
        bad.write_text(text)
        with pytest.raises(MediaError, match=message):
            read_motion_csv(bad)


@pytest.fixture(scope="module")
def dataset(rec, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("ds") / "data"
    buf = io.StringIO()  # module scope: no capsys, capture stdout directly
    with contextlib.redirect_stdout(buf):
        code = run(
            [
                "data",
                "ingest",
                *("--camera", str(rec["cam0"]), "--camera", str(rec["cam1"])),
                *("--camera", str(rec["cam2"]), "--motion", str(rec["motion"])),
                *("--out", str(out), *SMALL, "--motion-steps", "4", "--quiet"),
            ]
        )
    assert code == 0
    return out, buf.getvalue()


def test_ingest_writes_clips_with_known_content(dataset) -> None:
    out, printed = dataset
    reader = open_dataset(out)
    assert reader.modalities.names == ("cam0", "cam1", "cam2", "audio", "motion")
    meta = reader.index["meta"]
    report = meta["ingest"][-1]
    assert meta["capture"]["fps"] == 10.0 and meta["capture"]["clip_frames"] == 4
    span = report["span"]
    # audio needs its codec edges (0.25 s) + one log-mel hop (25 ms) trimmed: start 0.275 s
    assert span["start"] == pytest.approx(0.275)
    clips = report["clips"]
    assert clips == report["frames_in_overlap"] // 4 and clips == len(reader.split("train")) == 6
    assert report["dropped_tail_frames"] == report["frames_in_overlap"] - 4 * clips
    motion = next(s for s in report["sources"] if s["name"] == "motion")
    assert motion["skipped_rows"] == 2
    assert "skipped 2 motion row(s)" in printed and "frames/s" in printed
    data = reader.split("train").read(range(clips))
    assert data["cam1"].shape == (clips, 4, 32, 32) and data["audio"].shape == (clips, 1, 16, 16)
    assert (data["mask"] == 1).all() and (data["clip_index"] == np.arange(clips)).all()
    for j in range(clips):
        start = span["start"] + 0.4 * j
        # video: frame f of clip j is camera 1's latest frame at start + f / 10
        for f in range(4):
            t = _native_time(start + f / 10, CAMS[1])
            assert _match_error(data["cam1"][j, f], 1, t) < 3.0
        # motion: the log interpolated in the middle of each of 4 intervals
        steps = start + (np.arange(4) + 0.5) * 0.1
        truth = np.stack([media.position(steps), media.velocity(steps)], axis=1)
        np.testing.assert_allclose(data["motion"][j], truth, atol=2e-3)
        # audio: the log-mel of the tone under the clip (8 kHz, hop 200 samples)
        wave = media.tone(np.arange(round(4.0 * 8000)) / 8000)  # the source, phase from 0 s
        lo = round((start - 200 / 8000) * 8000)
        ref = clip_log_mel(wave[lo : lo + 18 * 200], 8000, 16, 16)
        assert np.abs(data["audio"][j, 0] - ref).mean() < 0.3
        assert np.corrcoef(data["audio"][j, 0].ravel(), ref.ravel())[0, 1] > 0.97


def test_ingest_append_and_masked_audio(rec, dataset, tmp_path, capsys) -> None:
    src, _ = dataset
    out = tmp_path / "data"
    shutil.copytree(src, out)
    cams = [str(rec[f"cam{i}"]) for i in range(3)]
    common = [a for c in cams for a in ("--camera", c)] + ["--motion", str(rec["motion"])]
    common += ["--out", str(out), *SMALL, "--motion-steps", "4", "--quiet", "--append"]
    # cam1 has no audio track: error, then masked with --allow-missing
    no_audio = ["--audio-from", cams[1]]
    r = invoke(capsys, "data", "ingest", *common, "--split", "val", *no_audio)
    assert r.code == 2 and "has no audio track" in r.err and "--allow-missing" in r.err
    r = invoke(capsys, "data", "ingest", *common, "--split", "val", *no_audio, "--allow-missing")
    assert r.code == 0, r.err
    assert "audio missing (masked)" in r.out
    val = open_dataset(out).split("val").read(range(len(open_dataset(out).split("val"))))
    assert (val["mask"][:, 3] == 0).all() and (val["mask"][:, :3] == 1).all()
    assert (val["audio"] == 0).all() and (val["video_id"] == 1).all()
    before = (out / "index.json").read_bytes()
    r = invoke(capsys, "data", "ingest", *common, "--split", "test", "--fps", "12")
    assert r.code == 2 and "ingested with fps=10.0, this call uses 12.0" in r.err
    assert (out / "index.json").read_bytes() == before  # nothing half-written


def _ingest_args(out: Path, *cams: Path, extra: tuple[str, ...] = ()) -> list[str]:
    args = ["data", "ingest", *(a for c in cams for a in ("--camera", str(c))), "--out", str(out)]
    return [*args, *SMALL, "--quiet", *extra]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory, rec) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    files = {
        "ok": rec["cam0"],
        "no_audio": rec["cam1"],
        "audio_only": media.write_camera(d / "audio.m4a", video=False, container="mp4"),
        "size_change": media.write_size_change(d / "size.ts"),
        "text": d / "text.mp4",
        "notime": media.write_motion_csv(d / "notime.csv", time_column="t"),
    }
    files["text"].write_text("not a video\n" * 40)
    files["truncated"] = media.truncate(shutil.copy(rec["cam0"], d / "trunc.mp4"), 0.5)
    raw = bytearray(rec["cam0"].read_bytes())
    mid = len(raw) // 2
    raw[mid : mid + 2000] = bytes((b * 7 + 13) % 256 for b in raw[mid : mid + 2000])
    files["corrupt"] = d / "corrupt.mp4"
    files["corrupt"].write_bytes(bytes(raw))
    return files


BAD_INGEST = [
    ("missing", ["nope.mp4"], (), "camera cam0 file '.*nope.mp4' does not exist"),
    ("unreadable", ["text"], (), "cannot read camera cam0 file .*not a media file"),
    ("no video stream", ["audio_only"], (), "camera cam0: .* has no video stream"),
    ("size change", ["size_change"], ("--no-audio",), "changes frame size from 64x48 to 32x24"),
    ("truncated", ["truncated"], ("--no-audio",), r"truncated or corrupt: decoding stopped at 1\."),
    ("truncated audio", ["truncated"], (), r"audio decoding failed after 1\.\d\d s"),
    ("corrupt", ["corrupt"], ("--no-audio",), r"is corrupt: decoding failed after 1\.\d\d s"),
    ("no audio track", ["no_audio"], (), "has no audio track; pass --audio-from"),
    ("no audio, new", ["no_audio"], ("--allow-missing",), "this is a new dataset"),
    ("no time column", ["ok"], ("--motion", "notime"), "has no 'time' column .*columns: t, y, vy"),
    ("missing csv", ["ok"], ("--motion", "nope.csv"), "motion CSV .* does not exist"),
    ("first split", ["ok"], ("--split", "val"), "a new dataset starts with --split train"),
    ("bad split", ["ok"], ("--split", "tset"), "unknown split 'tset'"),
    ("bad size", ["ok"], ("--size", "3x"), "--size '3x' is not a size"),
    ("no overlap", ["ok", "late"], ("--no-audio",), "do not overlap in time"),
    ("append to nothing", ["ok"], ("--append",), "does not exist"),
    ("contradiction", ["ok"], ("--no-audio", "--allow-missing"), "--no-audio contradicts"),
]


@pytest.mark.parametrize(
    ("cams", "extra", "message"),
    [case[1:] for case in BAD_INGEST],
    ids=[case[0] for case in BAD_INGEST],
)
def test_ingest_bad_input(bad_files, tmp_path, capsys, cams, extra, message) -> None:
    if "late" in cams and "late" not in bad_files:
        bad_files["late"] = media.write_camera(tmp_path / "late.mp4", start=5.0, duration=1.0)
    paths = [bad_files.get(c, tmp_path / c) for c in cams]
    extra = tuple(
        str(bad_files.get(e, tmp_path / e)) if e.endswith(".csv") or e in bad_files else e
        for e in extra
    )
    out = tmp_path / "out"
    r = invoke(capsys, *_ingest_args(out, *paths, extra=extra))
    assert r.code == 2, (r.out, r.err)
    assert r.err.startswith("error: ") and r.err.count("\n") == 1, r.err
    assert "Traceback" not in r.err
    assert re.search(message, r.err), r.err
    # nothing half-written: no output and no hidden partial directory next to it
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))


def test_ingest_refuses_to_overwrite_what_is_not_a_dataset(bad_files, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    r = invoke(capsys, *_ingest_args(out, bad_files["ok"]))
    assert r.code == 2 and "is not empty; pass --overwrite" in r.err
    r = invoke(capsys, *_ingest_args(out, bad_files["ok"], extra=("--overwrite",)))
    assert r.code == 2 and "not an edgevae dataset" in r.err
    assert (out / "keep.txt").read_text() == "mine"


def test_ingest_json_report(bad_files, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    r = invoke(capsys, *_ingest_args(out, bad_files["ok"], extra=("--json", "--rgb")))
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert report["clips"] == 6 and report["config"]["channels"] == 3
    assert open_dataset(out).modalities["cam0"].shape == (12, 32, 32)
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # follows the umask, not mkdtemp's 0700


def test_progress_bar_shows_frames_per_second() -> None:
    from rich.console import Console

    from edgevae.cli.ingest import FrameProgress

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    with FrameProgress(console, "ingest") as bar:
        bar.update(40, 100)
        bar.progress.refresh()
        task = bar.progress.tasks[0]
        assert (task.completed, task.total) == (40, 100)
        assert task.fields["rate"].endswith("frames/s")
    assert "frames/s" in buf.getvalue()
    quiet = FrameProgress(console, "ingest", enabled=False)
    quiet.update(1, 2)
    assert quiet.progress is None
