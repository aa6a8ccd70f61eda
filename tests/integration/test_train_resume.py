"""Resume after a kill gives the same result as an uninterrupted run (CPU, same seed)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from edgevae.train import checkpoint as ckpt
from edgevae.train import train
from tests.train_util import make_tiny_dataset, tiny_model_config, tiny_train_config


class Killed(Exception):
    """Stands in for SIGKILL: raised from the progress callback, nothing after it runs."""


def _kill_after(kind, epoch, step=None):
    def progress(event):
        if event.kind == kind and event.epoch == epoch and (step is None or event.step == step):
            raise Killed

    return progress


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("resume") / "ds")


@pytest.fixture(scope="module")
def straight(ds, tmp_path_factory):
    """The reference: three epochs without interruption."""
    return train(
        ds,
        tmp_path_factory.mktemp("straight") / "run",
        tiny_model_config(),
        tiny_train_config(epochs=3, seed=11),
    )


def _assert_same_run(a, b):
    sa, sb = ckpt.load_train_state(a), ckpt.load_train_state(b)
    for key in ("model", "best_model"):
        assert sa[key].keys() == sb[key].keys()
        for name in sa[key]:
            assert torch.equal(sa[key][name], sb[key][name]), f"{key}.{name}"
    for ga, gb in zip(
        sa["optimizer"]["state"].values(), sb["optimizer"]["state"].values(), strict=True
    ):
        assert torch.equal(ga["exp_avg"], gb["exp_avg"])
        assert torch.equal(ga["exp_avg_sq"], gb["exp_avg_sq"])
    assert sa["counters"] == sb["counters"]
    wa, wb = load_file(a / ckpt.WEIGHTS), load_file(b / ckpt.WEIGHTS)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    ma, mb = (json.loads((r / "model.json").read_text()) for r in (a, b))
    assert ma["score_stats"] == mb["score_stats"]
    assert [h["val"] for h in ma["history"] if not h["partial"]] == [
        h["val"] for h in mb["history"] if not h["partial"]
    ]


def test_kill_after_an_epoch_then_resume_matches(ds, straight, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_train_config(epochs=3, seed=11)
    with pytest.raises(Killed):
        train(ds, run, tiny_model_config(), cfg, progress=_kill_after("epoch", 1))
    assert ckpt.load_train_state(run)["counters"]["epoch"] == 1  # the checkpoint is complete
    train(ds, run, tiny_model_config(), cfg, resume=True)
    _assert_same_run(straight, run)


def test_kill_mid_epoch_loses_only_the_partial_epoch(ds, straight, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_train_config(epochs=3, seed=11)
    with pytest.raises(Killed):  # killed at step 4 of epoch 2: no checkpoint since epoch 1
        train(ds, run, tiny_model_config(), cfg, progress=_kill_after("step", 2, step=4))
    assert ckpt.load_train_state(run)["counters"]["epoch"] == 1
    train(ds, run, tiny_model_config(), cfg, resume=True)
    _assert_same_run(straight, run)


def test_time_budget_stop_mid_epoch_then_resume_matches(ds, straight, tmp_path):
    """A budget stop checkpoints at a step boundary inside an epoch; resuming skips those steps."""
    run = tmp_path / "run"
    # stop after the very first step of epoch 1
    train(ds, run, tiny_model_config(), tiny_train_config(epochs=3, seed=11, max_minutes=1e-9))
    assert ckpt.load_train_state(run)["counters"]["step_in_epoch"] == 1
    # resume with a longer epoch budget and no time budget: both may change on resume
    train(ds, run, tiny_model_config(), tiny_train_config(epochs=3, seed=11), resume=True)
    sa, sb = ckpt.load_train_state(straight), ckpt.load_train_state(run)
    for name in sa["model"]:  # the last weights: identical trajectory
        assert torch.equal(sa["model"][name], sb["model"][name]), name
    assert sa["counters"]["global_step"] == sb["counters"]["global_step"]


def test_resume_with_more_epochs_continues(ds, straight, tmp_path):
    run = tmp_path / "run"
    train(ds, run, tiny_model_config(), tiny_train_config(epochs=1, seed=11))
    train(ds, run, tiny_model_config(), tiny_train_config(epochs=3, seed=11), resume=True)
    meta = json.loads((run / "model.json").read_text())
    assert [h["epoch"] for h in meta["history"]] == [1, 2, 3]
    sa, sb = ckpt.load_train_state(straight), ckpt.load_train_state(run)
    # same weights: the constant schedule does not depend on the total number of epochs
    assert all(torch.equal(sa["model"][k], sb["model"][k]) for k in sa["model"])
