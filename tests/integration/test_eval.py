"""``evaluate`` / ``edgevae eval`` end to end on a tiny trained model, and every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgevae.data import from_arrays
from edgevae.errors import ConfigError, OutputExistsError, ShapeError
from edgevae.evaluate import metrics
from edgevae.evaluate.run import EvalConfig, check_modalities, evaluate
from edgevae.modalities import ModalitySet, ModalitySpec
from edgevae.train import train
from tests.cli_util import invoke
from tests.train_util import TINY_SPECS, tiny_arrays, tiny_model_config, tiny_train_config

TYPES = ("normal", "loud_audio", "white_cam0")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _test_split(n_videos: int = 4, clips: int = 8, seed: int = 7):
    """Test clips in ``n_videos`` videos; per-frame labels (2 frames per clip) of two types."""
    n = n_videos * clips
    arrays = tiny_arrays(n, seed)
    labels = np.zeros((n, 2), np.uint8)
    for v in range(n_videos):
        a, b = v * clips + 2, v * clips + 5
        arrays["audio"][a : a + 2] += 6.0  # loud audio for two clips
        labels[a : a + 2] = 1
        arrays["cam0"][b, 1] = 255  # cam0 goes white in the second frame of one clip
        labels[b, 1] = 2
    return arrays, labels, np.repeat(np.arange(n_videos), clips)


def _dataset(out, *, test=True, anomalies=True, specs=TINY_SPECS):
    splits = {"train": tiny_arrays(48, 0), "val": tiny_arrays(16, 1)}
    labels, videos = {}, {}
    if test:
        arrays, lab, vid = _test_split()
        splits["test"] = arrays
        labels["test"] = lab if anomalies else np.zeros_like(lab)
        videos["test"] = vid
    if specs is not TINY_SPECS:
        splits = {
            k: {s.name: np.zeros((len(v["cam0"]), *s.shape), s.dtype) for s in specs}
            for k, v in splits.items()
        }
    return from_arrays(
        out,
        splits,
        specs=specs,
        frame_labels=labels or {"train": np.zeros((48, 2), np.uint8)},
        video_ids=videos or None,
        anomaly_types=TYPES,
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    ds = _dataset(root / "ds")
    run = train(ds, root / "run", tiny_model_config(), tiny_train_config(epochs=3))
    return root, ds, run


@pytest.fixture(scope="module")
def evaluated(setup):
    root, ds, run = setup
    out = evaluate(run, ds, EvalConfig(batch_size=8, imputation_clips=12), out_dir=root / "ev")
    return out, json.loads((out / "metrics.json").read_text())


# -- the stage -------------------------------------------------------------------------------------
def test_metrics_json_has_the_documented_structure(evaluated):
    out, m = evaluated
    for key in (
        "model",
        "data",
        "overall",
        "per_type",
        "parts",
        "camera_masked",
        "imputation",
        "frames",
        "anomalous_frames",
        "anomaly_types",
        "part_names",
        "figures",
        "config",
    ):
        assert key in m, key
    assert m["frames"] == 32 * 2
    assert m["anomalous_frames"] == {"loud_audio": 16, "white_cam0": 4}
    assert m["anomaly_types"] == list(TYPES)
    assert set(m["per_type"]) == {"loud_audio", "white_cam0"}
    assert m["model"]["kind"] == "mvae"
    assert m["data"]["videos"] == 4 and m["data"]["label_frames"] == 2
    for key in ("auroc", "auroc_minmax", "auroc_macro", "auprc", "eer", "eer_minmax"):
        assert 0.0 <= m["overall"][key] <= 1.0, key
    assert m["overall"]["macro_videos"] == 4
    assert m["per_type"]["white_cam0"]["frames"] == 64 - 16  # normal + white_cam0 frames
    assert (out / "metrics.json.manifest.json").is_file()


def test_every_score_part_and_masked_camera_is_reported(evaluated):
    _, m = evaluated
    assert m["part_names"] == [
        "recon_cam0",
        "recon_cam1",
        "recon_audio",
        "recon_motion",
        "kl_prior",
        "cross_modal",
    ]
    assert set(m["parts"]) == set(m["part_names"])
    for part in m["parts"].values():
        assert set(part["per_type"]) == {"loud_audio", "white_cam0"}
    # each modality's reconstruction error catches the anomaly in that modality, not the other
    parts = {p: v["per_type"] for p, v in m["parts"].items()}
    assert parts["recon_audio"]["loud_audio"] > 0.9 > parts["recon_cam0"]["loud_audio"]
    assert parts["recon_cam0"]["white_cam0"] > parts["recon_audio"]["white_cam0"]
    assert set(m["camera_masked"]) == {"cam0", "cam1"}
    for cam in m["camera_masked"].values():
        assert set(cam["per_type"]) == {"loud_audio", "white_cam0"}
        assert 0.0 <= cam["overall"]["auroc"] <= 1.0
    # without cam0 its white frames can no longer be seen through its reconstruction
    assert (
        m["camera_masked"]["cam0"]["per_type"]["white_cam0"]["auroc"]
        < m["per_type"]["white_cam0"]["auroc"]
    )


def test_imputation_psnr_per_camera_with_baselines(evaluated):
    _, m = evaluated
    assert m["imputation_split"] == "val"
    assert set(m["imputation"]) == {"cam0", "cam1"}
    for cam, other in (("cam0", "cam1"), ("cam1", "cam0")):
        r = m["imputation"][cam]
        assert r["clips"] == 12
        assert r["nearest_camera"] == other
        for key in ("model_psnr", "reconstruction_psnr", "mean_frame_psnr", "nearest_camera_psnr"):
            assert 0.0 < r[key] < 100.0, key


def test_overall_metrics_match_a_recomputation(setup, evaluated):
    import edgevae

    run = setup[2]
    _, m = evaluated
    arrays, labels, videos = _test_split()
    score, _, _ = edgevae.load(run).score(arrays)
    s, y, v = metrics.frame_level(score, labels, videos)
    assert m["overall"]["auroc"] == pytest.approx(metrics.auroc(s, y != 0), abs=1e-6)
    normed = metrics.minmax_per_video(s, v)
    assert m["overall"]["auroc_minmax"] == pytest.approx(metrics.auroc(normed, y != 0), abs=1e-6)


def test_figures_are_written_and_listed(evaluated):
    out, m = evaluated
    assert m["figures"] == [
        "roc.png",
        "timeline.png",
        "reconstruction.png",
        "reconstruction_loud_audio.png",
        "reconstruction_white_cam0.png",
    ]
    for name in m["figures"]:
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000, name


def test_failure_mid_way_leaves_nothing_behind(setup, monkeypatch):
    root, ds, run = setup
    from edgevae.evaluate import plots

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(plots, "plot_roc", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        evaluate(run, ds, EvalConfig(batch_size=16, imputation_clips=4), out_dir=root / "broken")
    assert not (root / "broken").exists()
    assert not [p for p in root.iterdir() if p.name.startswith(".broken.partial")]


def test_existing_output_is_refused_then_replaced_with_overwrite(setup, tmp_path):
    _, ds, run = setup
    out = tmp_path / "ev"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    cfg = EvalConfig(batch_size=16, imputation_clips=4, figures=False, mask_cameras=False)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        evaluate(run, ds, cfg, out_dir=out)
    assert (out / "keep.txt").read_text() == "mine"
    calls = []
    cfg = EvalConfig(**{**cfg.to_dict(), "overwrite": True})
    evaluate(run, ds, cfg, progress=lambda *a: calls.append(a), out_dir=out)
    assert not (out / "keep.txt").exists()
    assert ("scoring 'test'", 32, 32) in calls and ("imputation", 4, 4) in calls
    m = json.loads((out / "metrics.json").read_text())
    assert m["figures"] == [] and m["camera_masked"] == {}


def test_baseline_that_ignores_modalities(setup, tmp_path):
    _, ds, _ = setup
    run = train(ds, tmp_path / "uni", tiny_model_config("unimodal"), tiny_train_config(epochs=1))
    cfg = EvalConfig(batch_size=16, imputation_clips=4, figures=False)
    m = json.loads((evaluate(run, ds, cfg, out_dir=tmp_path / "e") / "metrics.json").read_text())
    assert m["model"]["kind"] == "unimodal"
    # the cameras-only model does not see audio/motion: their parts are null, not a fake 0.5
    for part in ("recon_audio", "recon_motion"):
        assert m["parts"][part] == {
            "overall": None,
            "per_type": {"loud_audio": None, "white_cam0": None},
        }
    assert m["parts"]["recon_cam0"]["overall"] is not None
    assert set(m["camera_masked"]) == set(m["imputation"]) == {"cam0", "cam1"}


# -- CLI -------------------------------------------------------------------------------------------
def test_cli_json_prints_the_metrics(setup, capsys, tmp_path):
    _, ds, run = setup
    r = invoke(
        capsys,
        "eval",
        run,
        "--data",
        ds,
        "--out",
        tmp_path / "e",
        "--json",
        "--batch-size",
        "16",
        "--no-figures",
        "--imputation-clips",
        "4",
    )
    assert r.code == 0, r.err
    printed = json.loads(r.out)
    assert printed == json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert printed["config"]["batch_size"] == 16


def test_cli_tables(setup, capsys, tmp_path):
    _, ds, run = setup
    r = invoke(
        capsys,
        "eval",
        run,
        "--data",
        ds,
        "--out",
        tmp_path / "e",
        "--quiet",
        "--no-figures",
        "--imputation-clips",
        "4",
    )
    assert r.code == 0, r.err
    for text in (
        "Frame-level anomaly detection",
        "loud_audio",
        "white_cam0",
        "without cam0",
        "score part",
        "Imputation PSNR",
        "wrote",
    ):
        assert text in r.out, text


def test_cli_missing_run_dir(setup, capsys, tmp_path):
    _, ds, _ = setup
    r = invoke(capsys, "eval", tmp_path / "nope", "--data", ds, "--out", tmp_path / "e")
    assert r.code == 2
    assert r.err.startswith("error: ") and "nope" in r.err and "Traceback" not in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert not (tmp_path / "e").exists()


def test_cli_corrupt_checkpoint(setup, capsys, tmp_path):
    import shutil

    _, ds, run = setup
    bad = tmp_path / "run"
    shutil.copytree(run, bad)
    (bad / "model.safetensors").write_bytes(b"not a safetensors file")
    r = invoke(capsys, "eval", bad, "--data", ds, "--out", tmp_path / "e")
    assert r.code == 2 and "model.safetensors" in r.err
    assert not (tmp_path / "e").exists()


def test_cli_dataset_with_other_modalities(setup, capsys, tmp_path):
    _, _, run = setup
    specs = [
        *TINY_SPECS[:1],
        ModalitySpec("cam1", "video", (2, 4, 4), dtype="uint8"),
        *TINY_SPECS[2:],
    ]
    other = _dataset(tmp_path / "other", specs=specs)
    r = invoke(capsys, "eval", run, "--data", other, "--out", tmp_path / "e")
    assert r.code == 2
    assert "'cam1'" in r.err and "(2, 4, 4)" in r.err and "(2, 8, 8)" in r.err
    assert len(r.err.strip().splitlines()) == 1


def test_cli_dataset_without_test_split(setup, capsys, tmp_path):
    _, _, run = setup
    ds = _dataset(tmp_path / "notest", test=False)
    r = invoke(capsys, "eval", run, "--data", ds, "--out", tmp_path / "e")
    assert r.code == 2
    assert "no clips in a 'test' split" in r.err and "edgevae data synth" in r.err


def test_cli_dataset_without_anomalies(setup, capsys, tmp_path):
    _, _, run = setup
    ds = _dataset(tmp_path / "normal", anomalies=False)
    r = invoke(capsys, "eval", run, "--data", ds, "--out", tmp_path / "e")
    assert r.code == 2
    assert "no anomalous frames" in r.err and "frame_labels" in r.err


def test_cli_missing_dataset(setup, capsys, tmp_path):
    _, _, run = setup
    r = invoke(capsys, "eval", run, "--data", tmp_path / "none", "--out", tmp_path / "e")
    assert r.code == 2 and "does not exist" in r.err


def test_cli_bad_batch_size(setup, capsys, tmp_path):
    _, ds, run = setup
    r = invoke(capsys, "eval", run, "--data", ds, "--batch-size", "0", "--out", tmp_path / "e")
    assert r.code == 2 and "batch_size" in r.err


# -- config and checks (no model needed) ----------------------------------------------------------
def test_eval_config_validation_and_round_trip():
    cfg = EvalConfig(batch_size=4, split="val")
    assert EvalConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="batch_size"):
        EvalConfig(batch_size=0)
    with pytest.raises(ConfigError, match="imputation_clips"):
        EvalConfig(imputation_clips=True)
    with pytest.raises(ConfigError, match="split"):
        EvalConfig(split="dev")
    with pytest.raises(ConfigError, match="unknown EvalConfig keys"):
        EvalConfig.from_dict({"batch": 3})


def test_check_modalities_names_the_difference():
    model = ModalitySet(TINY_SPECS)
    check_modalities(model, ModalitySet(TINY_SPECS))
    with pytest.raises(ShapeError, match=r"lacks \['motion'\]"):
        check_modalities(model, ModalitySet(TINY_SPECS[:3]))
    with pytest.raises(ShapeError, match=r"has extra \['imu'\]"):
        check_modalities(model, ModalitySet([*TINY_SPECS, ModalitySpec("imu", "vector", (3,))]))
    with pytest.raises(ShapeError, match="orders them"):
        check_modalities(model, ModalitySet([TINY_SPECS[1], TINY_SPECS[0], *TINY_SPECS[2:]]))
    with pytest.raises(ShapeError, match="'audio' is series"):
        check_modalities(
            model,
            ModalitySet([*TINY_SPECS[:2], ModalitySpec("audio", "series", (8, 8)), TINY_SPECS[3]]),
        )
