"""QuantConfig validation, calibration recipes, mask-pattern stratification and the range cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgevae.errors import CalibrationError, ConfigError
from edgevae.quant.calibration import (
    assign_patterns,
    available_recipes,
    load_recipe,
    read_cache,
    sample_calibration,
    write_cache,
)
from edgevae.quant.config import QuantConfig, artifact_name


def test_config_defaults_round_trip_and_flavors() -> None:
    cfg = QuantConfig(precision="int8", exclude=("a.*",), graphs="analyze,decode")
    assert cfg.target == "both" and cfg.flavors == ("trt", "cpu")
    assert cfg.graphs == ("analyze", "decode")
    assert QuantConfig.from_dict(cfg.to_dict()) == cfg
    assert QuantConfig(precision="fp16").flavors == ("fp16",)
    assert QuantConfig(precision="int8", target="cpu").flavors == ("cpu",)
    assert artifact_name("encode", "fp16") == "encode.fp16.onnx"
    assert artifact_name("decode", "cpu") == "decode.int8.cpu.onnx"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "minmx"}, "unknown calibration method 'minmx'. Did you mean 'minmax'?"),
        ({"precision": "int4"}, "unknown precision 'int4'"),
        ({"precision": "fp16", "target": "cpu"}, "FP16 ONNX on the ONNX Runtime CPU"),
        ({"backend": "modelopt", "target": "cpu"}, "--backend modelopt makes TensorRT Q/DQ"),
        ({"samples": 0}, "samples must be a positive integer"),
        ({"exclude": ("[",)}, "is not a valid regular expression"),
        ({"graphs": "analyse"}, "Did you mean 'analyze'?"),
    ],
)
def test_config_rejects(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("?", r"\?").replace("(", r"\(")):
        QuantConfig(**kwargs)


def test_from_dict_suggests_field() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'method'"):
        QuantConfig.from_dict({"methd": "minmax"})


def test_builtin_recipes_load() -> None:
    assert {"default", "quick"} <= set(available_recipes())
    default = load_recipe("default")
    assert default.min_samples <= default.samples and default.split == "train"
    assert load_recipe("quick").samples < default.samples


def test_recipe_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Did you mean 'quick'"):
        load_recipe("quik")
    bad = tmp_path / "bad.toml"
    bad.write_text("samples = 10\nmin_sample = 5\n")
    with pytest.raises(ConfigError, match=r"unknown key 'min_sample'\. Did you mean 'min_samples'"):
        load_recipe(str(bad))
    bad.write_text("samples = 10\nmin_samples = 50\n")
    with pytest.raises(ConfigError, match=r"min_samples \(50\) exceeds samples"):
        load_recipe(str(bad))
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(str(tmp_path / "none.toml"))


def test_patterns_stratified_over_classes() -> None:
    rows = assign_patterns(20, ["a", "b", "c"], 0.5)
    names = [r[0] for r in rows]
    assert names.count("all_present") == 10
    # the other half cycles through each-missing and only-one classes: all 6 appear
    others = {n for n in names if n != "all_present"}
    assert others == {"missing_a", "missing_b", "missing_c", "only_a", "only_b", "only_c"}
    assert all(r[1].shape == (3,) for r in rows)


def test_too_few_samples_refused_unless_forced(tmp_path: Path) -> None:
    from edgevae.data.format import open_dataset
    from tests.train_util import make_tiny_dataset

    data = make_tiny_dataset(tmp_path / "d", n_train=24, n_val=4)
    reader = open_dataset(data)
    recipe = load_recipe("quick")  # min 32 > 24 train clips
    with pytest.raises(CalibrationError, match=r"only 24 calibration samples .* minimum of 32"):
        sample_calibration(data, reader.modalities, reader.normalization, recipe)
    cs = sample_calibration(data, reader.modalities, reader.normalization, recipe, force=True)
    assert len(cs) == 24 and cs.summary["forced"] is True
    # absent modalities are zeroed as the runtime feeds them
    mask = cs.feeds["mask"]
    for i, name in enumerate(reader.modalities.names):
        assert np.all(cs.feeds[name][mask[:, i] == 0] == 0)
    assert sum(cs.summary["patterns"].values()) == 24


def test_range_cache_key(tmp_path: Path) -> None:
    path = tmp_path / "calibration" / "analyze.minmax.ranges.json"
    key = {"graph": "analyze", "fp32_sha256": "abc", "samples": 64}
    assert read_cache(path, key) == (None, "missing")
    write_cache(path, key, {"data": {"x": 1}})
    assert read_cache(path, key) == ({"data": {"x": 1}}, "hit")
    payload, status = read_cache(path, {**key, "fp32_sha256": "def"})
    assert payload is None and status == "stale (fp32_sha256 changed)"
    path.write_text("{not json")
    assert read_cache(path, key) == (None, "unreadable")
