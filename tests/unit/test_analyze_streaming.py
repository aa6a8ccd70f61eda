"""The streaming :class:`edgevae.Analyzer` over a fake runner: ring buffers, hop, results,
conversions, bad input, thread safety. No torch: the model is a stand-in whose score is known."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

import edgevae
from edgevae.analyze.backend import ModelSession, find_metadata
from edgevae.errors import CheckpointError, ConfigError, ShapeError
from edgevae.modalities import ModalitySet, ModalitySpec
from edgevae.runtime.base import TensorInfo

T, H, W = 4, 16, 16
SPECS = ModalitySet(
    [
        ModalitySpec("cam0", "video", (T, H, W), "uint8", share="cams"),
        ModalitySpec("cam1", "video", (T, H, W), "uint8", share="cams"),
        ModalitySpec("audio", "spectrogram", (1, 8, 8)),
        ModalitySpec("motion", "series", (4, 2)),
    ]
)
PARTS = [f"recon_{n}" for n in SPECS.names] + ["kl_prior", "cross_modal"]


class ScoreIsBrightness:
    """Analyze-graph stand-in: reconstructs its inputs; score = 100 * mean of cam0 in [0, 1]."""

    name = "fake"

    def __init__(self) -> None:
        f32 = np.dtype("float32")
        self._inputs = {s.name: TensorInfo(s.name, ("batch", *s.shape), f32) for s in SPECS}
        self._inputs["mask"] = TensorInfo("mask", ("batch", len(SPECS)), f32)
        self.feeds: list[dict[str, np.ndarray]] = []

    @property
    def inputs(self) -> dict[str, TensorInfo]:
        return self._inputs

    @property
    def outputs(self) -> dict[str, TensorInfo]:
        f32 = np.dtype("float32")
        names = [*(f"recon_{n}" for n in SPECS.names), "score", "score_parts"]
        return {n: TensorInfo(n, ("batch",), f32) for n in names}

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.feeds.append(feed)
        b = len(feed["mask"])
        score = 100 * feed["cam0"].reshape(b, -1).mean(axis=1)
        parts = np.zeros((b, len(PARTS)), np.float32)
        parts[:, 0] = score
        out = {f"recon_{n}": feed[n] for n in SPECS.names}
        return {**out, "score": score.astype(np.float32), "score_parts": parts}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("run")
    meta = {
        "modalities": SPECS.to_list(),
        "normalization": {
            "cam0": {"scale": 1 / 255},
            "cam1": {"scale": 1 / 255},
            "audio": {"shape": [1, 1, 1], "mean": [0.0], "std": [1.0]},
            "motion": {"shape": [1, 2], "mean": [0.0, 0.0], "std": [1.0, 1.0]},
        },
        "score_stats": {"names": PARTS, "mean": [0.0] * 6, "std": [1.0] * 6, "weight": [1.0] * 6},
        "data": {"meta": {"capture": {"fps": 10.0, "sample_rate": 8000}}},
    }
    (d / "model.json").write_text(json.dumps(meta))
    return d


def make(run_dir: Path, **kw) -> tuple[edgevae.Analyzer, ScoreIsBrightness]:
    runner = ScoreIsBrightness()
    session = ModelSession(run_dir, runner=runner)
    return edgevae.Analyzer(session=session, **kw), runner


def frames(value: int, shape: tuple[int, ...] = (H, W)) -> dict[str, np.ndarray]:
    return {"cam0": np.full(shape, value, np.uint8), "cam1": np.full(shape, 255 - value, np.uint8)}


AUDIO = np.zeros(800, np.float32)  # 0.1 s at 8 kHz: one frame's worth


def test_results_come_once_a_window_is_full_then_every_hop(run_dir) -> None:
    an, runner = make(run_dir, hop=2, missing=["motion"])
    assert an.capture.fps == 10.0 and an.window == T
    results = [an.push(frames(10 * i), audio_chunk=AUDIO) for i in range(9)]
    assert [r is not None for r in results] == [False] * 3 + [True, False, True, False, True, False]
    r = results[5]
    assert (r.frame_index, r.window_start) == (5, 2)
    assert r.time == pytest.approx(0.5)  # default times: previous + 1 / fps from 0
    # the window holds frames 2..5 (values 20..50): score = 100 * mean / 255
    assert r.score == pytest.approx(100 * np.mean([20, 30, 40, 50]) / 255, rel=1e-5)
    assert r.parts["recon_cam0"] == pytest.approx(r.score, rel=1e-5)
    assert set(r.parts) == set(PARTS) and r.latency_s > 0
    assert r.reconstructions is None
    assert runner.feeds[-1]["mask"].tolist() == [[1, 1, 1, 0]]  # motion masked


def test_threshold_flags_and_reconstructions(run_dir) -> None:
    an, _ = make(run_dir, threshold=30.0, reconstructions=True, missing=["audio", "motion"])
    assert an.threshold == 30.0 and an.threshold_source.startswith("given")
    out = [an.push(frames(v)) for v in (0, 0, 0, 0, 250, 250, 250, 250)]
    assert out[3].flagged is False and out[7].flagged is True
    rec = out[7].reconstructions
    assert rec["cam0"].shape == (T, H, W) and rec["cam0"].dtype == np.uint8
    assert (rec["cam0"] == 250).all()  # the stand-in reconstructs its input exactly
    assert (rec["audio"] == 0).all()  # missing: zeros in, zeros out
    # default threshold: 3 sigma of the sum of standardised parts that count for this mask
    default, _ = make(run_dir, missing=["audio", "motion"])
    assert default.threshold == pytest.approx(3 * np.sqrt(4))


def test_default_threshold_of_the_max_rule_is_three_sigma_of_one_part(tmp_path, run_dir) -> None:
    meta = json.loads((run_dir / "model.json").read_text())
    meta["score_stats"].update(combine="max", weight=[1.0, 2.0, 4.0, 1.0, 1.0, 1.0])
    (tmp_path / "model.json").write_text(json.dumps(meta))
    with_audio, _ = make(tmp_path, missing=["motion"])  # audio's weight 4 counts
    assert with_audio.threshold == pytest.approx(12.0)
    assert with_audio.threshold_source.startswith("3 * largest part weight")
    without, _ = make(tmp_path, missing=["audio", "motion"])
    assert without.threshold == pytest.approx(6.0)  # cam1's weight 2 is now the largest


def test_frames_of_any_size_and_colour_are_converted(run_dir) -> None:
    an, runner = make(run_dir, missing=["audio", "motion"])
    rgb = {"cam0": np.full((48, 64, 3), 200, np.uint8), "cam1": np.zeros((30, 40), np.uint8)}
    for _ in range(T):
        r = an.push(rgb)
    assert r is not None
    cam0 = runner.feeds[-1]["cam0"]
    assert cam0.shape == (1, T, H, W)
    np.testing.assert_allclose(cam0, 200 / 255, atol=2 / 255)  # gray 200 after RGB -> gray


def test_audio_and_motion_buffers(run_dir) -> None:
    an, runner = make(run_dir)
    tone = 0.3 * np.sin(np.arange(8000) * 2 * np.pi * 500 / 8000).astype(np.float32)
    motion = np.array([[1.0, 2.0], [np.nan, 0.0], [3.0, 4.0]])  # 3 readings per frame, one NaN
    for i in range(T):
        r = an.push(frames(0), audio_chunk=tone[800 * i : 800 * (i + 1)], motion=motion)
    assert r is not None and an.motion_skipped == T
    feed = runner.feeds[-1]
    assert feed["motion"].shape == (1, 4, 2) and np.isfinite(feed["motion"]).all()
    # interpolated between the finite readings (1, 2) and (3, 4): within their range
    assert feed["motion"].min() >= 1.0 and feed["motion"].max() <= 4.0
    assert feed["audio"].shape == (1, 1, 8, 8) and feed["audio"].max() > 1.0  # a tone, not silence


BAD_PUSH = [
    ("missing camera", {"cam0": np.zeros((H, W), np.uint8)}, {}, "missing \\['cam1'\\]"),
    ("float frame", {**frames(0), "cam1": np.zeros((H, W))}, {}, "dtype float64; pass uint8"),
    ("rank", {**frames(0), "cam1": np.zeros((2, H, W, 3), np.uint8)}, {}, "has shape"),
    ("not a dict", [np.zeros((H, W), np.uint8)] * 2, {}, "frames must be a dict"),
    ("time backwards", frames(0), {"time": -1.0}, "not after the previous frame"),
    ("audio 2-D", frames(0), {"audio_chunk": np.zeros((2, 100))}, "pass mono samples"),
    ("motion width", frames(0), {"motion": np.zeros((3, 5))}, "readings with D=2"),
]


@pytest.mark.parametrize(
    ("frames_in", "kw", "message"), [c[1:] for c in BAD_PUSH], ids=[c[0] for c in BAD_PUSH]
)
def test_bad_pushes_are_one_line_errors_and_change_nothing(run_dir, frames_in, kw, message):
    an, _ = make(run_dir)
    an.push(frames(0), audio_chunk=AUDIO, motion=np.zeros(2), time=0.0)
    count = an.buffer.count
    with pytest.raises(ShapeError, match=message):
        an.push(frames_in, **kw)
    assert an.buffer.count == count  # a rejected push leaves the buffers as they were


def test_frame_size_change_mid_stream(run_dir) -> None:
    an, _ = make(run_dir, missing=["audio", "motion"])
    for _ in range(5):
        an.push(frames(0, (48, 64)))
    with pytest.raises(
        ShapeError, match=r"cam0: frame size changed from 64x48 to 32x24 at frame 5"
    ):
        an.push(frames(0, (24, 32)))
    an.reset()  # after a camera restart at a new resolution
    assert an.push(frames(0, (24, 32))) is None


def test_streams_the_model_needs_must_arrive(run_dir) -> None:
    an, _ = make(run_dir, missing=["motion"])
    for _ in range(T - 1):
        an.push(frames(0))
    with pytest.raises(ShapeError, match=r"no audio has been pushed.*missing=\['audio'\]"):
        an.push(frames(0))


def test_bad_construction(run_dir, tmp_path) -> None:
    with pytest.raises(ConfigError, match="audoi"):
        make(run_dir, missing=["audoi"])
    with pytest.raises(ConfigError, match="every camera is marked missing"):
        make(run_dir, missing=["cam0", "cam1"])
    with pytest.raises(ConfigError, match="hop must be an integer"):
        make(run_dir, hop=0)
    with pytest.raises(ConfigError, match="needs an artifact"):
        edgevae.Analyzer()
    lone = tmp_path / "m.onnx"
    lone.write_bytes(b"")
    with pytest.raises(CheckpointError, match="keep the export's manifest"):
        find_metadata(lone)


def test_one_analyzer_per_stream_in_threads_matches_sequential(run_dir) -> None:
    # documented pattern: threads share one loaded model (ModelSession), one Analyzer each
    session = ModelSession(run_dir, runner=ScoreIsBrightness())
    values = [[(7 * i + 31 * s) % 256 for i in range(12)] for s in range(4)]

    def scores(stream: int) -> list[float]:
        an = edgevae.Analyzer(session=session, missing=["audio", "motion"])
        return [r.score for v in values[stream] if (r := an.push(frames(v))) is not None]

    expected = [scores(s) for s in range(4)]
    got: dict[int, list[float]] = {}
    threads = [threading.Thread(target=lambda s=s: got.update({s: scores(s)})) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[s] for s in range(4)] == expected


def test_concurrent_pushes_to_one_analyzer_are_serialised(run_dir) -> None:
    an, _ = make(run_dir, missing=["audio", "motion"])
    barrier = threading.Barrier(4)
    results: list = []

    def worker() -> None:
        barrier.wait()
        for _ in range(10):
            r = an.push(frames(100))
            if r is not None:
                results.append(r)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert an.buffer.count == 40 and len(results) == 40 - T + 1
    assert sorted(r.frame_index for r in results) == list(range(T - 1, 40))
    assert all(r.score == pytest.approx(100 * 100 / 255) for r in results)
