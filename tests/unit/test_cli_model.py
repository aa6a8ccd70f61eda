"""`edgevae model summary` through the CLI, the way a user runs it."""

import json

import numpy as np

from tests.cli_util import invoke


def test_summary_prints_a_table_of_modules(capsys):
    r = invoke(capsys, "model", "summary", "--preset", "nano")
    assert r.code == 0, r.err
    for text in ("encoders.cams", "decoders.audio", "encoders.motion", "MACs / sample", "total"):
        assert text in r.out
    assert "cam0, cam1, cam2" in r.out


def test_summary_json_of_a_baseline(capsys):
    r = invoke(capsys, "model", "summary", "--preset", "small", "--kind", "unimodal", "--json")
    assert r.code == 0, r.err
    d = json.loads(r.out)
    assert d["kind"] == "unimodal" and d["preset"] == "small"
    assert d["extra"]["active"] == [True, True, True, False, False]
    assert {row["name"] for row in d["rows"]} == {"encoders.cams", "decoders.cams"}
    assert d["params"] <= 5_000_000 and d["macs"] == d["encode_macs"] + d["decode_macs"]


def test_summary_bad_preset_suggests_the_closest(capsys):
    r = invoke(capsys, "model", "summary", "--preset", "nanoo")
    assert r.code == 2
    assert "unknown preset 'nanoo'. Did you mean 'nano'?" in r.err
    assert "Traceback" not in r.err


def test_summary_bad_kind(capsys):
    r = invoke(capsys, "model", "summary", "--kind", "concat")
    assert r.code == 2
    assert "Did you mean 'concat-ae'?" in r.err


def test_summary_uses_the_modalities_of_a_dataset(capsys, tmp_path):
    from edgevae.data.arrays import from_arrays

    rng = np.random.default_rng(0)
    train = {
        "front": rng.integers(0, 255, (4, 4, 16, 16), dtype=np.uint8),
        "imu": rng.normal(size=(4, 8, 6)).astype(np.float32),
    }
    data = from_arrays(tmp_path / "ds", {"train": train})
    r = invoke(capsys, "model", "summary", "--data", str(data), "--json", "--latent-dim", "8")
    assert r.code == 0, r.err
    d = json.loads(r.out)
    assert d["extra"]["modalities"] == ["front", "imu"] and d["latent_dim"] == 8
    assert {row["name"] for row in d["rows"]} >= {"encoders.front", "decoders.imu"}


def test_summary_missing_dataset_is_a_clear_error(capsys, tmp_path):
    r = invoke(capsys, "model", "summary", "--data", str(tmp_path / "nope"))
    assert r.code == 2
    assert "does not exist" in r.err
