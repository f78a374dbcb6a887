"""Evaluation metrics: hand-computed values, independent NumPy formulas, streaming Keras CCC."""

import keras
import numpy as np
import pytest

from emorec.errors import AlignmentError, ConfigError, LabelError
from emorec.metrics import CCCMetric, ccc, ccc_from_sums, evaluate_recordings, pearson, rmse

GOLD = np.array([1.0, 2.0, 3.0])
PRED = np.array([2.0, 2.0, 5.0])
# μg = 2, μp = 3; centred gold (-1, 0, 1), centred pred (-1, -1, 2);
# Σdg² = 2, Σdp² = 6, Σdg·dp = 1 + 0 + 2 = 3, (μg − μp)² = 1.


def test_ccc_conventions_by_hand():
    # avec: var_g = 2/2 = 1, var_p = 6/2 = 3, cov = 3/3 = 1 → 2·1 / (1 + 3 + 1) = 0.4
    assert ccc(GOLD, PRED) == pytest.approx(0.4)
    assert ccc(GOLD, PRED, "avec") == pytest.approx(0.4)
    # biased: var_g = 2/3, var_p = 2, cov = 1 → 2 / (2/3 + 2 + 1) = 6/11
    assert ccc(GOLD, PRED, "biased") == pytest.approx(6 / 11)
    # unbiased: var_g = 1, var_p = 3, cov = 3/2 → 3 / (1 + 3 + 1) = 0.6
    assert ccc(GOLD, PRED, "unbiased") == pytest.approx(0.6)
    # Identical series: avec gives (N−1)/N (variances N−1, covariance N), the others 1.
    assert ccc(GOLD, GOLD, "avec") == pytest.approx(2 / 3)
    assert ccc(GOLD, GOLD, "biased") == pytest.approx(1.0)
    assert ccc(GOLD, GOLD, "unbiased") == pytest.approx(1.0)


def test_pearson_and_rmse_by_hand():
    # r = 3 / sqrt(2 · 6) = sqrt(3)/2; errors (1, 0, 2) → rmse = sqrt(5/3)
    assert pearson(GOLD, PRED) == pytest.approx(np.sqrt(3) / 2)
    assert rmse(GOLD, PRED) == pytest.approx(np.sqrt(5 / 3))


def test_against_numpy_cov_on_random_data():
    rng = np.random.default_rng(0)
    g = rng.normal(0.3, 0.2, size=(500, 2))
    p = 0.6 * g + rng.normal(0.05, 0.1, size=g.shape)
    out_avec, out_biased, out_unbiased = ccc(g, p, "avec"), ccc(g, p, "biased"), ccc(g, p, "unbiased")
    for i in range(2):
        x, y = p[:, i], g[:, i]
        mean_term = (x.mean() - y.mean()) ** 2
        c_n = np.cov(x, y, bias=True)
        c_n1 = np.cov(x, y)
        assert out_avec[i] == pytest.approx(2 * c_n[0, 1] / (c_n1[0, 0] + c_n1[1, 1] + mean_term), rel=1e-12)
        assert out_biased[i] == pytest.approx(2 * c_n[0, 1] / (c_n[0, 0] + c_n[1, 1] + mean_term), rel=1e-12)
        assert out_unbiased[i] == pytest.approx(2 * c_n1[0, 1] / (c_n1[0, 0] + c_n1[1, 1] + mean_term), rel=1e-12)
        assert pearson(y, x) == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-12)
        assert rmse(y, x) == pytest.approx(np.sqrt(np.mean((x - y) ** 2)), rel=1e-12)
        assert ccc(y, x) == pytest.approx(out_avec[i])
    sums = [len(p), p.sum(0), g.sum(0), (p * p).sum(0), (g * g).sum(0), (p * g).sum(0)]
    for conv in ("avec", "biased", "unbiased"):
        np.testing.assert_allclose(ccc_from_sums(*sums, convention=conv), ccc(g, p, conv), rtol=1e-10)


def test_undefined_and_bad_input():
    assert np.isnan(ccc([1.0], [1.0]))
    assert np.isnan(ccc([1.0, 1.0], [1.0, 1.0]))
    assert np.isnan(pearson([1.0, 2.0], [3.0, 3.0]))
    assert ccc([1.0, 2.0], [3.0, 3.0]) == pytest.approx(0.0)
    with pytest.raises(ConfigError, match="convention"):
        ccc(GOLD, PRED, "matlab")
    with pytest.raises(AlignmentError, match="shape"):
        ccc(GOLD, PRED[:2])
    with pytest.raises(LabelError, match="NaN"):
        ccc([1.0, np.nan], [1.0, 2.0])


