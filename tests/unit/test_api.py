import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import edgevae
from edgevae.errors import CheckpointError, ConfigError, NumericalError, ShapeError
from edgevae.model.scoring import raw_parts, standardize
from edgevae.train import checkpoint as ckpt
from edgevae.train import train
from tests.train_util import make_tiny_dataset, tiny_arrays, tiny_model_config, tiny_train_config

NAMES = ["cam0", "cam1", "audio", "motion"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    ds = make_tiny_dataset(root / "ds")
    return train(ds, root / "run", tiny_model_config(), tiny_train_config())


@pytest.fixture(scope="module")
def model(run):
    return edgevae.load(run)


@pytest.fixture
def arrays():
    return tiny_arrays(5, seed=42)


def test_import_edgevae_stays_torch_free():
    code = "import sys, edgevae; assert 'torch' not in sys.modules; print(edgevae.load.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "edgevae.api"


def test_load_describes_the_model(model, run):
    assert list(model.modalities.names) == NAMES
    assert model.part_names == [f"recon_{n}" for n in NAMES] + ["kl_prior", "cross_modal"]
    assert model.run_dir == run and not model.module.training
    assert "cam0" in repr(model)


def test_encode_shapes(model, arrays):
    out = model.encode(arrays)
    assert {k: v.shape for k, v in out.items()} == {
        "z_mu": (5, 4),
        "z_logvar": (5, 4),
        "expert_mu": (5, 4, 4),
        "expert_logvar": (5, 4, 4),
    }
    assert all(v.dtype == np.float32 for v in out.values())


def test_reconstruct_applies_the_stored_normalizer(model, arrays):
    recon = model.reconstruct(arrays)
    assert {k: v.shape for k, v in recon.items()} == {k: v.shape for k, v in arrays.items()}
    assert recon["cam0"].min() >= 0 and recon["cam0"].max() <= 255  # raw pixel units
    # the same computation by hand: normalise, forward, denormalise
    norm = model._ckpt.normalizer
    mask = np.ones((5, 4), np.float32)
    inputs = {k: torch.from_numpy(norm.numpy(k, v, mask[:, 0])) for k, v in arrays.items()}
    with torch.no_grad():
        out = model.module(inputs, torch.from_numpy(mask))
    expected = norm.denormalize("audio", out.recon["audio"].numpy())
    np.testing.assert_allclose(recon["audio"], expected, rtol=1e-5, atol=1e-5)


def test_impute_returns_only_the_missing(model, arrays):
    without = {k: v for k, v in arrays.items() if k != "cam1"}
    out = model.impute(without, missing=["cam1"])
    assert list(out) == ["cam1"] and out["cam1"].shape == (5, 2, 8, 8)
    # what was passed for the missing modality does not matter
    out2 = model.impute(arrays, missing="cam1")
    np.testing.assert_array_equal(out["cam1"], out2["cam1"])
    mask = np.array([1, 0, 1, 1])
    np.testing.assert_array_equal(model.reconstruct(without, mask)["cam1"], out["cam1"])


def test_score_matches_the_scoring_module(model, run, arrays):
    score, parts, names = model.score(arrays)
    assert score.shape == (5,) and parts.shape == (5, 6) and names == model.part_names
    stats = json.loads((run / "model.json").read_text())["score_stats"]
    assert stats["combine"] == "max"  # the default rule for new runs: the largest weighted part
    np.testing.assert_allclose(score, parts.max(axis=1), rtol=1e-5, atol=1e-5)
    norm = model._ckpt.normalizer
    inputs = {k: torch.from_numpy(norm.numpy(k, v)) for k, v in arrays.items()}
    mask = torch.ones(5, 4)
    with torch.no_grad():
        out = model.module(inputs, mask)
        raw = raw_parts(
            [inputs[n] for n in NAMES],
            [out.recon[n] for n in NAMES],
            mask,
            out.z_mu,
            out.z_logvar,
            out.expert_mu,
            out.expert_logvar,
        )
        ref, _ = standardize(
            raw, mask, *(torch.tensor(stats[k]) for k in ("mean", "std", "weight")), "max"
        )
    np.testing.assert_allclose(score, ref.numpy(), rtol=1e-4, atol=1e-4)


def test_anomalous_audio_scores_higher_on_the_audio_part(model, arrays):
    shifted = dict(arrays, audio=arrays["audio"] + 8.0)
    _, normal, _ = model.score(arrays)
    _, anomalous, _ = model.score(shifted)
    assert (anomalous[:, 2] > normal[:, 2]).all()


def test_a_row_with_nothing_present_is_the_prior(model, arrays):
    mask = np.array([[1, 1, 1, 1], [0, 0, 0, 0]], np.float32)
    two = {k: v[:2] for k, v in arrays.items()}
    enc = model.encode(two, mask)
    np.testing.assert_array_equal(enc["z_mu"][1], 0.0)
    np.testing.assert_array_equal(enc["z_logvar"][1], 0.0)
    score, parts, _ = model.score(two, mask)
    assert np.isfinite(score).all()
    np.testing.assert_array_equal(parts[1, :4], 0.0)  # no reconstruction parts
    # nothing passed at all for the absent modalities also works
    only_mask = model.score({"cam0": two["cam0"][1:]}, np.zeros(4))[0]
    np.testing.assert_allclose(only_mask, score[1:], rtol=1e-6)


def test_chunking_does_not_change_results(run, arrays):
    small = edgevae.load(run, batch_size=2)
    # conv kernels may pick a different reduction order per batch size: equal to float rounding
    np.testing.assert_allclose(
        small.score(arrays)[0], edgevae.load(run).score(arrays)[0], rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (
            lambda a: a.pop("audio"),
            ShapeError,
            r"modality 'audio' is missing from arrays but marked present",
        ),
        (
            lambda a: a.update(audoi=a["audio"]),
            ShapeError,
            r"unknown modality 'audoi' in arrays \(did you mean 'audio'\?\)",
        ),
        (
            lambda a: a.update(motion=a["motion"][:, :2]),
            ShapeError,
            r"modality 'motion' has shape \(5, 2, 3\), the model expects \(B, 4, 3\)",
        ),
        (lambda a: a.update(motion=a["motion"][0]), ShapeError, r"arrays differ in batch size"),
        (
            lambda a: a.update(audio=a["audio"].astype(complex)),
            ShapeError,
            r"modality 'audio' has dtype complex128",
        ),
        (
            lambda a: a.update(cam0=a["cam0"].astype(str)),
            ShapeError,
            r"modality 'cam0' has dtype <U",
        ),
        (
            lambda a: a["audio"].__setitem__((1, 0, 0, 0), np.nan),
            NumericalError,
            r"modality 'audio' holds NaN/Inf in 1 sample\(s\) marked present",
        ),
    ],
)
def test_bad_inputs(model, arrays, change, error, message):
    change(arrays)
    for method in (model.encode, model.reconstruct, model.score):
        with pytest.raises(error, match=message):
            method(arrays)


