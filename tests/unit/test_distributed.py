"""Data-parallel building blocks without processes: checks, samplers, the launcher's bad input,
bounded-memory reading of shards, and synth output independent of the worker count."""

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from edgevae.errors import ConfigError
from edgevae.train.distributed import (
    Dist,
    LaunchInfo,
    check_nproc,
    child_environment,
    local_batch,
    rank_device,
    resolve_backend,
    step_seed,
    torchrun_command,
)
from edgevae.train.sampling import SeededEpochSampler, ShardSampler, distributed_factory
from tests.cli_util import invoke
from tests.train_util import make_tiny_dataset

CPU = torch.device("cpu")


# -- launch environment and checks ----------------------------------------------------------------
def test_launch_info_from_torchrun_variables():
    assert LaunchInfo.from_env({}) == LaunchInfo(0, 1, 0)
    info = LaunchInfo.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (info.rank, info.world_size, info.local_rank, info.distributed) == (3, 4, 1, True)
    with pytest.raises(ConfigError, match="not integers"):
        LaunchInfo.from_env({"RANK": "x", "WORLD_SIZE": "2"})
    with pytest.raises(ConfigError, match="inconsistent torchrun environment"):
        LaunchInfo.from_env({"RANK": "2", "WORLD_SIZE": "2"})


def test_global_batch_must_divide_over_the_processes():
    assert local_batch(16, 2) == 8 and local_batch(7, 1) == 7
    with pytest.raises(ConfigError) as err:
        local_batch(15, 2)
    msg = str(err.value)
    assert "global batch size 15 does not divide evenly over 2 processes" in msg
    assert "--batch-size 14 (7 per process) or --batch-size 16 (8 per process)" in msg
    with pytest.raises(ConfigError, match=r"use --batch-size 4 \(1 per process\)"):
        local_batch(2, 4)  # no smaller multiple: only the larger fix is offered


def test_nproc_backend_and_device_checks():
    assert check_nproc(1) == 1
    for bad in (0, -2, True):
        with pytest.raises(ConfigError, match="--nproc must be a positive number"):
            check_nproc(bad)
    assert resolve_backend("auto", CPU) == "gloo" and resolve_backend("gloo", CPU) == "gloo"
    with pytest.raises(ConfigError, match=r"'nccl' needs CUDA GPUs .* use --backend gloo"):
        resolve_backend("nccl", CPU)
    two = LaunchInfo(0, 2, 0)
    with pytest.raises(ConfigError, match="would put all 2 processes on one GPU"):
        rank_device("cuda:1", two)
    assert rank_device("cpu", two) == CPU
    if not torch.cuda.is_available():
        assert rank_device("auto", two) == CPU


def test_step_seeds_differ_per_step_and_rank_and_repeat():
    seeds = {(s, r): step_seed(5, s, r) for s in range(50) for r in range(4)}
    assert len(set(seeds.values())) == len(seeds)
    assert step_seed(5, 7, 1) == seeds[(7, 1)] and 0 <= seeds[(7, 1)] < 2**63
    assert step_seed(6, 7, 1) != seeds[(7, 1)]


def test_single_process_context_is_a_pass_through():
    d = Dist(LaunchInfo(), CPU)
    assert d.all_sum([1.5, 2]) == [1.5, 2.0] and d.any(True) and not d.any(False)
    assert d.mean_parts({"total": 3.0}) == {"total": 3.0}
    assert d.on_main(lambda: 42) == 42
    module = torch.nn.Linear(2, 2)
    assert d.wrap(module) is module
    assert d.describe() == {"world_size": 1, "backend": None}


