import pytest

from edgevae.errors import ConfigError, OutputExistsError
from edgevae.pipeline.config import PipelineConfig
from edgevae.pipeline.run import pipeline
from tests.cli_util import invoke


def test_quick_and_default_budgets_differ():
    quick, full = PipelineConfig(quick=True).resolved(), PipelineConfig().resolved()
    assert (quick.data_preset, full.data_preset) == ("tiny", "default")
    assert quick.train_minutes < full.train_minutes
    assert quick.threads >= 1 and full.batches == (1, 8)


def test_explicit_values_win_over_budgets():
    cfg = PipelineConfig(quick=True, train_minutes=2.0, batches=[4], threads=1).resolved()
    assert (cfg.train_minutes, cfg.batches, cfg.threads) == (2.0, (4,), 1)


def test_round_trip():
    cfg = PipelineConfig(preset="small", quick=True, batches=(1, 2)).resolved()
    assert PipelineConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"preset": "nanoo"}, "Did you mean 'nano'"),
        ({"data_preset": "huge"}, "data preset"),
        ({"train_minutes": 0}, "train_minutes must be > 0"),
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"threads": True}, "threads must be a positive integer"),
        ({"batches": (0,)}, "batch sizes must be integers >= 1"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_bad_values(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        PipelineConfig(**kwargs)


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ConfigError, match=r"unknown pipeline keys \['epoch'\]"):
        PipelineConfig.from_dict({"epoch": 3})


def test_refuses_a_foreign_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not a pipeline run"):
        pipeline(tmp_path, PipelineConfig(quick=True))
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]  # nothing written


def test_cli_reports_bad_input_in_one_line(capsys, tmp_path):
    out_file = tmp_path / "file"
    out_file.write_text("x")
    res = invoke(capsys, "pipeline", "--out", out_file, "--quick")
    assert res.code == 2
    assert res.err.strip() == f"error: --out '{out_file}' is a file; choose a directory."
    res = invoke(capsys, "pipeline", "--out", tmp_path / "r", "--preset", "tiny")
    assert res.code == 2 and "unknown model preset 'tiny'" in res.err and "Traceback" not in res.err
