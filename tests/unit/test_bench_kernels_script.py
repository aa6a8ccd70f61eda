"""The GPU kernel benchmark script's pure parts (statistics, bytes models, arguments) and its
refusal to run without a GPU. The timed runs themselves need a GPU (benchmarks/kernels/)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "kernels" / "bench_kernels.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_kernels", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nearest_rank_percentiles(bench):
    samples = [float(v) for v in range(1, 101)]
    assert bench.nearest_rank(samples, 50) == 50.0
    assert bench.nearest_rank(samples, 90) == 90.0
    assert bench.nearest_rank(samples, 99.5) == 100.0
    assert bench.nearest_rank([3.0], 50) == 3.0
    s = bench.summarize([5.0, 1.0, 3.0])
    assert (s["n"], s["min"], s["p50"], s["max"]) == (3, 1.0, 3.0, 5.0)


def test_bytes_models(bench):
    assert bench.poe_bytes(1, 5, 32) == 4 * (2 * 160 + 5 + 64 + 1 + 5)
    assert bench.score_bytes(2, [10, 20]) == 4 * (2 * 2 * 30 + 2 * 2 * 2 + 2 + 2 * 2 * 4 + 2)
    same = bench.preprocess_bytes(1, 1, 1, (64, 64), 1, (64, 64), 1)
    assert same["sectors"] == same["nominal"] == 64 * 64 + 64 * 64 * 4  # identity reads all
    big = bench.preprocess_bytes(1, 3, 8, (720, 1280), 3, (64, 64), 1)
    assert big["sectors"] < big["nominal"] / 5  # a strong downscale touches few sectors


def test_arguments(bench):
    args = bench.parse_args(["--quick", "--pipeline-frame", "320x240", "--batches", "1", "8"])
    assert args.pipeline_frame == (240, 320)
    assert args.batches == [1, 8]
    assert args.min_count == 20


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusal")
def test_refuses_to_run_without_a_gpu(bench, capsys):
    assert bench.main(["--quick"]) == 2
    assert "only runs on a GPU" in capsys.readouterr().err