def test_launcher_command_and_thread_share():
    cmd = torchrun_command(2, ["--data", "d"])
    assert cmd[1:] == [
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "edgevae",
        "train",
        "--data",
        "d",
    ]
    assert child_environment(2, {})["OMP_NUM_THREADS"] == str(max(1, (os.cpu_count() or 1) // 2))
    assert child_environment(2, {"OMP_NUM_THREADS": "3"})["OMP_NUM_THREADS"] == "3"


# -- samplers: N ranks with B/N see one process's batches of B -----------------------------------
@pytest.mark.parametrize("n", [48, 51, 63])
def test_ranks_together_see_the_single_process_batches(n):
    data, b_global, world = list(range(n)), 16, 2
    single = SeededEpochSampler(data, seed=9)
    ranks = [distributed_factory(r, world)(data, 9) for r in range(world)]
    for epoch in (0, 2):
        single.set_epoch(epoch)
        for s in ranks:
            s.set_epoch(epoch)
        order = list(single)
        local = [list(s) for s in ranks]
        steps = len(local[0]) // (b_global // world)
        assert steps == n // b_global  # same number of optimiser steps
        for k in range(steps):
            b = b_global // world
            together = sorted(x for lst in local for x in lst[k * b : (k + 1) * b])
            assert together == sorted(order[k * b_global : (k + 1) * b_global])


def test_shard_sampler_splits_without_padding():
    shares = [list(ShardSampler(10, r, 3)) for r in range(3)]
    assert shares == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert len(ShardSampler(10, 1, 3)) == 3 and list(ShardSampler(4)) == [0, 1, 2, 3]


# -- CLI bad input: one line, exit code 2, nothing launched ----------------------------------------
@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("dist-cli") / "ds")


def _error(r, *fragments):
    assert r.code == 2, (r.code, r.out, r.err)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--nproc", "0"], ["--nproc must be a positive number of processes, got 0"]),
        (
            ["--nproc", "2", "--batch-size", "15"],
            ["does not divide evenly over 2 processes", "--batch-size 14 (7 per process)"],
        ),
        (["--nproc", "2", "--backend", "nccl"], ["'nccl' needs CUDA GPUs", "--backend gloo"]),
        (["--backend", "nccl"], ["'nccl' needs CUDA GPUs"]),
        (["--backend", "glo"], ["unknown distributed backend 'glo'", "Did you mean 'gloo'"]),
        (["--nproc", "2", "--device", "cuda:0"], ["would put all 2 processes on one GPU"]),
    ],
)
def test_bad_distributed_options(capsys, ds, tmp_path, extra, fragments):
    out = tmp_path / "run"
    r = invoke(capsys, "train", "--data", ds, "--out", out, "--device", "cpu", *extra)
    _error(r, *fragments)
    assert not out.exists()  # nothing was written or launched


def test_nproc_inside_torchrun_is_refused(capsys, ds, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    r = invoke(capsys, "train", "--data", ds, "--out", tmp_path / "r", "--nproc", "2")
    _error(r, "already runs under torchrun", "drop --nproc")


# -- larger-than-memory reading --------------------------------------------------------------------
def _rss_file_kib() -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"RssFile:\s+(\d+)", status).group(1))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_reading_releases_mapped_pages_and_bounds_open_shards(tmp_path):
    from edgevae.data.format import DatasetWriter, open_dataset
    from edgevae.modalities import ModalitySet, ModalitySpec

    n = 256  # 256 clips x 64 KiB = 16 MiB of video, in 32 shards
    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, (n, 4, 128, 128), dtype=np.uint8)
    specs = ModalitySet([ModalitySpec("cam", "video", (4, 128, 128), dtype="uint8")])
    with DatasetWriter(tmp_path / "ds", specs, shard_clips=8) as writer:
        writer.add("train", {"cam": video})
    path = writer.out
    order = rng.permutation(n)

    def read_all(release: bool) -> tuple[int, np.ndarray]:
        split = open_dataset(path, verify="none").split("train")
        split.release_pages, split.max_open_shards = release, 4
        split.resident_budget = 1 << 20  # release whenever mapped pages grew by 1 MiB
        split.read(order[:4])  # warm-up: first-use allocations are not the dataset
        before = _rss_file_kib()
        got = np.concatenate([split.read(order[i : i + 16])["cam"] for i in range(0, n, 16)])
        assert len(split._open) <= 4
        return _rss_file_kib() - before, got

    grown_released, got = read_all(release=True)
    assert np.array_equal(got, video[order])
    _, got_kept = read_all(release=False)
    assert np.array_equal(got_kept, got)
    # released: at most the 1 MiB budget + one read's pages stay mapped
    assert grown_released < 3 * 1024, grown_released
    split = open_dataset(path, verify="none").split("train")
    split.release_pages, split.max_open_shards = False, 64
    before = _rss_file_kib()
    split.read(order)
    assert _rss_file_kib() - before > 12 * 1024  # without either bound RSS grows with the data


def test_synth_bytes_do_not_depend_on_the_worker_count(tmp_path):
    from edgevae.data.synth import preset_config, synthesize

    cfg = preset_config(
        "tiny",
        train_videos=3,
        val_videos=1,
        test_videos=3,
        clips_per_video=8,
        segment_frames=(4, 6),
        min_segments_per_type=1,
        shard_clips=7,  # shards straddle videos: the writer's order matters
        image_size=16,
        cameras=2,
    )

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    one = files(synthesize(tmp_path / "w1", cfg, workers=1))
    three = files(synthesize(tmp_path / "w3", cfg, workers=3))
    assert one == three and "train/shard-00003/cam0.npy" in one


def test_synth_cli_rejects_negative_workers(capsys, tmp_path):
    r = invoke(
        capsys, "data", "synth", "--out", tmp_path / "d", "--preset", "tiny", "--workers", "-1"
    )
    _error(r, "workers must be 0 (automatic) or a positive integer")
    assert not (tmp_path / "d").exists()