def test_nan_in_an_absent_sample_is_ignored(model, arrays):
    arrays["audio"][1] = np.nan
    mask = np.ones((5, 4))
    mask[1, 2] = 0
    assert np.isfinite(model.score(arrays, mask)[0]).all()


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (np.ones((5, 3)), r"mask must have shape \(5, 4\) or \(4,\)"),
        (np.full((5, 4), 0.5), "mask values must be 0"),
        (np.full((5, 4), "x"), "mask must be numeric"),
    ],
)
def test_bad_masks(model, arrays, mask, message):
    with pytest.raises(ShapeError, match=message):
        model.score(arrays, mask)


def test_impute_checks_names(model, arrays):
    with pytest.raises(ConfigError, match="Did you mean 'cam1'"):
        model.impute(arrays, missing=["cam9"])
    with pytest.raises(ConfigError, match="at least one"):
        model.impute(arrays, missing=[])


def test_load_errors(run, tmp_path):
    import shutil

    with pytest.raises(CheckpointError, match="does not exist"):
        edgevae.load(tmp_path / "nope")
    bad = tmp_path / "bad"
    shutil.copytree(run, bad)
    weights = bad / ckpt.WEIGHTS
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        edgevae.load(bad)
    meta = json.loads((run / "model.json").read_text())
    shutil.copy(run / ckpt.WEIGHTS, weights)
    (bad / "model.json").write_text(json.dumps({**meta, "format_version": 0}))
    with pytest.raises(CheckpointError, match="checkpoint format version 0"):
        edgevae.load(bad)
    (bad / "model.json").write_text(json.dumps({**meta, "score_stats": None}))
    unfinished = edgevae.load(bad)
    with pytest.raises(CheckpointError, match="has no score statistics"):
        unfinished.score(tiny_arrays(2))
    assert unfinished.encode(tiny_arrays(2))["z_mu"].shape == (2, 4)  # the rest still works
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        edgevae.load(run, batch_size=0)


def test_score_matches_the_export_graph(model, arrays):
    """The API and the exported analyze graph compute the same score from the same run."""
    from edgevae.model.analyze import AnalyzeGraph

    mask = np.array([1, 0, 1, 1], np.float32)
    score, parts, _ = model.score(arrays, mask)
    graph = AnalyzeGraph(model.module, model._ckpt.score_stats).eval()
    norm = model._ckpt.normalizer
    full = np.broadcast_to(mask, (5, 4))
    xs = [torch.from_numpy(norm.numpy(n, arrays[n], full[:, i])) for i, n in enumerate(NAMES)]
    with torch.no_grad():
        *_, g_score, g_parts = graph(*xs, torch.from_numpy(np.ascontiguousarray(full)))
    np.testing.assert_allclose(score, g_score.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(parts, g_parts.numpy(), rtol=1e-5, atol=1e-5)
