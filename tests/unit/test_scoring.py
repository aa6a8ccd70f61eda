"""Score combination rules (sum / max) and the statistics that carry them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgevae.errors import ConfigError
from edgevae.model.score_rules import MAX_EXCLUDED, combine_numpy
from edgevae.model.scoring import ScoreStats, combine_parts, standardize
from edgevae.train import TrainConfig

NAMES = ["a", "b", "c"]  # parts: recon_a, recon_b, recon_c, kl_prior, cross_modal


def _raw_and_mask() -> tuple[torch.Tensor, torch.Tensor]:
    raw = torch.tensor(
        [
            [1.0, 2.0, 9.0, 0.5, 0.2],  # recon_c is the outlier
            [1.0, 2.0, 9.0, 0.5, 0.2],  # ... but c is missing here
            [0.0, 0.0, 0.0, -4.0, -3.0],  # every part below normal
        ]
    )
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    return raw, mask


def test_max_takes_the_largest_part_that_counts():
    raw, mask = _raw_and_mask()
    zeros, ones = torch.zeros(5), torch.ones(5)
    score, parts = standardize(raw, mask, zeros, ones, ones, "max")
    assert score.tolist() == [9.0, 2.0, -3.0]  # row 1: the missing modality's 9 does not count
    assert parts[1, 2] == 0 and parts[2, :3].abs().sum() == 0
    # row 2 has only negative parts: the zeros of its missing modalities must not floor it at 0
    summed, same_parts = standardize(raw, mask, zeros, ones, ones, "sum")
    assert summed.tolist() == pytest.approx([12.7, 3.7, -7.0])
    assert torch.equal(parts, same_parts)  # the rule changes the score only


def test_weights_scale_parts_before_the_max():
    parts = torch.tensor([[1.0, 2.0, 0.5]])
    keep = torch.ones(1, 3)
    assert combine_parts(parts, keep, torch.tensor([3.0, 1.0, 1.0]), "max").item() == 3.0
    assert combine_parts(parts, torch.zeros(1, 3), torch.ones(3), "max").item() == MAX_EXCLUDED


def test_numpy_reference_agrees_with_torch():
    rng = np.random.default_rng(0)
    parts = rng.normal(size=(16, 5)).astype(np.float32)
    keep = (rng.random((16, 5)) < 0.6).astype(np.float32)
    weight = rng.random(5).astype(np.float32)
    for rule in ("sum", "max"):
        want = combine_parts(
            torch.from_numpy(parts), torch.from_numpy(keep), torch.from_numpy(weight), rule
        )
        np.testing.assert_allclose(
            combine_numpy(parts, keep, weight, rule), want.numpy(), rtol=1e-6, atol=1e-6
        )


def test_fit_defaults_to_max_and_old_statistics_load_as_sum():
    raw = np.abs(np.random.default_rng(1).normal(size=(50, 5)))
    stats = ScoreStats.fit(raw, np.ones((50, 3)), NAMES)
    assert stats.combine == "max" and stats.combine_code == 1
    assert ScoreStats.from_dict(stats.to_dict()) == stats
    old = {k: v for k, v in stats.to_dict().items() if k != "combine"}
    assert ScoreStats.from_dict(old).combine == "sum"
    assert ScoreStats.fit(raw, np.ones((50, 3)), NAMES, "sum").combine_code == 0


def test_unknown_rule_is_refused_with_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown score combination rule 'mean'.*sum, max"):
        ScoreStats.identity(NAMES, "mean")
    with pytest.raises(ConfigError, match="Did you mean 'max'"):
        TrainConfig(score_combine="maxx")
    with pytest.raises(ConfigError, match="score combination rule"):
        combine_parts(torch.zeros(1, 5), torch.ones(1, 5), torch.ones(5), "median")
    assert TrainConfig().score_combine == "max"


def test_cli_train_refuses_an_unknown_rule_before_touching_anything(capsys, tmp_path):
    from tests.cli_util import invoke

    out = tmp_path / "run"
    r = invoke(capsys, "train", "--data", tmp_path, "--out", out, "--score-combine", "avg")
    assert r.code == 2 and "Traceback" not in r.err
    assert "unknown score combination rule 'avg'" in r.err and "sum, max" in r.err
    assert not out.exists()
