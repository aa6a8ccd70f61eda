import math

import pytest
import torch

from edgevae.errors import ConfigError
from edgevae.train.config import TrainConfig, config_differences, resolve_device
from edgevae.train.loop import learning_rate


def test_round_trip_and_defaults():
    cfg = TrainConfig(epochs=3, lr=2e-3, max_minutes=1.5, eval_batch_size=64)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.eval_batch == 64
    assert TrainConfig(batch_size=16).eval_batch == 16


def test_unknown_key_is_rejected():
    with pytest.raises(ConfigError, match=r"unknown train config keys \['learning_rate'\]"):
        TrainConfig.from_dict({"learning_rate": 1e-3})


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", 0, "epochs must be a positive integer"),
        ("batch_size", -1, "batch_size must be a positive integer"),
        ("batch_size", True, "batch_size must be a positive integer"),
        ("lr", 0.0, "lr must be a finite number > 0"),
        ("lr", math.nan, "lr must be a finite number > 0"),
        ("weight_decay", -0.1, "weight_decay must be a finite number >= 0"),
        ("grad_clip", math.inf, "grad_clip must be a finite number >= 0"),
        ("max_minutes", 0, "max_minutes must be a finite number > 0"),
        ("patience", -1, "patience must be a non-negative integer"),
        ("min_lr_fraction", 2.0, r"min_lr_fraction must be in \[0, 1\]"),
        ("device", "gpu", "invalid device 'gpu'"),
        ("schedule", "cosin", "Did you mean 'cosine'"),
    ],
)
def test_invalid_values_name_the_field(field, value, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{field: value})


def test_config_differences_names_keys_and_values():
    a = TrainConfig().to_dict()
    b = TrainConfig(lr=2e-3, epochs=9).to_dict()
    assert config_differences(a, b) == [
        "epochs (stored 30, given 9)",
        "lr (stored 0.001, given 0.002)",
    ]
    assert config_differences(a, b, ignore=frozenset({"epochs"})) == [
        "lr (stored 0.001, given 0.002)"
    ]
    assert config_differences({"w": [1, 2]}, {"w": (1, 2)}) == []  # JSON lists == tuples


def test_learning_rate_schedules():
    const = TrainConfig(lr=1.0, warmup_steps=4)
    assert [learning_rate(s, 100, const) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    cos = TrainConfig(lr=1.0, schedule="cosine", min_lr_fraction=0.1)
    assert learning_rate(0, 100, cos) == pytest.approx(1.0)
    assert learning_rate(50, 100, cos) == pytest.approx(0.55)
    assert learning_rate(100, 100, cos) == pytest.approx(0.1)
    assert learning_rate(500, 100, cos) == pytest.approx(0.1)  # resumed past the end: floor


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match=r"CUDA is not available.*--device cpu"):
            resolve_device("cuda")
