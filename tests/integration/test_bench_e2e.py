"""A tiny end-to-end ``edgevae bench`` through the CLI (seconds per run: tiny durations)."""

import json

import pytest

from edgevae.bench.plan import check_batch
from edgevae.bench.report import SCHEMA, result_problems
from edgevae.errors import ConfigError, EngineMismatchError
from tests.bench_util import export_tiny
from tests.cli_util import invoke

FAST = ["--warmup", "0.05", "--warmup-iters", "2", "--duration", "0.2", "--min-iters", "5",
        "--round", "0.05", "--idle", "0", "--no-peak", "--threads", "1", "--accuracy-samples", "8",
        "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("bench") / "tiny.onnx")


def test_bench_writes_json_md_plot_and_log(capsys, tiny, tmp_path):
    out = tmp_path / "out"
    r = invoke(capsys, "bench", tiny, "--backend", "ort,pipeline", "--batch", "1,2", *FAST,
               "--json", out / "r.json", "--md", out / "r.md", "--plot", out / "p.png")  # fmt: skip
    assert r.code == 0, r.err
    text = (out / "r.json").read_text()
    assert "Infinity" not in text and "NaN" not in text  # strict JSON
    doc = json.loads(text)
    assert result_problems(doc) == []
    assert doc["schema"] == SCHEMA
    rows = doc["results"]
    assert [(x["backend"], x["batch"]) for x in rows] == [
        ("ort", 1), ("ort", 2), ("pipeline", 1), ("pipeline", 2)
    ]  # fmt: skip
    for row in rows:
        lat = row["latency_ms"]
        assert row["status"] == "ok" and lat["n"] >= 5
        assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        assert len(row["samples_ms"]) == lat["n"]
        assert row["compute"]["macs_per_sample"] == 6192  # conv 4608 + linear 1072 + 512
        assert row["baseline_id"] == ("c0" if row["batch"] == 1 else "c1")
    assert set(rows[2]["stages_ms"]) == {"pre", "infer", "post"}
    assert rows[2]["scope"] == "pipeline" and rows[0]["scope"] == "host_e2e"
    assert rows[2]["normalization"] == "artifact"  # from the sidecar manifest
    assert rows[2]["ratio"]["p50"] > 0
    assert rows[0]["accuracy"]["is_reference"] and rows[0]["accuracy"]["score_identical"]
    assert doc["projection"]["kind"] == "estimate"
    assert all("latency_ms" not in r for r in doc["projection"]["rows"])  # never mixed
    assert doc["environment"]["cpu"]["logical_cpus"] >= 1
    md = (out / "r.md").read_text()
    assert "| ✅ | tiny.onnx [fp32] | ort | 1 |" in md
    assert "❎ ran, but failed" in md and "Jetson projection (estimate, not measured)" in md
    assert "Pipeline stages" in md
    assert "AUROC here is clip level" not in md  # no --data, no AUROC, no note
    assert (out / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log = out / "bench-log.jsonl"
    assert len(log.read_text().splitlines()) == 1
    assert "samples_ms" not in log.read_text()
    assert "✅" in r.out and "json:" in r.out


def test_a_different_model_fails_the_accuracy_check_but_still_runs(capsys, tiny, tmp_path):
    other = export_tiny(tmp_path / "other.onnx", score_scale=2.0)  # a deliberately wrong score
    r = invoke(capsys, "bench", tiny, other, *FAST, "--json", tmp_path / "r.json",
               "--log", tmp_path / "log.jsonl", "--no-projection")  # fmt: skip
    assert r.code == 0, r.err
    doc = json.loads((tmp_path / "r.json").read_text())
    base, cand = doc["results"]
    assert base["status"] == "ok" and cand["status"] == "accuracy_failed"
    assert cand["accuracy"]["score_sqnr_db"] < 20
    assert cand["ratio"]["p50"] > 0 and cand["baseline_id"] == base["id"]
    assert doc["projection"] is None
    assert "❎" in r.out


def test_run_dir_on_torch_vs_its_onnx_with_data_and_auroc(capsys, tmp_path):
    from tests.bench_util import export_run, make_run_dir

    run, data = make_run_dir(tmp_path)
    onnx = export_run(run, tmp_path / "analyze.onnx")
    r = invoke(
        capsys, "bench", run, onnx, "--data", data, *FAST, "--accuracy-samples", "16",
        "--json", tmp_path / "r.json", "--md", tmp_path / "r.md",
    )  # fmt: skip
    assert r.code == 0, r.err
    doc = json.loads((tmp_path / "r.json").read_text())
    # the AUROC column is clip level; the markdown says so, so nobody reads it as eval's frame AUROC
    assert "AUROC here is clip level" in (tmp_path / "r.md").read_text()
    torch_row, ort_row = doc["results"]
    assert (torch_row["backend"], ort_row["backend"]) == ("torch", "ort")
    assert doc["baseline"] == str(run) and doc["data"]["split"] == "test"
    assert ort_row["accuracy"]["auroc"] is not None
    assert abs(ort_row["accuracy"]["auroc_drop"]) < 1e-6
    assert ort_row["accuracy"]["score_sqnr_db"] > 40
    assert torch_row["compute"]["macs_per_sample"] == ort_row["compute"]["macs_per_sample"]


def test_missing_artifact_is_one_line_exit_2(capsys, tmp_path):
    r = invoke(capsys, "bench", tmp_path / "nope.onnx", *FAST)
    assert r.code == 2
    assert (
        r.err.strip()
        == f"error: artifact '{tmp_path / 'nope.onnx'}' does not exist; check the path."
    )


def test_artifact_for_another_backend(capsys, tiny):
    r = invoke(capsys, "bench", tiny, "--backend", "torch", *FAST)
    assert r.code == 2
    assert "backend 'torch' cannot run 'tiny.onnx'" in r.err and "--backend ort" in r.err
    assert len(r.err.strip().splitlines()) == 1


def test_batch_outside_an_engine_profile_is_refused_before_tensorrt_loads(capsys, tmp_path):
    engine = tmp_path / "analyze.fp16.plan"
    engine.write_bytes(b"\0")
    profiles = {"cam0": {"min": [1, 2, 8, 8], "opt": [4, 2, 8, 8], "max": [8, 2, 8, 8]}}
    (tmp_path / "analyze.fp16.plan.manifest.json").write_text(
        json.dumps({"kind": "tensorrt-engine", "details": {"profiles": profiles}})
    )
    r = invoke(capsys, "bench", engine, "--batch", "1,16", *FAST)
    assert r.code == 2
    assert "batch 16 is outside the optimization profile" in r.err and "(batch 1..8)" in r.err


def test_profile_check_logic():
    check_batch(8, (1, 8), "m.plan", engine=True)
    check_batch(64, (1, None), "m.onnx")
    with pytest.raises(EngineMismatchError, match="outside the optimization profile"):
        check_batch(9, (1, 8), "m.plan", engine=True)
    with pytest.raises(EngineMismatchError, match="outside"):
        check_batch(1, (2, 8), "m.plan", engine=True)
    with pytest.raises(ConfigError, match="fixed batch of 2"):
        check_batch(4, (2, 2), "m.onnx")


def test_fixed_batch_onnx(capsys, tmp_path):
    static = export_tiny(tmp_path / "static.onnx", dynamic=False)
    r = invoke(capsys, "bench", static, "--batch", "4", *FAST)
    assert r.code == 2
    assert "has a fixed batch of 2" in r.err and "--batch dynamic" in r.err


def test_data_whose_modalities_do_not_match(capsys, tiny, tmp_path):
    from tests.train_util import make_tiny_dataset

    data = make_tiny_dataset(tmp_path / "data")
    r = invoke(capsys, "bench", tiny, "--data", data, *FAST)
    assert r.code == 2
    assert "modalities" in r.err and "do not match the inputs of" in r.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch", "1,x"], "--batch takes comma-separated positive integers"),
        (["--batch", "0"], "--batch takes comma-separated positive integers"),
        (["--backend", "onnxruntime"], "unknown backend 'onnxruntime'"),
        (["--device", "gpu"], "unknown device 'gpu'"),
        (["--plot", "p.png", "--plot-kind", "violin"], "unknown plot kind 'violin'"),
        (["--power", "ina"], "unknown power source 'ina'"),
        (["--min-iters", "0"], "min_iters must be >= 1"),
        (["--ort-opt", "max"], "unknown graph optimization level 'max'"),
    ],
)
def test_bad_options_exit_2_with_one_line(capsys, tiny, args, message):
    r = invoke(capsys, "bench", tiny, *FAST, *args)
    assert r.code == 2
    assert message in r.err
    assert len(r.err.strip().splitlines()) == 1


