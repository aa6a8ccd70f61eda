"""``edgevae data synth`` and ``edgevae data inspect`` through the CLI, bad input included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgevae.data import open_dataset
from tests.cli_util import invoke

# 2 train, 1 val, 2 test videos of 32 clips, 4 cameras: about a second to generate.
SMALL = ("--preset", "tiny", "--videos", "5", "--clips-per-video", "32", "--workers", "1")


@pytest.fixture(scope="module")
def cli_ds(tmp_path_factory) -> Path:
    from edgevae.cli import run  # capsys is function-scoped: call the CLI directly here

    out = tmp_path_factory.mktemp("cli") / "ds"
    assert run(["data", "synth", "--out", str(out), *SMALL, "--cameras", "4", "--seed", "2"]) == 0
    return out


def _one_line_error(r) -> str:
    assert r.code == 2, (r.out, r.err)
    assert "Traceback" not in r.err
    lines = [ln for ln in r.err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_synth_writes_the_requested_dataset(cli_ds):
    reader = open_dataset(cli_ds)
    assert reader.modalities.names == ("cam0", "cam1", "cam2", "cam3", "audio", "motion")
    meta = reader.index["meta"]
    assert (meta["preset"], meta["seed"], meta["config"]["cameras"]) == ("tiny", 2, 4)
    assert sum(reader.index["splits"][s]["videos"] for s in reader.splits) == 5
    assert set(reader.anomalous_frames("test")) == {
        "teleport",
        "speed",
        "intruder",
        "av_desync",
        "camera_fault",
        "sensor_fault",
    }


def test_synth_reports_what_it_wrote(capsys, tmp_path):
    r = invoke(capsys, "data", "synth", "--out", tmp_path / "ds", *SMALL, "--cameras", "1")
    assert r.code == 0, r.err
    assert r.out.startswith(f"wrote {tmp_path / 'ds'}:")
    assert "1 camera(s)" in r.out and "anomalous test frames" in r.out


def test_unknown_preset_suggests_the_closest(capsys, tmp_path):
    line = _one_line_error(invoke(capsys, "data", "synth", "--out", tmp_path, "--preset", "tiyn"))
    assert "unknown preset 'tiyn'. Did you mean 'tiny'?" in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--cameras", "9"), "cameras must be an integer in [1, 8], got 9"),
        (("--videos", "2"), "--videos must be at least 3"),
        (("--clips-per-video", "0"), "clips_per_video must be an integer"),
        (("--workers", "-1"), "workers must be 0 (automatic) or a positive integer"),
        (("--videos", "3", "--clips-per-video", "2"), "raise --clips-per-video or --videos"),
        (("--seed", "-1"), "seed must be an integer in [0, 9223372036854775807], got -1"),
        (("--cameras", "0"), "cameras must be an integer in [1, 8], got 0"),
    ],
)
def test_bad_option_values(capsys, tmp_path, args, message):
    line = _one_line_error(
        invoke(capsys, "data", "synth", "--out", tmp_path / "ds", "--preset", "tiny", *args)
    )
    assert message in line
    assert not (tmp_path / "ds").exists()


def test_non_empty_output_is_refused_then_overwritten(capsys, tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    line = _one_line_error(invoke(capsys, "data", "synth", "--out", out, *SMALL))
    assert "is not empty; pass --overwrite" in line
    assert (out / "notes.txt").read_text() == "mine"
    r = invoke(capsys, "data", "synth", "--out", out, *SMALL, "--overwrite")
    assert r.code == 0, r.err
    assert not (out / "notes.txt").exists() and (out / "index.json").is_file()


def test_inspect_prints_tables(capsys, cli_ds):
    r = invoke(capsys, "data", "inspect", cli_ds)
    assert r.code == 0, r.err
    for text in (
        "splits",
        "train",
        "test",
        "teleport",
        "sensor_fault",
        "cam3",
        "8x64x64",
        "spectrogram",
        "16x18",
        "x / 255",
        "edgevae-synth",
    ):
        assert text in r.out, text


def test_inspect_json_and_plot(capsys, cli_ds, tmp_path):
    png = tmp_path / "sheet.png"
    r = invoke(capsys, "data", "inspect", cli_ds, "--json", "--plot", png)
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    assert summary["splits"]["test"]["anomalous_frames"]["intruder"] > 0
    assert summary["modalities"][4]["name"] == "audio"
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_inspect_bad_inputs(capsys, cli_ds, tmp_path):
    line = _one_line_error(invoke(capsys, "data", "inspect", tmp_path / "missing"))
    assert "does not exist" in line
    line = _one_line_error(invoke(capsys, "data", "inspect", cli_ds, "--verify", "hsah"))
    assert "Did you mean 'hash'?" in line
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(cli_ds, broken)
    (broken / "val" / "shard-00000" / "motion.npy").unlink()
    line = _one_line_error(invoke(capsys, "data", "inspect", broken, "--plot", tmp_path / "s.png"))
    assert "motion.npy' is missing" in line
    assert not (tmp_path / "s.png").exists()
    (broken / "index.json").unlink()
    line = _one_line_error(invoke(capsys, "data", "inspect", broken))
    assert "index.json' is missing" in line


def test_output_that_is_a_file_is_refused(capsys, tmp_path):
    out = tmp_path / "ds"
    out.write_text("mine")
    line = _one_line_error(invoke(capsys, "data", "synth", "--out", out, *SMALL))
    assert "is not empty; pass --overwrite" in line
    assert out.read_text() == "mine"


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_index(path: Path, **changes) -> None:
    index = json.loads(path.read_text())
    index.update(changes)
    path.write_text(json.dumps(index))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda d: _flip_last_byte(d / "train" / "shard-00000" / "cam1.npy"),
            "cam1.npy' does not match its SHA-256 in index.json; the file is corrupt",
        ),
        (lambda d: (d / "index.json").write_text("{oops"), "index.json': Expecting property"),
        (
            lambda d: _edit_index(d / "index.json", format_version=7),
            "has dataset format version 7, this edgevae",
        ),
        (
            lambda d: _edit_index(d / "index.json", format="other"),
            "index.json' is not an edgevae dataset index",
        ),
    ],
)
def test_inspect_damaged_datasets(capsys, cli_ds, tmp_path, damage, message):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(cli_ds, broken)
    damage(broken)
    line = _one_line_error(invoke(capsys, "data", "inspect", broken))
    assert message in line


def test_inspect_plot_path_problems(capsys, cli_ds, tmp_path):
    (tmp_path / "dir").mkdir()
    r = invoke(capsys, "data", "inspect", cli_ds, "--verify", "none", "--plot", tmp_path / "dir")
    line = _one_line_error(r)
    assert "--plot" in line and "is a directory; give a PNG file path" in line
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where the PNG's parent directory should be
    r = invoke(capsys, "data", "inspect", cli_ds, "--verify", "none", "--plot", blocker / "s.png")
    assert "cannot write the contact sheet to" in _one_line_error(r)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file"]
