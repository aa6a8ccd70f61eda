import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data.distributed import DistributedSampler

from edgevae.data import open_dataset
from edgevae.errors import (
    CheckpointError,
    ConfigError,
    NumericalError,
    OutputExistsError,
    ShapeError,
)
from edgevae.modalities import ModalitySet
from edgevae.train import checkpoint as ckpt
from edgevae.train import train
from edgevae.train.loop import nonfinite_error
from edgevae.train.sampling import ResumableSampler, SeededEpochSampler
from tests.train_util import make_tiny_dataset, tiny_arrays, tiny_model_config, tiny_train_config


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("data") / "ds")


def _weights(run):
    return load_file(run / ckpt.WEIGHTS)


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_train_writes_a_complete_run(ds, tmp_path):
    events = []
    run = train(
        ds, tmp_path / "run", tiny_model_config(), tiny_train_config(), progress=events.append
    )
    assert sorted(p.name for p in run.iterdir()) == [
        "model.json",
        "model.safetensors",
        "model.safetensors.manifest.json",
        "train_state.pt",
    ]
    meta = json.loads((run / "model.json").read_text())
    reader = open_dataset(ds)
    assert meta["status"] == "complete" and meta["stop_reason"] == "epochs"
    assert meta["normalization"] == json.loads(json.dumps(reader.normalization))
    assert ModalitySet.from_list(meta["modalities"]) == reader.modalities
    assert meta["model_config"] == tiny_model_config().to_dict()
    assert meta["train_config"] == tiny_train_config().to_dict()
    assert [h["epoch"] for h in meta["history"]] == [1, 2]
    assert meta["best"]["epoch"] in (1, 2)
    assert meta["score_stats"]["names"] == [
        "recon_cam0",
        "recon_cam1",
        "recon_audio",
        "recon_motion",
        "kl_prior",
        "cross_modal",
    ]
    assert meta["score_fit"] == {"split": "val", "clips": 16, "excluded_labelled": 0}
    assert meta["data"]["train_clips"] == 48 and len(meta["data"]["index_sha256"]) == 64
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert kinds.count("epoch") == 2 and kinds.count("step") == 2 * 6  # 48 clips / batch 8
    step = next(e for e in events if e.kind == "step")
    assert {"total", "recon_cam0", "recon_audio", "kl"} <= set(step.parts)
    assert step.samples_per_s > 0 and step.lr == pytest.approx(1e-3)
    manifest = json.loads((run / "model.safetensors.manifest.json").read_text())
    assert manifest["kind"] == "checkpoint" and manifest["details"]["status"] == "complete"


def test_seed_determinism_on_cpu(ds, tmp_path):
    a = train(ds, tmp_path / "a", tiny_model_config(), tiny_train_config(seed=3))
    b = train(ds, tmp_path / "b", tiny_model_config(), tiny_train_config(seed=3))
    c = train(ds, tmp_path / "c", tiny_model_config(), tiny_train_config(seed=4))
    assert _same(_weights(a), _weights(b))
    assert not _same(_weights(a), _weights(c))


