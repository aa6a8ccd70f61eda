"""Detection metrics and PSNR on synthetic arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from edgevae.evaluate import metrics as M

TYPES = ["normal", "teleport", "speed"]


def test_frame_level_repeats_clip_score_over_frames():
    scores, labels, videos = M.frame_level(
        np.array([0.5, 2.0]), np.array([[0, 0, 1], [2, 0, 0]]), np.array([7, 8])
    )
    np.testing.assert_array_equal(scores, [0.5, 0.5, 0.5, 2.0, 2.0, 2.0])
    np.testing.assert_array_equal(labels, [0, 0, 1, 2, 0, 0])
    np.testing.assert_array_equal(videos, [7, 7, 7, 8, 8, 8])


def test_frame_level_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="number of clips"):
        M.frame_level(np.zeros(3), np.zeros((2, 4)), np.zeros(2))


def test_perfect_separation_gives_auroc_1_eer_0():
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    assert M.auroc(s, y) == 1.0
    assert M.auprc(s, y) == pytest.approx(1.0)
    assert M.eer(s, y) == 0.0


def test_reversed_scores_give_auroc_0_eer_1():
    y = np.array([0, 0, 0, 1, 1])
    s = -np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    assert M.auroc(s, y) == 0.0
    assert M.eer(s, y) == 1.0


def test_random_scores_are_near_chance():
    rng = np.random.default_rng(0)
    y = rng.random(20000) < 0.3
    s = rng.random(20000)
    assert M.auroc(s, y) == pytest.approx(0.5, abs=0.02)
    assert M.eer(s, y) == pytest.approx(0.5, abs=0.02)
    assert M.auprc(s, y) == pytest.approx(0.3, abs=0.02)  # AP of chance = positive rate


def test_eer_interpolates_between_curve_points():
    # one negative above one positive out of 2 + 2: ROC (0,0) (0,.5) (.5,.5) (.5,1) (1,1)
    y = np.array([0, 1, 0, 1])
    s = np.array([0.1, 0.2, 0.3, 0.4])
    assert M.eer(s, y) == pytest.approx(0.5)
    assert M.auroc(s, y) == pytest.approx(0.75)


def test_single_class_metrics_are_none_not_nan():
    s = np.array([0.1, 0.2])
    for fn in (M.auroc, M.auprc, M.eer):
        assert fn(s, np.array([0, 0])) is None
        assert fn(s, np.array([1, 1])) is None
    fpr, tpr = M.roc_points(s, np.array([0, 0]))
    assert fpr.size == tpr.size == 0


def test_minmax_per_video_normalises_each_video_and_zeros_constant_ones():
    s = np.array([1.0, 3.0, 2.0, 10.0, 20.0, 5.0, 5.0])
    v = np.array([0, 0, 0, 1, 1, 2, 2])
    np.testing.assert_allclose(M.minmax_per_video(s, v), [0, 1, 0.5, 0, 1, 0, 0])


def test_minmax_fixes_a_per_video_offset():
    # video 1 has all scores shifted up: raw micro AUROC suffers, per-video min-max repairs it
    s = np.array([0.0, 0.1, 1.0, 10.0, 10.1, 11.0])
    y = np.array([0, 0, 1, 0, 0, 1])
    v = np.array([0, 0, 0, 1, 1, 1])
    m = M.detection_metrics(s, y, v)
    assert m["auroc"] < 1.0
    assert m["auroc_minmax"] == 1.0
    assert m["eer_minmax"] == 0.0
    assert m["auroc_macro"] == 1.0
    assert m["macro_videos"] == 2
    assert m["frames"] == 6
    assert m["anomalous_frames"] == 2


def test_macro_skips_videos_with_one_class():
    s = np.array([0.0, 1.0, 0.5, 0.6])
    y = np.array([0, 1, 0, 0])
    v = np.array([0, 0, 1, 1])
    assert M.macro_auroc(s, y != 0, v) == (1.0, 1)
    assert M.macro_auroc(s, np.zeros(4, bool), v) == (None, 0)


def test_per_type_compares_one_type_with_normal_frames_only():
    # type 1 (teleport) perfectly separated; type 2 (speed) scored below every normal frame
    s = np.array([0.2, 0.3, 0.4, 0.9, 0.95, 0.0, 0.05])
    y = np.array([0, 0, 0, 1, 1, 2, 2])
    v = np.zeros(7, int)
    rep = M.detection_report(s, y, v, TYPES)
    assert rep["per_type"]["teleport"]["auroc"] == 1.0
    assert rep["per_type"]["speed"]["auroc"] == 0.0
    assert rep["per_type"]["teleport"]["frames"] == 5  # 3 normal + 2 teleport
    assert rep["per_type"]["speed"]["anomalous_frames"] == 2
    assert rep["overall"]["auroc"] == pytest.approx(0.5)  # 6 of 12 pairs ordered right
    short = M.auroc_report(s, y, TYPES)
    assert short == {"overall": pytest.approx(0.5), "per_type": {"teleport": 1.0, "speed": 0.0}}


def test_per_type_minmax_normalises_before_filtering():
    # the speed frame holds video 0's max: normalising after dropping it would give 2.5/3
    s = np.array([0.0, 1.0, 10.0, 0.5, 0.6])
    y = np.array([0, 1, 2, 0, 0])
    v = np.array([0, 0, 0, 1, 1])
    rep = M.detection_report(s, y, v, TYPES)
    # normalised: video 0 -> [0, 0.1, 1], video 1 -> [0, 1]; teleport 0.1 beats 2 of 3 normals
    assert rep["per_type"]["teleport"]["auroc_minmax"] == pytest.approx(2 / 3)
    assert "normal" not in rep["per_type"]


def test_types_without_frames_are_left_out():
    rep = M.detection_report(np.arange(4.0), np.array([0, 0, 1, 1]), np.zeros(4), TYPES)
    assert set(rep["per_type"]) == {"teleport"}


def test_psnr_formula():
    target = np.zeros((2, 4, 4))
    pred = np.full((2, 4, 4), 0.1)  # mse 0.01 -> 20 dB
    np.testing.assert_allclose(M.psnr(pred, target), [20.0, 20.0])
    pred[1] = 0.0  # identical -> mse floor -> 100 dB
    assert M.psnr(pred, target)[1] == pytest.approx(100.0)
    np.testing.assert_allclose(
        M.psnr(np.full((4, 4), 0.5), target, data_range=1.0), [6.0206] * 2, atol=1e-4
    )  # one frame broadcast over clips
    np.testing.assert_allclose(M.psnr(pred * 255, target, data_range=255.0)[0], 20.0)
