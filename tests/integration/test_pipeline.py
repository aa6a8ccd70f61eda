"""`edgevae pipeline --quick` end to end, as CI runs it (about 2-3 minutes on 2 cores)."""

import json

import pytest

from tests.cli_util import invoke


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    return tmp_path_factory.mktemp("pipeline") / "run"


def test_quick_pipeline_writes_the_report_and_resumes(capsys, quick_run):
    res = invoke(capsys, "pipeline", "--out", quick_run, "--quick", "--threads", "1", "--quiet")
    assert res.code == 0, res.err
    report = (quick_run / "report.md").read_text()
    for heading in (
        "## Anomaly detection and imputation",
        "## Quantization accuracy gate",
        "## Benchmarks",
        "## Not run on this machine",
    ):
        assert heading in report
    # every stage recorded; every artifact the report names exists
    stages = {p.stem for p in (quick_run / "stages").glob("*.json")}
    assert stages == {"data", "train", "eval", "export", "quantize", "bench", "report"}
    for name in (
        "analyze.onnx",
        "analyze.fp16.onnx",
        "analyze.int8.trt.onnx",
        "analyze.int8.cpu.onnx",
    ):
        assert (quick_run / "export" / name).is_file(), name
    gates = json.loads((quick_run / "export" / "gates.json").read_text())["results"]
    verdicts = [a["verdict"] for r in gates for a in r["artifacts"]]
    assert len(verdicts) == 9  # (fp16, int8 trt, int8 cpu) x (analyze, encode, decode)
    assert set(verdicts) <= {"passed", "failed", "error"}
    bench = json.loads((quick_run / "bench" / "bench.json").read_text())
    backends = {r["backend"] for r in bench["results"]}
    assert backends == {"torch", "ort"}
    assert all(r["status"] != "failed" for r in bench["results"])
    assert "AUROC" in report and "latency.png" in report
    assert "done" in res.out and "report.md" in res.out

    # second call: every stage is current and skipped, the report is rewritten from the same data
    res = invoke(capsys, "pipeline", "--out", quick_run, "--quick", "--threads", "1", "--quiet")
    assert res.code == 0, res.err
    assert res.err.count("up to date, skipped") == 7