def test_evaluate_recordings_by_hand():
    # Recording r1: arousal gold (0, 2) pred (0, 2) → avec ccc = 2·1/(2 + 2 + 0) = 0.5
    # Recording r2: arousal gold (0, 2) pred (1, 1) → cov 0 → ccc 0; per-recording mean 0.25.
    # Concatenated: gold (0, 2, 0, 2), pred (0, 2, 1, 1); both means 1; centred gold (−1, 1, −1, 1),
    # pred (−1, 1, 0, 0): Σdg·dp = 2 → cov = 2/4 = 0.5, var_g = 4/3, var_p = 2/3 → ccc = 1/2 = 0.5.
    # Valence gold all 0 and pred (0, 0) / (1, 1); arousal errors (0, 0, 1, 1), valence (0, 0, 1, 1):
    # E_a = sqrt(2/4), E_v = sqrt(2/4), E_av = sqrt((0 + 0 + 2 + 2)/4) = 1.
    recs = {
        "r1": (np.array([[0.0, 0.0], [2.0, 0.0]]), np.array([[0.0, 0.0], [2.0, 0.0]])),
        "r2": (np.array([[0.0, 0.0], [2.0, 0.0]]), np.array([[1.0, 1.0], [1.0, 1.0]])),
    }
    out = evaluate_recordings(recs)
    assert out["convention"] == "avec"
    assert out["num_recordings"] == 2 and out["num_frames"] == 4
    assert out["arousal"]["ccc"] == pytest.approx(0.5)
    assert out["arousal"]["ccc_per_recording_mean"] == pytest.approx(0.25)
    assert out["per_recording"]["r1"]["arousal"]["ccc"] == pytest.approx(0.5)
    assert out["per_recording"]["r2"]["arousal"]["ccc"] == pytest.approx(0.0)
    assert out["per_recording"]["r2"]["num_frames"] == 2
    assert out["E_a"] == pytest.approx(np.sqrt(0.5))
    assert out["E_v"] == pytest.approx(np.sqrt(0.5))
    assert out["E_av"] == pytest.approx(1.0)
    assert out["E_av"] == pytest.approx(np.hypot(out["E_a"], out["E_v"]))
    assert out["arousal"]["rmse"] == out["E_a"]
    # Valence gold is constant and r1's prediction equals it: undefined there, skipped in the mean.
    assert np.isnan(out["per_recording"]["r1"]["valence"]["ccc"])
    assert out["valence"]["ccc_per_recording_mean"] == pytest.approx(0.0)


def test_nguyen_table_numbers_follow_the_e_av_definition():
    # Nguyen et al. Table III: E_a 0.474, E_v 0.187 → E_av 0.510 (= sqrt(E_a² + E_v²)).
    rng = np.random.default_rng(5)
    gold = rng.normal(size=(1000, 2))
    err = rng.normal(size=(1000, 2))
    err *= np.array([0.474, 0.187]) / np.sqrt(np.mean(err**2, axis=0))
    out = evaluate_recordings({"a": (gold, gold + err)})
    assert out["E_a"] == pytest.approx(0.474) and out["E_v"] == pytest.approx(0.187)
    assert round(out["E_av"], 3) == 0.510


def test_evaluate_recordings_rejects_mismatch():
    with pytest.raises(AlignmentError, match="rec7"):
        evaluate_recordings({"rec7": (np.zeros((5, 2)), np.zeros((4, 2)))})
    with pytest.raises(AlignmentError, match="rec7"):
        evaluate_recordings({"rec7": (np.zeros((5, 3)), np.zeros((5, 3)))})


def test_ccc_metric_streams_three_batches_with_masks():
    rng = np.random.default_rng(2)
    metric = CCCMetric()
    golds, preds = [], []
    for b in range(3):
        y = rng.normal(0.2, 0.3, size=(2, 15, 2)).astype(np.float32)
        x = (0.5 * y + rng.normal(0, 0.2, size=y.shape)).astype(np.float32)
        mask = np.ones((2, 15), np.float32)
        mask[1, 10 - 3 * b :] = 0
        x_garbage = x.copy()
        x_garbage[mask == 0] = 50.0  # padding must not count
        metric.update_state(y, x_garbage, sample_weight=mask)
        keep = mask.reshape(-1) > 0
        golds.append(y.reshape(-1, 2)[keep])
        preds.append(x.reshape(-1, 2)[keep])
    expected = ccc(np.concatenate(golds), np.concatenate(preds))
    np.testing.assert_allclose(metric.result_per_dimension().numpy(), expected, rtol=1e-6)  # float32 result
    assert float(metric.result()) == pytest.approx(expected.mean(), rel=1e-6)
    arousal = CCCMetric(dimension=0, convention="biased", name="ccc_a")
    for g, p in zip(golds, preds):
        arousal.update_state(g[None], p[None])
    assert float(arousal.result()) == pytest.approx(ccc(np.concatenate(golds)[:, 0], np.concatenate(preds)[:, 0], "biased"), rel=1e-6)
    metric.reset_state()
    assert np.all(np.isnan(metric.result_per_dimension().numpy()))


def test_ccc_metric_config_round_trip():
    metric = CCCMetric(num_dims=2, dimension=1, convention="unbiased", name="ccc_v")
    clone = keras.metrics.deserialize(keras.metrics.serialize(metric))
    assert isinstance(clone, CCCMetric)
    assert (clone.num_dims, clone.dimension, clone.convention, clone.name) == (2, 1, "unbiased", "ccc_v")
    with pytest.raises(ConfigError):
        CCCMetric(dimension=2)