def test_help(capsys):
    r = invoke(capsys, "bench", "--help")
    assert r.code == 0
    assert "--baseline" in r.out and "--plot" in r.out


def test_power_is_sampled_during_the_timed_window(monkeypatch, tiny):
    """With a (fake) INA3221 source the rows carry W, idle-subtracted W and mJ per inference."""
    import edgevae.bench.power as power
    from edgevae.bench.driver import BenchConfig, benchmark

    class ConstantBoard:
        name = "ina3221"

        def read(self):
            return {"VDD_IN": 6000.0, "VDD_CPU_GPU_CV": 2000.0, "VDD_SOC": 1000.0}

    monkeypatch.setattr(power, "open_source", lambda kind="auto", root="/": ConstantBoard())
    cfg = BenchConfig(warmup_s=0.05, warmup_iters=2, duration_s=0.3, min_iters=5, round_s=0.1,
                      idle_s=0.2, matmul_peak=False, projection=False, accuracy=False)  # fmt: skip
    [row] = benchmark([str(tiny)], cfg).rows
    p = row["power"]
    assert p["rails"] == ["VDD_IN"] and p["source"] == "ina3221"
    assert p["mean_w"] == pytest.approx(6.0) and p["idle_w"] == pytest.approx(6.0)
    assert p["delta_w"] == pytest.approx(0.0, abs=1e-9)
    n = row["latency_ms"]["n"]
    assert p["mj_per_inference"] == pytest.approx(6.0 * sum(row["samples_ms"]) / n, rel=0.5)
    assert p["samples"] >= 3
