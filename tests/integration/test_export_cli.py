"""``edgevae export`` at the command line: progress and result lines, the JSON summary, the next
commands, and every bad input as one ``error:`` line with exit code 2 and nothing written.

The CLI is a skin: these tests use an untrained tiny run written with the trainer's own checkpoint
functions plus identity score statistics (well under a second); ``tests/unit/test_export.py``
checks a trained run's graphs.
"""

import json
import re
import shutil

import onnx
import pytest

from edgevae.export.tolerances import TABLE
from edgevae.parity import Tolerance
from tests.cli_util import invoke

NAMES = ["cam0", "cam1", "audio", "motion"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """An untrained tiny run whose model.json holds (identity) score statistics."""
    from edgevae.model.scoring import ScoreStats
    from tests.bench_util import make_run_dir

    run, _ = make_run_dir(tmp_path_factory.mktemp("export-cli"))
    meta = json.loads((run / "model.json").read_text())
    meta["score_stats"] = ScoreStats.identity(NAMES).to_dict()
    (run / "model.json").write_text(json.dumps(meta))
    return run


@pytest.fixture
def run(finished_run, tmp_path):
    """A private copy (tests may corrupt it or write RUN/export)."""
    return shutil.copytree(finished_run, tmp_path / "run")


def test_export_prints_stages_results_and_next_commands(capsys, run, tmp_path):
    summary = tmp_path / "summary.json"
    r = invoke(capsys, "export", run, "--json", summary)
    assert r.code == 0, r.err
    out_dir = run / "export"  # the default --out
    # progress on stderr: what, where, tool versions, one line per stage
    assert (
        f"edgevae export: {run} -> {out_dir} (graphs analyze, encode, decode; opset 17; " in r.err
    )
    tools = next(line for line in r.err.splitlines() if line.startswith("tools: "))
    for tool in ("edgevae", "torch", "onnx", "onnxruntime"):
        assert f"{tool} " in tools
    for graph in ("analyze", "encode", "decode"):
        assert f"{graph}: torch.onnx.export (opset 17, batch dynamic)" in r.err
        assert f"{graph}: onnx.checker (full check)" in r.err
    assert "analyze: parity vs PyTorch through onnxruntime (10 cases)" in r.err
    assert "decode: parity vs PyTorch through onnxruntime (3 cases)" in r.err
    # one result line per artifact on stdout
    lines = r.out.splitlines()
    for graph, cases in (("analyze", 10), ("encode", 10), ("decode", 3)):
        line = next(x for x in lines if x.startswith(str(out_dir / f"{graph}.onnx")))
        assert " KB  " in line and " s (export " in line
        assert f"parity passed over {cases} cases: worst max-abs " in line
        assert "min SQNR " in line and "of the tolerance used" in line
    assert f"wrote {out_dir}: analyze.onnx, encode.onnx, decode.onnx" in r.out
    assert f"edgevae quantize {out_dir} --precision fp16" in r.out
    assert f"edgevae quantize {out_dir} --precision int8 --target cpu" in r.out
    assert f"edgevae bench {run} {out_dir / 'analyze.onnx'} --batch 1,8" in r.out
    assert f"summary: {summary}" in r.out
    doc = json.loads(summary.read_text())
    assert doc["out"] == str(out_dir) and doc["config"]["batch"] == "dynamic"
    assert [a["graph"] for a in doc["artifacts"]] == ["analyze", "encode", "decode"]
    for a in doc["artifacts"]:
        path = out_dir / f"{a['graph']}.onnx"
        assert a["path"] == str(path) and a["bytes"] == path.stat().st_size
        assert a["parity"]["passed"] and a["parity"]["summary"]["comparisons"] > 0
    assert doc["artifacts"][0]["outputs"][-2:] == ["score", "score_parts"]
    assert doc["next"][0] == f"edgevae quantize {out_dir} --precision fp16"
    assert {"edgevae", "torch", "onnx", "onnxruntime"} <= set(doc["tool_versions"])


def test_quiet_json_to_stdout_with_fixed_batch(capsys, run, tmp_path):
    out = tmp_path / "fixed"
    r = invoke(
        capsys, "export", run, "--out", out, "--graphs", "decode", "--batch", "4", "--json", "-",
        "--quiet",
    )  # fmt: skip
    assert r.code == 0, r.err
    doc = json.loads(r.out)  # stdout holds only the JSON; the result lines went to stderr
    assert doc["config"]["batch"] == 4 and doc["config"]["graphs"] == ["decode"]
    assert "torch.onnx.export" not in r.err and "parity passed over 2 cases" in r.err
    assert "edgevae bench " + str(out / "decode.onnx") + " --batch 1,8" in r.err
    model = onnx.load(str(out / "decode.onnx"))
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [4, 4]
    assert sorted(p.name for p in out.iterdir()) == [
        "decode.onnx", "decode.onnx.manifest.json", "score_stats.json",
    ]  # fmt: skip


def test_existing_export_needs_overwrite(capsys, run, tmp_path):
    out = tmp_path / "onnx"
    assert invoke(capsys, "export", run, "--out", out, "--graphs", "decode", "--quiet").code == 0
    before = (out / "decode.onnx.manifest.json").read_bytes()
    r = invoke(capsys, "export", run, "--out", out, "--graphs", "encode,decode", "--quiet")
    assert r.code == 2
    assert r.err.strip() == (
        f"error: '{out}' already holds decode.onnx; pass --overwrite to replace them or choose "
        "another --out."
    )
    assert (out / "decode.onnx.manifest.json").read_bytes() == before
    assert not (out / "encode.onnx").exists()
    r = invoke(capsys, "export", run, "--out", out, "--graphs", "decode", "--overwrite", "--quiet")
    assert r.code == 0, r.err


def test_failed_parity_is_one_error_line_and_writes_nothing(capsys, run, tmp_path, monkeypatch):
    for key in [k for k in TABLE if k[:3] == ("torch", "ort", "fp32")]:
        monkeypatch.setitem(TABLE, key, Tolerance(atol=0.0, rtol=0.0, min_sqnr_db=400.0))
    out = tmp_path / "onnx"
    r = invoke(capsys, "export", run, "--out", out, "--graphs", "decode", "--quiet")
    assert r.code == 2
    (line,) = r.err.strip().splitlines()
    assert line.startswith("error: parity check failed for decode.onnx (decode: torch -> ort fp32)")
    assert "nothing was written" in line and "Traceback" not in r.err
    assert not out.exists()


def _corrupt_weights(run):
    (run / "model.safetensors").write_bytes(b"\x00" * 12)


def _bump_version(run):
    meta = json.loads((run / "model.json").read_text())
    meta["format_version"] = 99
    (run / "model.json").write_text(json.dumps(meta))


def _unfinish(run):
    meta = json.loads((run / "model.json").read_text())
    meta["score_stats"], meta["status"] = None, "training"  # as a run killed mid-training
    (run / "model.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (_corrupt_weights, r"cannot read '.*model\.safetensors' \(.*\); the file is truncated or "
         r"corrupt\. Restore it or retrain\."),
        (_bump_version, r"has checkpoint format version 99 .*reads version 1\. Retrain, or load "
         r"it with the edgevae version that wrote it\."),
        (_unfinish, r"run '.*run' has no score statistics \(its training did not finish\); finish "
         r"it with `edgevae train --resume --out .*run --data \.\.\.` before exporting\."),
    ],
    ids=["corrupt-weights", "incompatible-version", "unfinished-run"],
)  # fmt: skip
def test_bad_runs(capsys, run, damage, expected):
    damage(run)
    r = invoke(capsys, "export", run, "--quiet")
    assert r.code == 2
    (line,) = r.err.strip().splitlines()
    assert line.startswith("error: ")
    assert re.search(expected, line), line
    assert not (run / "export").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--opset", "12"],
         "error: opset must be an integer in [17, 21], got 12; the default is 17."),
        (["--opset", "abc"], "Invalid value for '--opset'"),
        (["--graphs", "analyse"],
         "error: unknown graph 'analyse'. Did you mean 'analyze'? Valid values: analyze, encode, "
         "decode."),
        (["--graphs", ","], "error: no graphs to export; pick from analyze, encode, decode."),
        (["--batch", "0"], "error: batch must be 'dynamic' or a positive integer, got '0'."),
        (["--batch", "-3"], "error: batch must be 'dynamic' or a positive integer, got '-3'."),
        (["--batch", "dynamc"],
         "error: batch must be 'dynamic' or a positive integer, got 'dynamc'."),
    ],
    ids=["opset-range", "opset-type", "graph-typo", "no-graph", "batch-0", "batch-neg",
         "batch-typo"],
)  # fmt: skip
def test_bad_options(capsys, run, tmp_path, args, expected):
    r = invoke(capsys, "export", run, "--out", tmp_path / "onnx", *args)
    assert r.code == 2
    assert expected in r.err and "Traceback" not in r.err
    assert not (tmp_path / "onnx").exists()


def test_missing_run_dir_out_is_a_file_and_json_is_a_dir(capsys, run, tmp_path):
    r = invoke(capsys, "export", tmp_path / "nope", "--quiet")
    assert r.code == 2
    assert r.err.strip() == (
        f"error: run directory '{tmp_path / 'nope'}' does not exist; train one with "
        f"`edgevae train --out {tmp_path / 'nope'}`."
    )
    (tmp_path / "file").write_text("x")
    r = invoke(capsys, "export", run, "--out", tmp_path / "file", "--quiet")
    assert r.code == 2
    assert r.err.strip() == f"error: --out '{tmp_path / 'file'}' is a file; choose a directory."
    r = invoke(capsys, "export", run, "--json", tmp_path, "--quiet")
    assert r.code == 2
    assert r.err.strip() == (
        f"error: --json '{tmp_path}' is a directory; give a file name like export.json."
    )
    assert not (run / "export").exists()
