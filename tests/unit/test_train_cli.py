import json

import pytest

from edgevae.train import checkpoint as ckpt
from tests.cli_util import invoke
from tests.train_util import make_tiny_dataset


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("cli") / "ds")


def _train(capsys, ds, out, *extra):
    return invoke(
        capsys, "train", "--data", ds, "--out", out, "--device", "cpu", "--batch-size", "16", *extra
    )


@pytest.fixture(scope="module")
def run(ds, tmp_path_factory):
    """A 1-epoch nano run made through the CLI (module scope: the runs below reuse it)."""
    from edgevae.cli import run as cli_run

    out = tmp_path_factory.mktemp("cli-run") / "run"
    code = cli_run(
        [
            "train",
            "--data",
            str(ds),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--batch-size",
            "16",
            "--epochs",
            "1",
            "--quiet",
        ]
    )
    assert code == 0
    return out


def test_train_and_report(capsys, ds, tmp_path):
    r = _train(capsys, ds, tmp_path / "run", "--epochs", "2", "--lr", "0.002", "--seed", "4")
    assert r.code == 0, r.err
    assert "epoch 1/2" in r.out and "epoch 2/2" in r.out and "val" in r.out
    assert "status: complete (epochs), best epoch" in r.out
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["model_config"]["preset"] == "nano" and meta["model_config"]["kind"] == "mvae"
    assert meta["train_config"]["lr"] == 0.002 and meta["train_config"]["seed"] == 4


def test_baseline_kind_through_cli(capsys, ds, tmp_path):
    r = _train(capsys, ds, tmp_path / "run", "--epochs", "1", "--model", "concat-ae", "--quiet")
    assert r.code == 0, r.err
    assert json.loads((tmp_path / "run" / "model.json").read_text())["model_config"]["kind"] == (
        "concat-ae"
    )


def _one_line_error(r, *fragments):
    assert r.code == 2
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _snapshot(path):
    return {p.name: p.read_bytes() for p in path.iterdir()}


def test_existing_run_needs_resume_or_overwrite(capsys, ds, run):
    before = _snapshot(run)
    _one_line_error(_train(capsys, ds, run), "is not empty; pass --resume")
    _one_line_error(_train(capsys, ds, run, "--resume", "--overwrite"), "contradict")
    assert _snapshot(run) == before


def test_resume_with_another_lr_names_it(capsys, ds, run):
    before = _snapshot(run)
    _one_line_error(
        _train(capsys, ds, run, "--resume", "--lr", "0.5"),
        "different configuration: lr (stored 0.001, given 0.5)",
    )
    _one_line_error(
        _train(capsys, ds, run, "--resume", "--preset", "small"), "different configuration: model."
    )
    assert _snapshot(run) == before


def test_resume_keeps_stored_options_and_extends(capsys, ds, run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    # --batch-size 16 repeats the stored value; --epochs may change
    r = _train(capsys, ds, copy, "--resume", "--epochs", "2", "--quiet")
    assert r.code == 0, r.err
    meta = json.loads((copy / "model.json").read_text())
    assert [h["epoch"] for h in meta["history"]] == [1, 2]


def test_resume_without_a_checkpoint(capsys, ds, tmp_path):
    _one_line_error(_train(capsys, ds, tmp_path / "empty", "--resume"), "nothing to resume")


def test_corrupt_checkpoint_on_resume(capsys, ds, run, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(run, bad)
    state = bad / ckpt.TRAIN_STATE
    state.write_bytes(state.read_bytes()[:500])
    before = _snapshot(bad)
    _one_line_error(_train(capsys, ds, bad, "--resume"), "truncated or corrupt")
    assert _snapshot(bad) == before


def test_incompatible_checkpoint_version(capsys, ds, run, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(run, bad)
    meta = json.loads((bad / "model.json").read_text())
    (bad / "model.json").write_text(json.dumps({**meta, "format_version": 7}))
    _one_line_error(_train(capsys, ds, bad, "--resume"), "checkpoint format version 7")


def test_resume_on_data_with_other_modalities(capsys, run, tmp_path):
    from edgevae.data import from_arrays
    from tests.train_util import tiny_arrays

    arrays = {k: v for k, v in tiny_arrays(8).items() if k != "audio"}
    other = from_arrays(tmp_path / "other", {"train": arrays, "val": arrays})
    _one_line_error(
        _train(capsys, other, run, "--resume"), "dataset modalities do not match the model"
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--device", "gpu"], "invalid device 'gpu'"),
        (["--model", "mvea"], "Did you mean 'mvae'"),
        (["--preset", "nanoo"], "Did you mean 'nano'"),
        (["--epochs", "0"], "epochs must be a positive integer"),
    ],
)
def test_bad_options(capsys, ds, tmp_path, args, fragment):
    _one_line_error(_train(capsys, ds, tmp_path / "run", *args), fragment)
    assert not (tmp_path / "run").exists()


def test_missing_dataset(capsys, tmp_path):
    _one_line_error(_train(capsys, tmp_path / "nope", tmp_path / "run"), "does not exist")
    assert not (tmp_path / "run").exists()


def test_nan_training_exits_2(capsys, ds, tmp_path):
    r = _train(capsys, ds, tmp_path / "run", "--lr", "1e30", "--quiet")
    _one_line_error(r, "became", "lower --lr")
