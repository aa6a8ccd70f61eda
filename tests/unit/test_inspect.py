"""Dataset summary and contact sheet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgevae.data import from_arrays, open_dataset
from edgevae.data.inspect import _pick_clips, contact_sheet, summarize
from edgevae.data.synth import ANOMALY_TYPES, preset_config, synthesize
from edgevae.errors import DatasetError


@pytest.fixture(scope="session")
def small_ds(tmp_path_factory) -> Path:
    config = preset_config(
        "tiny",
        train_videos=2,
        val_videos=1,
        test_videos=3,
        clips_per_video=16,
        segment_frames=(6, 10),
        min_segments_per_type=2,
    )
    return synthesize(tmp_path_factory.mktemp("inspect") / "ds", config)


def test_summary_counts_splits_types_modalities(small_ds):
    s = summarize(small_ds)
    assert (s["generator"], s["preset"], s["seed"], s["label_frames"]) == (
        "edgevae-synth",
        "tiny",
        0,
        8,
    )
    assert s["anomaly_types"] == list(ANOMALY_TYPES)
    assert {n: v["clips"] for n, v in s["splits"].items()} == {"train": 32, "val": 16, "test": 48}
    assert s["splits"]["test"]["videos"] == 3 and s["splits"]["test"]["frames"] == 384
    assert all(v == 0 for v in s["splits"]["train"]["anomalous_frames"].values())
    test = s["splits"]["test"]["anomalous_frames"]
    assert set(test) == set(ANOMALY_TYPES[1:]) and all(v > 0 for v in test.values())
    assert s["splits"]["test"]["anomalous_fraction"] == pytest.approx(
        sum(test.values()) / 384, 1e-3
    )
    mods = {m["name"]: m for m in s["modalities"]}
    assert mods["cam0"] == {
        "name": "cam0",
        "kind": "video",
        "shape": [8, 64, 64],
        "dtype": "uint8",
        "share": "cams",
    }
    assert mods["motion"]["shape"] == [16, 18]
    assert s["normalization"]["cam2"]["rule"] == "x / 255"
    lo, hi = s["normalization"]["audio"]["std_range"]
    assert 0 < lo <= hi


def test_picked_clips_show_each_anomaly_type(small_ds):
    reader = open_dataset(small_ds)
    rows = _pick_clips(reader, "test")
    assert [kind for kind, _ in rows] == list(ANOMALY_TYPES)
    labels = reader.split("test").read([c for _, c in rows])["frame_labels"]
    assert not labels[0].any()  # the normal clip
    for i, kind in enumerate(ANOMALY_TYPES[1:], start=1):
        assert (labels[i] == i).any(), kind


def test_contact_sheet_png(small_ds, tmp_path):
    from PIL import Image

    out = contact_sheet(small_ds, tmp_path / "sheet.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size < 250_000  # docs/img/contact_sheet.png must stay < 200 KB
    with Image.open(out) as img:
        width, height = img.size
        corner = img.convert("RGB").getpixel((1, 1))
    assert width > 900 and height > 7 * 60  # 7 rows: normal + six anomaly types
    assert corner == (255, 255, 255)  # the palette reduction keeps white white


def test_contact_sheet_of_a_non_synth_dataset(tmp_path):
    rng = np.random.default_rng(0)
    splits = {
        "train": {"view0": rng.normal(size=(20, 6)), "imu": rng.normal(size=(20, 10, 3))},
        "test": {"view0": rng.normal(size=(10, 6)), "imu": rng.normal(size=(10, 10, 3))},
    }
    labels = {"train": np.zeros(20, np.uint8), "test": np.array([0] * 5 + [1] * 5, np.uint8)}
    ds = from_arrays(tmp_path / "own", splits, frame_labels=labels)
    summary = summarize(ds)
    assert summary["generator"] is None
    assert summary["splits"]["test"]["anomalous_frames"] == {"anomaly": 5}
    out = contact_sheet(ds, tmp_path / "own.png")
    assert out.stat().st_size > 1000


def test_corrupt_or_missing_dataset_raises(small_ds, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(small_ds, broken)
    shard = broken / "test" / "shard-00000" / "audio.npy"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(DatasetError, match=r"audio\.npy' has .* bytes"):
        summarize(broken)
    with pytest.raises(DatasetError, match="does not exist"):
        contact_sheet(tmp_path / "nope", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_contact_sheet_bad_arguments(small_ds, tmp_path):
    from edgevae.errors import ConfigError

    with pytest.raises(ConfigError, match="frames_per_camera must be a positive integer, got 0"):
        contact_sheet(small_ds, tmp_path / "a.png", frames_per_camera=0)
    with pytest.raises(DatasetError, match=r"has no 'nope' split \(it has: train, val, test\)"):
        contact_sheet(small_ds, tmp_path / "b.png", split="nope", verify="none")
    with pytest.raises(ConfigError, match="is a directory"):
        contact_sheet(small_ds, tmp_path, verify="none")
    assert list(tmp_path.iterdir()) == []


def test_contact_sheet_of_the_validation_split_has_only_a_normal_row(small_ds):
    reader = open_dataset(small_ds)
    rows = _pick_clips(reader, "val")
    assert [kind for kind, _ in rows] == ["normal"]
