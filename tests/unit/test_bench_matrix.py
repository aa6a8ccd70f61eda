"""benchmarks/run.py: matrix parsing, expansion and one quick run over a tiny pipeline layout."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def run_py():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_committed_matrix_is_valid_and_expands(run_py, tmp_path):
    matrix = run_py.load_matrix(ROOT / "benchmarks" / "matrix.toml")
    jobs = run_py.expand(matrix, tmp_path, suites=["cpu-analyze"], presets=["nano"])
    [job] = jobs
    assert job.artifacts == [
        str(tmp_path / "nano/train"),
        str(tmp_path / "nano/export/analyze.onnx"),
        str(tmp_path / "nano/export/analyze.fp16.onnx"),
        str(tmp_path / "nano/export/analyze.int8.cpu.onnx"),
    ]
    assert job.config["backends"] == ["torch", "torch-compile", "ort"]
    assert job.config["baseline"] == str(tmp_path / "nano/train")
    assert job.config["duration_s"] == 10.0 and job.config["threads"] == 2
    assert len(job.missing) == 5  # nothing exists in tmp_path
    quick = run_py.expand(matrix, tmp_path, suites=["cpu-analyze"], presets=["nano"], quick=True)
    assert quick[0].config["duration_s"] == 1.0
    from edgevae.bench.driver import BenchConfig

    BenchConfig.from_dict(job.config)  # every field the matrix sets is a real option
    gpu = run_py.expand(matrix, tmp_path, suites=["gpu-tensorrt"])
    assert all(j.skip_reason for j in gpu) or run_py._have("tensorrt")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("schema = 2\n", "expected 1"),
        ('schema = 1\n[artifacts]\na = "x"\n[[suite]]\nname = "s"\nartifacts = ["b"]\n', "'b'"),
        ('schema = 1\n[artifacts]\na = "x"\n[[suite]]\nname = "s"\nartifacts = ["a"]\nbogus = 1\n',
         "unknown keys"),
        ("schema = 1\n", "no \\[\\[suite\\]\\]"),
        ("schema = [", "cannot read matrix"),
    ],
)  # fmt: skip
def test_bad_matrices(run_py, tmp_path, text, match):
    path = tmp_path / "m.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        run_py.load_matrix(path)


def test_unknown_suite_and_missing_files_exit_2(run_py, tmp_path, capsys):
    assert run_py.main(["--runs", str(tmp_path), "--suite", "nope"]) == 2
    assert "unknown suite 'nope'" in capsys.readouterr().err
    assert run_py.main(["--runs", str(tmp_path), "--suite", "cpu-analyze"]) == 2
    assert "edgevae pipeline --out" in capsys.readouterr().err
    assert run_py.main(["--runs", str(tmp_path), "--dry-run"]) == 0
    assert "file(s) missing" in capsys.readouterr().out


def test_quick_run_over_a_tiny_layout(run_py, tmp_path, capsys):
    from tests.bench_util import export_run, make_run_dir

    runs = tmp_path / "runs"
    (runs / "nano").mkdir(parents=True)
    run, data = make_run_dir(runs / "nano" / "work")
    run.rename(runs / "nano" / "train")
    data.rename(runs / "nano" / "data")
    (runs / "nano" / "export").mkdir()
    export_run(runs / "nano" / "train", runs / "nano" / "export" / "analyze.onnx")
    matrix = (ROOT / "benchmarks" / "matrix.toml").read_text()
    quick = (
        "[quick]\nwarmup_s = 0.05\nwarmup_iters = 2\nduration_s = 0.2\nmin_iters = 5\n"
        "round_s = 0.05\naccuracy_samples = 8\nmatmul_peak = false\nidle_s = 0.0\n"
        "max_redos = 0\nthreads = 1\n"
        "[ignored]"  # swallows the committed [quick] keys
    )
    matrix = (
        matrix.replace("[quick]", quick)
        .replace("batches = [1, 8, 32]", "batches = [1, 2]", 1)
        # torch.compile's first traces take seconds each; test_runners covers that backend
        .replace('backends = ["torch", "torch-compile", "ort"]', 'backends = ["torch", "ort"]', 1)
    )
    mpath = tmp_path / "matrix.toml"
    mpath.write_text(matrix)
    out = tmp_path / "results"
    args = ["--runs", str(runs), "--matrix", str(mpath), "--suite", "cpu-analyze"]
    args += ["--preset", "nano", "--quick", "--skip-missing", "--out", str(out)]
    code = run_py.main(args)
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "left out missing" in printed  # fp16 / int8 artifacts do not exist here
    doc = json.loads((out / "cpu-analyze-nano.json").read_text())
    backends = sorted({(r["kind"], r["backend"]) for r in doc["results"]})
    assert backends == [("onnx", "ort"), ("run", "torch")]
    assert (out / "cpu-analyze-nano.md").is_file() and (out / "cpu-analyze-nano.png").is_file()
    assert len((out / "bench-log.jsonl").read_text().splitlines()) == 1
