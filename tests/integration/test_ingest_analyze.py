"""Real video in, analysis out: MP4 recordings (H.264 + AAC) of three cameras with different frame
rates, sizes and lengths -> `edgevae data ingest` -> a tiny trained model -> `edgevae analyze`
(PyTorch and ONNX Runtime) -> scores, timeline, reconstruction video, summary.

The test recording has a planted camera fault (cam0 black for one second) and is analysed with
cam1 marked missing, so the model imputes it from the other cameras, the audio and the motion.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import json
import re
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

import edgevae
from edgevae.analyze.stream import FileStream
from edgevae.cli import run
from edgevae.data.format import open_dataset
from edgevae.data.media import decode_audio, read_motion_csv
from tests import media
from tests.cli_util import invoke
from tests.train_util import tiny_model_config, tiny_train_config

FPS = (10.0, 15.0, 25.0)  # native frame rates of cam0..cam2
SIZES = ((48, 48), (48, 32), (32, 32))  # native (width, height)
ANOMALY = (53.0, 54.0)  # cam0 black in the test recording
SMALL = ("--size", "16", "--clip-frames", "4", "--audio-frames", "16", "--n-mels", "16")
SMALL += ("--motion-steps", "4")


def _recording(d: Path, name: str, start: float, duration: float, **fault) -> list[Path]:
    """Three camera files of one recording; cam0 carries the audio, cam2 runs 0.4 s longer."""
    paths = []
    for i in range(3):
        paths.append(
            media.write_camera(
                d / f"{name}{i}.mp4",
                i,
                fps=FPS[i],
                width=SIZES[i][0],
                height=SIZES[i][1],
                start=start,
                duration=duration + (0.4 if i == 2 else 0.0),
                audio=i == 0,
                **(fault if i == 0 else {}),
            )
        )
    return paths


def _cli(*args: str | Path) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run([str(a) for a in args])
    assert code == 0, f"edgevae {' '.join(map(str, args))} exited {code}"
    return out.getvalue()


def _cams(paths: list[Path]) -> list[str]:
    return [a for p in paths for a in ("--camera", str(p))]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    import torch

    d = tmp_path_factory.mktemp("world")
    w: dict = {"dir": d}
    w["train"] = _recording(d, "train", 0.0, 24.0)
    w["val"] = _recording(d, "val", 30.0, 6.0)
    w["test"] = _recording(d, "test", 50.0, 6.0, black=ANOMALY)
    w["motion"] = media.write_motion_csv(d / "motion.csv", duration=60.0, nan_rows=(2010, 2011))
    data = d / "data"
    motion = ("--motion", w["motion"])
    _cli("data", "ingest", *_cams(w["train"]), *motion, "--out", data, *SMALL, "--quiet")
    _cli("data", "ingest", *_cams(w["val"]), *motion, "--out", data, *SMALL, "--quiet",
         "--append", "--split", "val")  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine: one thread trains ~5x faster
    try:
        from edgevae.train import train

        model = tiny_model_config(latent_dim=8)
        train(
            data, d / "run", model, tiny_train_config(epochs=20, lr=3e-3, batch_size=4, patience=0)
        )
    finally:
        torch.set_num_threads(threads)
    w["run"], w["data"] = d / "run", data
    common = (*_cams(w["test"]), *motion, "--missing", "cam1", "--threads", "1", "--quiet")
    w["printed"] = _cli("analyze", "--model", w["run"], *common, "--out", d / "out")
    w["out"] = d / "out"
    from edgevae.export import ExportConfig, export

    export(w["run"], d / "export", ExportConfig(graphs=("analyze", "encode")))
    w["onnx"] = d / "export" / "analyze.onnx"
    _cli("analyze", "--model", w["onnx"], *common, "--out", d / "out_onnx", "--no-video")
    return w


def _scores(path: Path) -> list[dict[str, str]]:
    with open(path / "scores.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_outputs_cover_every_frame(world) -> None:
    out = world["out"]
    summary = json.loads((out / "summary.json").read_text())
    rows = _scores(out)
    n = summary["frames"]
    assert list(rows[0]) == [
        "frame", "time", "score", "flagged", "window_end",
        "recon_cam0", "recon_cam1", "recon_cam2", "recon_audio", "recon_motion",
        "kl_prior", "cross_modal",
    ]  # fmt: skip
    assert len(rows) == n == summary["alignment"]["span"]["frames"]
    assert [int(r["frame"]) for r in rows] == list(range(n))
    times = np.array([float(r["time"]) for r in rows])
    np.testing.assert_allclose(np.diff(times), 0.1, atol=1e-3)
    # overlap only: the audio track's codec edges + one hop trim the start; cam2 runs longer
    assert 50.2 < times[0] < 50.4 and times[-1] < 56.0
    cam2 = next(s for s in summary["alignment"]["sources"] if s["name"] == "cam2")
    assert cam2["trimmed_tail_s"] > 0.4
    assert all(float(r["recon_cam1"]) == 0 for r in rows)  # missing: no reconstruction error
    # recon.mp4: one frame per analysed frame, 3 cameras x (original | recon | imputed)
    with av.open(str(out / "recon.mp4")) as container:
        stream = container.streams.video[0]
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(decoded) == n
    layout = summary["recon_layout"]
    assert layout["rows"] == ["cam0", "cam1", "cam2"]
    assert layout["columns"] == ["original", "reconstruction", "imputed"]
    assert (out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    timing = summary["timing"]
    assert timing["realtime_factor"] > 0 and timing["frames_per_s"] > 0
    assert summary["motion_skipped_rows"] == 2
    assert "skipped 2 motion row(s)" in world["printed"] and "real-time factor" in world["printed"]


def test_planted_anomaly_scores_higher_than_normal_frames(world) -> None:
    rows = _scores(world["out"])
    t = np.array([float(r["time"]) for r in rows])
    score = np.array([float(r["score"]) for r in rows])
    # a frame's score is its window's (the frame and the 3 before), so windows touching the
    # black second are anomalous; frames more than a window away are normal
    anomalous = (t >= ANOMALY[0]) & (t < ANOMALY[1])
    normal = (t < ANOMALY[0] - 0.1) | (t >= ANOMALY[1] + 0.4)
    assert score[anomalous].mean() > score[normal].mean() + 5
    assert np.median(score[anomalous]) > np.percentile(score[normal], 90)
    summary = json.loads((world["out"] / "summary.json").read_text())
    top = max(summary["flagged_segments"], key=lambda s: s["peak_score"])
    assert top["start_time"] < ANOMALY[1] and top["end_time"] > ANOMALY[0]
    assert top["top_part"] == "recon_cam0"


def test_imputed_camera_is_closer_to_the_truth_than_its_mean_frame(world) -> None:
    summary = json.loads((world["out"] / "summary.json").read_text())
    imp = summary["imputation"]["cam1"]
    assert imp["mse_imputed"] < 0.8 * imp["mse_mean_frame"]
    # independently, from the video: row cam1, column 0 = truth, column 2 = imputed
    scale, gap = summary["recon_layout"]["scale"], 2
    cell = 16 * scale
    y0 = cell + gap
    truth, imputed = [], []
    with av.open(str(world["out"] / "recon.mp4")) as container:
        for frame in container.decode(video=0):
            img = frame.to_ndarray(format="rgb24")[y0 : y0 + cell, :, 0].astype(np.float64)
            truth.append(img[:, :cell])
            imputed.append(img[:, 2 * (cell + gap) : 2 * (cell + gap) + cell])
    truth_a, imputed_a = np.stack(truth), np.stack(imputed)
    mse_model = np.mean((imputed_a - truth_a) ** 2)
    mse_mean = np.mean((truth_a.mean(axis=0) - truth_a) ** 2)
    assert mse_model < 0.8 * mse_mean


def test_onnx_artifact_gives_the_same_scores(world) -> None:
    torch_rows, onnx_rows = _scores(world["out"]), _scores(world["dir"] / "out_onnx")
    assert len(torch_rows) == len(onnx_rows)
    a = np.array([float(r["score"]) for r in torch_rows])
    b = np.array([float(r["score"]) for r in onnx_rows])
    np.testing.assert_allclose(b, a, atol=2e-3, rtol=1e-3)
    summary = json.loads((world["dir"] / "out_onnx" / "summary.json").read_text())
    assert summary["model"]["backend"] == "onnx" and "recon.mp4" not in summary["outputs"]
    assert not (world["dir"] / "out_onnx" / "recon.mp4").exists()


def _stream(world, analyzer):
    cap = analyzer.capture
    files = {f"cam{i}": p for i, p in enumerate(world["test"])}
    audio = decode_audio(world["test"][0], cap.sample_rate)
    return FileStream(files, cap, audio=audio, motion=read_motion_csv(world["motion"]))


def test_analyzer_push_reproduces_scores_csv(world) -> None:
    an = edgevae.Analyzer(world["onnx"], missing=["cam1"], threads=1)
    rows = _scores(world["dir"] / "out_onnx")
    got = {}
    with _stream(world, an) as stream:
        for step in stream:
            r = an.push(step.frames, step.audio_chunk, step.motion, time=step.time,
                        audio_start=stream.audio_start)  # fmt: skip
            if r is not None:
                got[r.frame_index] = r
    assert sorted(got) == list(range(an.window - 1, len(rows)))
    for k, r in got.items():
        assert r.time == pytest.approx(float(rows[k]["time"]), abs=1e-4)
        assert r.score == pytest.approx(float(rows[k]["score"]), abs=1e-4)
        assert r.flagged == bool(int(rows[k]["flagged"]))


def test_analyzer_windows_are_the_ingested_clips(world, tmp_path) -> None:
    # the same recording ingested as a dataset and streamed through an Analyzer: the window
    # ending at the last frame of clip j holds exactly clip j (video, log-mel audio, motion)
    data = tmp_path / "test_data"
    _cli("data", "ingest", *_cams(world["test"]), "--motion", world["motion"], "--out", data,
         *SMALL, "--quiet")  # fmt: skip
    clips = open_dataset(data).split("train")
    stored = clips.read(range(len(clips)))
    an = edgevae.Analyzer(world["onnx"], threads=1)
    checked = 0
    with _stream(world, an) as stream:
        for step in stream:
            an.buffer.push(step.frames, step.time, step.audio_chunk, step.motion,
                           converted=True, audio_start=stream.audio_start)  # fmt: skip
            if an.buffer.full and (step.index + 1) % 4 == 0:
                j = (step.index + 1) // 4 - 1
                window = an.window_arrays()
                for name in an.modalities.names:
                    np.testing.assert_array_equal(window[name], stored[name][j], err_msg=name)
                checked += 1
    assert checked == len(clips) > 10


@pytest.fixture(scope="module")
def bad(world, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    files = {
        "no_audio": world["test"][1],
        "audio_only": media.write_camera(d / "audio.m4a", video=False, container="mp4"),
        "size_change": media.write_size_change(d / "size.ts", duration=6.0, start=50.0),
        "notime": media.write_motion_csv(d / "notime.csv", duration=60.0, time_column="t"),
        "one_column": d / "one_column.csv",
        "truncated": media.truncate(shutil.copy(world["test"][2], d / "trunc.mp4"), 0.5),
        "lone_onnx": shutil.copy(world["onnx"], d / "analyze.onnx"),
    }
    # a TensorRT engine where TensorRT is not installed (metadata from its manifest)
    files["engine"] = d / "analyze.plan"
    files["engine"].write_bytes(b"not built here")
    manifest = world["onnx"].with_name("analyze.onnx.manifest.json")
    shutil.copy(manifest, d / "analyze.plan.manifest.json")
    files["encode"] = world["onnx"].with_name("encode.onnx")
    files["one_column"].write_text("time,y\n" + "".join(f"{i / 10},{i}\n" for i in range(600)))
    return files


BAD_ANALYZE = [
    ("camera count", ["test0", "test1"], (), r"model has 3 cameras .* but 2 --camera file\(s\)"),
    ("missing file", ["test0", "test1", "nope.mp4"], (), "camera cam2 file .* does not exist"),
    ("no video stream", ["test0", "test1", "audio_only"], (), "cam2: .* has no video stream"),
    ("no audio track", ["no_audio", "test1", "test2"], (), "has no audio track but the model"),
    ("size change", ["test0", "test1", "size_change"], (), "changes frame size .* at 53.00 s"),
    ("truncated", ["test0", "test1", "truncated"], (), r"truncated or corrupt: decoding stopped"),
    ("no time column", ["test0", "test1", "test2"], ("--motion", "notime"), "no 'time' column"),
    ("motion columns", ["test0", "test1", "test2"], ("--motion", "one_column"), "expects 2"),
    ("no motion", ["test0", "test1", "test2"], ("--no-motion",), "pass --motion CSV"),
    ("typo", ["test0", "test1", "test2"], ("--missing", "cam9"), "cam9"),
    ("bad hop", ["test0", "test1", "test2"], ("--hop", "9"), "longer than the model's window"),
    ("lone onnx", ["test0", "test1", "test2"], ("--model", "lone_onnx"), "model metadata"),
    ("not a model", ["test0", "test1", "test2"], ("--model", "motion"), "cannot tell how to run"),
    ("encode graph", ["test0", "test1", "test2"], ("--model", "encode"), "not an analyze graph"),
    ("engine, no TensorRT", ["test0", "test1", "test2"], ("--model", "engine"), "'tensorrt'"),
]


@pytest.mark.parametrize(
    ("cams", "extra", "message"), [c[1:] for c in BAD_ANALYZE], ids=[c[0] for c in BAD_ANALYZE]
)
def test_analyze_bad_input(world, bad, tmp_path, capsys, cams, extra, message) -> None:
    if "engine" in extra and importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed: this case checks the error where it is not")
    named = {f"test{i}": p for i, p in enumerate(world["test"])} | bad | {"motion": world["motion"]}
    paths = [named.get(c, tmp_path / c) for c in cams]
    args = ["--model", str(world["onnx"]), "--motion", str(world["motion"])]
    extra = list(extra)
    if "--no-motion" in extra:
        extra.remove("--no-motion")
        args = args[:2]
    for i, e in enumerate(extra):
        extra[i] = str(named[e]) if e in named else e
    out = tmp_path / "out"
    r = invoke(capsys, "analyze", *args, *_cams(paths), *extra, "--out", out, "--quiet")
    assert r.code == 2, (r.out, r.err)
    assert r.err.startswith("error: ") and r.err.count("\n") == 1 and "Traceback" not in r.err
    assert re.search(message, r.err), r.err
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))


def test_analyze_refuses_to_overwrite_other_files(world, tmp_path, capsys) -> None:
    args = ["analyze", "--model", world["onnx"], *_cams(world["test"])]
    args += ["--motion", world["motion"], "--out", world["data"], "--overwrite", "--quiet"]
    r = invoke(capsys, *args)
    assert r.code == 2 and "not an analyze output" in r.err
    assert (world["data"] / "index.json").is_file()


def test_watch_cameras_example_alerts_on_the_fault(world, capsys) -> None:
    path = Path(__file__).resolve().parents[2] / "examples" / "watch_cameras.py"
    spec = importlib.util.spec_from_file_location("watch_cameras", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    cams = [str(world["test"][0]), str(world["test"][2])]
    argv = ["--model", str(world["onnx"]), "--missing", "cam1", "--motion", str(world["motion"])]
    assert example.main([*argv, *(a for c in cams for a in ("--camera", c))]) == 0
    printed = capsys.readouterr().out
    alerts = [float(t) for t in re.findall(r"ALERT at ([\d.]+) s", printed)]
    assert any(ANOMALY[0] <= t < ANOMALY[1] for t in alerts), printed
    assert re.search(r"push latency p50 [\d.]+ ms, p95 [\d.]+ ms", printed)