def test_callers_global_rng_is_untouched(ds, tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(ds, tmp_path / "run", tiny_model_config(), tiny_train_config(epochs=1))
    assert torch.equal(torch.rand(3), expected)


def test_early_stopping_keeps_the_best(ds, tmp_path):
    # min_delta so large that nothing after the first epoch counts as an improvement
    cfg = tiny_train_config(epochs=10, patience=2, min_delta=1e9)
    run = train(ds, tmp_path / "run", tiny_model_config(), cfg)
    meta = json.loads((run / "model.json").read_text())
    assert meta["stop_reason"] == "early_stopping" and meta["status"] == "complete"
    assert len(meta["history"]) == 3
    assert meta["best"]["epoch"] == 1
    state = ckpt.load_train_state(run)
    assert _same(_weights(run), state["best_model"])
    assert not _same(state["best_model"], state["model"])  # kept weights are epoch 1's


def test_time_budget_stops_mid_epoch_with_a_resumable_checkpoint(ds, tmp_path):
    events = []
    run = train(
        ds,
        tmp_path / "run",
        tiny_model_config(),
        tiny_train_config(max_minutes=1e-9),
        progress=events.append,
    )
    meta = json.loads((run / "model.json").read_text())
    assert meta["status"] == "stopped" and meta["stop_reason"] == "time_budget"
    assert len(meta["history"]) == 1
    assert meta["history"][0]["partial"] and meta["history"][0]["steps"] == 1
    assert meta["score_stats"] is not None  # usable right away
    assert ckpt.load_train_state(run)["counters"]["step_in_epoch"] == 1
    run = train(ds, run, tiny_model_config(), tiny_train_config(), resume=True)
    meta = json.loads((run / "model.json").read_text())
    assert meta["status"] == "complete"
    assert [(h["epoch"], h["partial"]) for h in meta["history"]] == [
        (1, True),
        (1, False),
        (2, False),
    ]


def test_sampler_is_injected_and_told_the_epoch(ds, tmp_path):
    seen = []

    class Recording(SeededEpochSampler):
        def set_epoch(self, epoch):
            seen.append(epoch)
            super().set_epoch(epoch)

    def factory(dataset, seed):
        assert len(dataset) == 48 and seed == 7
        return Recording(dataset, seed)

    train(
        ds,
        tmp_path / "run",
        tiny_model_config(),
        tiny_train_config(seed=7),
        sampler_factory=factory,
    )
    assert seen == [0, 1]


def test_default_sampler_matches_distributed_sampler():
    data = list(range(50))
    ours = SeededEpochSampler(data, seed=5)
    ref = DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=5)
    for epoch in (0, 3):
        ours.set_epoch(epoch)
        ref.set_epoch(epoch)
        assert list(ours) == list(ref)
    assert list(ours) != list(range(50))


def test_resumable_sampler_skips_once():
    inner = SeededEpochSampler(list(range(10)), seed=0)
    wrapped = ResumableSampler(inner)
    wrapped.start_epoch(1, skip=4)
    full = list(inner)
    assert len(wrapped) == 6
    assert list(wrapped) == full[4:]
    assert list(wrapped) == full  # the skip applies to one pass only


def test_nan_loss_term_names_term_and_modality():
    names = ModalitySet(__import__("tests.train_util", fromlist=["x"]).TINY_SPECS)
    parts = {"total": math.nan, "recon_cam0": 1.0, "recon_audio": math.nan, "kl": math.nan}
    inputs = {k: torch.from_numpy(v.astype(np.float32)) for k, v in tiny_arrays(2).items()}
    err = nonfinite_error(parts, inputs, torch.ones(2, 4), names, "epoch 3 step 120")
    assert str(err) == (
        "loss term 'recon_audio' became NaN at epoch 3 step 120; lower --lr or check the audio "
        "data. The last checkpoint is kept."
    )
    err = nonfinite_error({"total": math.inf, "kl": math.inf}, inputs, torch.ones(2, 4), names, "x")
    assert "loss term 'kl' became Inf at x; lower --lr or check the data." in str(err)
    inputs["motion"][1, 0, 0] = math.nan
    err = nonfinite_error(parts, inputs, torch.ones(2, 4), names, "epoch 1 step 2")
    assert str(err).startswith("input modality 'motion' holds NaN/Inf in 1 clip(s)")
    absent = torch.ones(2, 4)
    absent[1, 3] = 0  # NaN in a missing sample is not the cause
    assert "loss term 'recon_audio'" in str(nonfinite_error(parts, inputs, absent, names, "x"))


def test_nan_producing_lr_stops_with_a_named_term(ds, tmp_path):
    with pytest.raises(
        NumericalError, match=r"loss term '\w+' became (NaN|Inf) at epoch 1 step \d+; lower --lr"
    ):
        train(ds, tmp_path / "run", tiny_model_config(), tiny_train_config(lr=1e30, grad_clip=0))


def test_nan_data_stops_with_the_modality_named(tmp_path):
    ds = make_tiny_dataset(tmp_path / "ds")
    audio = np.load(ds / "train" / "shard-00000" / "audio.npy", mmap_mode="r+")
    audio[5, 0, 2, 2] = np.nan  # corrupt on disk after the statistics were computed
    audio.flush()
    del audio
    with pytest.raises(NumericalError, match=r"input modality 'audio' holds NaN/Inf in 1 clip"):
        train(ds, tmp_path / "run", tiny_model_config(), tiny_train_config(epochs=1))


