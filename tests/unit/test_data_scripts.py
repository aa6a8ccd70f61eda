"""The data benchmark script's parts (on a tiny dataset) and the CLI reference generator."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from edgevae.data import from_arrays, open_dataset

ROOT = Path(__file__).resolve().parents[2]


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load(ROOT / "benchmarks" / "data" / "bench_data.py", "bench_data")


@pytest.fixture(scope="module")
def gen():
    return _load(ROOT / "scripts" / "gen_cli_docs.py", "gen_cli_docs")


@pytest.fixture
def small(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    train = {
        "cam": rng.integers(0, 255, (70, 2, 8, 8), dtype=np.uint8),
        "imu": rng.normal(size=(70, 4, 3)),
    }
    return from_arrays(
        tmp_path / "small", {"train": train}, video_ids={"train": np.arange(70) // 10}
    )


def test_replicate_train_writes_the_clips_n_times_with_new_video_ids(bench, small, tmp_path):
    out = bench.replicate_train(small, tmp_path / "x3", 3)
    src, rep = open_dataset(small).split("train"), open_dataset(out).split("train")
    assert len(rep) == 3 * len(src)
    a, b = src.read(np.arange(len(src))), rep.read(np.arange(len(rep)))
    np.testing.assert_array_equal(b["cam"][140:], a["cam"])
    assert len(np.unique(b["video_id"])) == 3 * len(np.unique(a["video_id"]))


def test_loader_measurement_counts_every_sample(bench, small):
    row = bench.bench_loader(small, shuffle=True, passes=2)
    assert row["clips"] == 70 and len(row["samples_per_s_all"]) == 2
    assert row["samples_per_s_median"] > 0 and row["own_cpu_s"] >= 0
    assert len(row["load_1min_before_after"]) == 2


def test_report_states_only_what_the_numbers_say(bench):
    gen_row = {
        "preset": "tiny",
        "clips": 512,
        "seconds": 5.0,
        "dataset_mib": 50.0,
        "own_cpu_s": 5.0,
        "load_1min_before_after": [1.0, 1.5],
        "other_processes_cpu_s": 1.0,
        "other_processes_cores": 0.2,
    }
    mem = {
        "clips": 100,
        "train_mib": 10.0,
        "batches": 2,
        "rss_after_first_batch_mib": 200.0,
        "anon_after_first_batch_mib": 150.0,
        "peak_anon_mib": 160.0,
        "peak_anon_growth_mib": 10.0,
        "peak_file_growth_mib": 0.5,
        "peak_rss_growth_mib": 10.5,
        "rss_at_end_mib": 205.0,
    }
    doc = {
        "command": "python bench_data.py",
        "created_utc": "2026-01-01T00:00:00Z",
        "environment": {
            "cpu": {"model": "cpu", "usable_cpus": 2},
            "memory_mib": 1024,
            "libraries": {"python": "3.11"},
            "git_revision": "abc",
        },
        "torch_threads": 1,
        "uncommitted_changes": ["edgevae/data/format.py"],
        "generation": [
            {**gen_row, "workers": 1, "clips_per_s": 100.0, "clips_per_cpu_s": 102.4},
            {**gen_row, "workers": 2, "clips_per_s": 150.0, "clips_per_cpu_s": 90.0},
        ],
        "loader": [],
        "memory": [{**mem, "scale": 1}, {**mem, "scale": 10, "clips": 1000, "train_mib": 100.0}],
    }
    doc["notes"] = bench._notes(doc)
    md = bench.to_markdown(doc)
    assert "2 workers generated 1.50x the clips/s of 1 worker" in md
    assert "100 -> 1000 clips" in md and "grew by 10.0 vs 10.0 MiB" in md
    assert "shared with other jobs" in md and "`edgevae/data/format.py`" in md
    assert "| 1.0 / 1.5 |" in md


def test_cli_reference_covers_every_command_and_option(gen):
    import typer

    from edgevae.cli import app

    text = gen.render()
    root = typer.main.get_command(app)
    ctx = root.make_context("edgevae", [], resilient_parsing=True)
    for path, command, cmd_ctx in gen._walk(root, ctx, []):
        if path:
            assert f"`edgevae {' '.join(path)}`](#{gen._anchor(path)})" in text
        for param in command.get_params(cmd_ctx):
            record = param.get_help_record(cmd_ctx)
            if record and not record[0].startswith("--help") and not param.hidden:
                assert f"`{gen._cell(record[0])}`" in text, (path, record[0])
    assert "| `--clips-per-video <int>` | option | Consecutive clips cut from each video. |" in text


def test_cli_reference_check_mode(gen, tmp_path, capsys):
    out = tmp_path / "cli.md"
    assert gen.main(["--check", "--out", str(out)]) == 1  # missing counts as stale
    assert gen.main(["--out", str(out)]) == 0
    assert gen.main(["--check", "--out", str(out)]) == 0
    out.write_text(out.read_text() + "edited by hand\n")
    assert gen.main(["--check", "--out", str(out)]) == 1
    assert "out of date" in capsys.readouterr().err
