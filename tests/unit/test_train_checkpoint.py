import json

import pytest
import torch

from edgevae.errors import CheckpointError, ConfigError, OutputExistsError
from edgevae.modalities import ModalitySet
from edgevae.model.vae import build_model
from edgevae.train import checkpoint as ckpt
from tests.train_util import TINY_SPECS, tiny_model_config


def _model(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return build_model(ModalitySet(TINY_SPECS), tiny_model_config(**overrides))


def test_out_dir_policy(tmp_path):
    ckpt.check_out_dir(tmp_path / "new", resume=False, overwrite=False)  # absent: fine
    ckpt.check_out_dir(tmp_path, resume=False, overwrite=False)  # empty: fine
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match=r"not empty; pass --resume .* --overwrite"):
        ckpt.check_out_dir(tmp_path, resume=False, overwrite=False)
    with pytest.raises(OutputExistsError, match=r"not an edgevae run directory.*refusing"):
        ckpt.check_out_dir(tmp_path, resume=False, overwrite=True)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        ckpt.check_out_dir(tmp_path, resume=True, overwrite=False)
    with pytest.raises(ConfigError, match="contradict"):
        ckpt.check_out_dir(tmp_path, resume=True, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"  # nothing touched


def test_a_run_killed_during_its_first_checkpoint_can_be_overwritten(tmp_path):
    (tmp_path / ".train_state.pt.abc123.tmp").write_bytes(b"partial")
    assert ckpt.is_run_dir(tmp_path)
    ckpt.check_out_dir(tmp_path, resume=False, overwrite=True)
    assert not ckpt.is_run_dir(tmp_path / "missing")


def test_weights_round_trip(tmp_path):
    a, b = _model(0), _model(1)
    ckpt.save_weights(tmp_path / "w.safetensors", a)
    ckpt.load_weights(b, tmp_path / "w.safetensors")
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary


def test_truncated_weights_are_a_checkpoint_error(tmp_path):
    path = ckpt.save_weights(tmp_path / "w.safetensors", _model())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        ckpt.load_weights(_model(), path)
    path.write_bytes(b"\x00" * 3)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        ckpt.load_weights(_model(), path)


def test_weights_of_another_architecture(tmp_path):
    path = ckpt.save_weights(tmp_path / "w.safetensors", _model(latent_dim=6))
    with pytest.raises(CheckpointError, match="does not fit the model"):
        ckpt.load_weights(_model(), path)


def _meta(**changes):
    meta = ckpt.build_meta(
        model_config=tiny_model_config(),
        modalities=ModalitySet(TINY_SPECS),
        normalization={},
        train_config={},
        history=[],
        data={},
    )
    meta.update(changes)
    return meta


def test_read_meta_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        ckpt.read_meta(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="not an edgevae run directory"):
        ckpt.read_meta(tmp_path)
    (tmp_path / "model.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="cannot parse"):
        ckpt.read_meta(tmp_path)
    ckpt.write_meta(tmp_path, _meta(format_version=99, edgevae_version="9.0"))
    with pytest.raises(CheckpointError, match=r"format version 99 \(written by edgevae 9.0\)"):
        ckpt.read_meta(tmp_path)
    meta = _meta()
    del meta["normalization"]
    ckpt.write_meta(tmp_path, meta)
    with pytest.raises(CheckpointError, match="lacks \\['normalization'\\]"):
        ckpt.read_meta(tmp_path)
    ckpt.write_meta(tmp_path, _meta())
    assert ckpt.read_meta(tmp_path)["model_config"] == tiny_model_config().to_dict()


class _Malicious:
    """Unpickling this would create a file: proof that train_state.pt is never fully unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_train_state_is_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    torch.save(
        {"format_version": ckpt.CHECKPOINT_VERSION, "x": _Malicious(marker)},
        tmp_path / ckpt.TRAIN_STATE,
    )
    with pytest.raises(CheckpointError, match="refusing to load"):
        ckpt.load_train_state(tmp_path)
    assert not marker.exists()


def test_train_state_errors(tmp_path):
    with pytest.raises(CheckpointError, match="is missing"):
        ckpt.load_train_state(tmp_path)
    path = tmp_path / ckpt.TRAIN_STATE
    torch.save({"format_version": ckpt.CHECKPOINT_VERSION, "w": torch.ones(1000)}, path)
    assert torch.equal(ckpt.load_train_state(tmp_path)["w"], torch.ones(1000))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        ckpt.load_train_state(tmp_path)
    torch.save({"format_version": 0}, path)
    with pytest.raises(CheckpointError, match="train-state format version 0"):
        ckpt.load_train_state(tmp_path)


def test_save_checkpoint_writes_all_three(tmp_path):
    model = _model()
    ckpt.save_checkpoint(tmp_path, train_state={"step": 3}, best_model=model, meta=_meta())
    assert ckpt.is_run_dir(tmp_path)
    assert ckpt.load_train_state(tmp_path)["step"] == 3
    assert json.loads((tmp_path / "model.json").read_text())["format"] == "edgevae-checkpoint"
    meta = ckpt.read_meta(tmp_path)
    meta["normalization"] = {
        "cam0": {"scale": 1 / 255},
        "cam1": {"scale": 1 / 255},
        "audio": {"shape": [1, 8, 1], "mean": [0.0] * 8, "std": [1.0] * 8},
        "motion": {"shape": [1, 3], "mean": [0.0] * 3, "std": [1.0] * 3},
    }
    ckpt.write_meta(tmp_path, meta)
    restored = ckpt.load_checkpoint(tmp_path)
    assert not restored.model.training
    assert restored.score_stats is None
    assert restored.modalities.names == ("cam0", "cam1", "audio", "motion")
    assert torch.equal(
        restored.model.state_dict()[next(iter(model.state_dict()))],
        next(iter(model.state_dict().values())),
    )