def test_non_empty_out_dir_is_refused(ds, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("x")
    with pytest.raises(OutputExistsError):
        train(ds, tmp_path / "run", tiny_model_config(), tiny_train_config())
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["keep.txt"]


def test_overwrite_replaces_a_run(ds, tmp_path):
    run = train(ds, tmp_path / "run", tiny_model_config(), tiny_train_config(epochs=1))
    with pytest.raises(OutputExistsError):
        train(ds, run, tiny_model_config(), tiny_train_config(epochs=1))
    train(ds, run, tiny_model_config(), tiny_train_config(epochs=2), overwrite=True)
    assert len(json.loads((run / "model.json").read_text())["history"]) == 2


@pytest.fixture
def finished_run(ds, tmp_path):
    return train(ds, tmp_path / "run", tiny_model_config(), tiny_train_config(epochs=1))


def _snapshot(run):
    return {p.name: p.read_bytes() for p in run.iterdir()}


def test_resume_with_a_different_config_names_the_keys(ds, finished_run):
    before = _snapshot(finished_run)
    with pytest.raises(
        ConfigError,
        match=r"different configuration: batch_size \(stored 8, "
        r"given 4\); lr \(stored 0.001, given 0.002\)\. Pass the original",
    ):
        train(
            ds,
            finished_run,
            tiny_model_config(),
            tiny_train_config(epochs=1, lr=2e-3, batch_size=4),
            resume=True,
        )
    with pytest.raises(ConfigError, match=r"model\.latent_dim \(stored 4, given 5\)"):
        train(
            ds,
            finished_run,
            tiny_model_config(latent_dim=5),
            tiny_train_config(epochs=1),
            resume=True,
        )
    assert _snapshot(finished_run) == before


def test_resume_on_data_with_other_modalities(finished_run, tmp_path):
    from edgevae.data import from_arrays

    arrays = {k: v for k, v in tiny_arrays(16).items() if k != "motion"}
    other = from_arrays(tmp_path / "other", {"train": arrays, "val": arrays})
    before = _snapshot(finished_run)
    with pytest.raises(ShapeError, match="dataset modalities do not match the model"):
        train(other, finished_run, tiny_model_config(), tiny_train_config(), resume=True)
    assert _snapshot(finished_run) == before


def test_resume_on_other_data_with_the_same_modalities(finished_run, tmp_path):
    other = make_tiny_dataset(tmp_path / "other", seed=9)
    with pytest.raises(ConfigError, match="on different data"):
        train(other, finished_run, tiny_model_config(), tiny_train_config(epochs=1), resume=True)


def test_resume_from_a_corrupt_or_foreign_train_state(ds, finished_run):
    path = finished_run / ckpt.TRAIN_STATE
    path.write_bytes(path.read_bytes()[:1000])
    before = _snapshot(finished_run)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        train(ds, finished_run, tiny_model_config(), tiny_train_config(epochs=1), resume=True)
    torch.save({"format_version": ckpt.CHECKPOINT_VERSION, "model": {}}, path)
    with pytest.raises(CheckpointError, match=r"lacks \['best_model', 'optimizer'"):
        train(ds, finished_run, tiny_model_config(), tiny_train_config(epochs=1), resume=True)
    torch.save({"format_version": 2}, path)
    with pytest.raises(CheckpointError, match="train-state format version 2"):
        train(ds, finished_run, tiny_model_config(), tiny_train_config(epochs=1), resume=True)
    assert _snapshot(finished_run).keys() == before.keys()


def test_resume_a_finished_run_changes_no_weights(ds, finished_run):
    before = _weights(finished_run)
    train(ds, finished_run, tiny_model_config(), tiny_train_config(epochs=1), resume=True)
    assert _same(_weights(finished_run), before)
    meta = json.loads((finished_run / "model.json").read_text())
    assert len(meta["history"]) == 1 and meta["status"] == "complete"


@pytest.mark.parametrize("kind", ["concat-ae", "unimodal"])
def test_baselines_train_through_the_same_loop(ds, tmp_path, kind):
    run = train(ds, tmp_path / kind, tiny_model_config(kind), tiny_train_config(epochs=1))
    meta = json.loads((run / "model.json").read_text())
    assert meta["model_config"]["kind"] == kind and meta["status"] == "complete"
    if kind == "unimodal":  # audio/motion are ignored: their recon parts have no statistics
        assert meta["score_stats"]["mean"][2:4] == [0.0, 0.0]


def test_worker_processes_do_not_change_the_result(ds, tmp_path):
    cfg = tiny_train_config(epochs=1)
    a = train(ds, tmp_path / "a", tiny_model_config(), cfg)
    b = train(ds, tmp_path / "b", tiny_model_config(), replace(cfg, num_workers=2))
    assert _same(_weights(a), _weights(b))
