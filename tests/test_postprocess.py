"""AVEC post-processing chain: each step kept when it must be and rejected when it must be."""

import json
import time

import numpy as np
import pytest
from scipy import ndimage

from emorec.errors import AlignmentError, ConfigError
from emorec.metrics import ccc
from emorec.postprocess import (
    PostprocessGrids,
    PostprocessParams,
    _shift_ccc_curve,
    apply_postprocessing,
    median_filter,
    shift_forward,
    tune_postprocessing,
)
from emorec.schema import FRAME_PERIOD


def smooth_track(rng, n, dims=2, width=15):
    """Smooth zero-mean random signal (moving average of white noise), unit-ish scale."""
    noise = rng.normal(size=(n + width, dims))
    kernel = np.ones(width) / np.sqrt(width)
    return np.stack([np.convolve(noise[:, d], kernel, mode="valid")[:n] for d in range(dims)], axis=1)


def concat_ccc(dev, preds=None):
    gold = np.concatenate([g for g, _ in dev.values()])
    pred = np.concatenate([p for _, p in dev.values()] if preds is None else [preds[k] for k in dev])
    return ccc(gold, pred)


def step(params, dim, name):
    return next(s for s in params.dimensions[dim].steps if s["step"] == name)


def test_grids_in_frames():
    grids = PostprocessGrids()
    windows = grids.median_windows(FRAME_PERIOD)
    assert windows[0] == 11 and windows[-1] == 501  # 0.4 s = 10 frames → 11; 20 s = 500 → 501
    assert all(w % 2 == 1 for w in windows)
    shifts = grids.shifts(FRAME_PERIOD)
    assert shifts[0] == 1 and shifts[-1] == 250 and len(shifts) == 250  # 0.04 s … 10 s, every frame


def test_median_filter_matches_scipy_nearest_edges():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2))
    for w in (1, 3, 11, 51, 501):
        np.testing.assert_array_equal(median_filter(x, w), ndimage.median_filter(x, size=(w, 1), mode="nearest"))
    with pytest.raises(ConfigError):
        median_filter(x, 4)


def test_shift_forward_pads_with_first_value():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(shift_forward(x, 2), [1.0, 1.0, 1.0, 2.0])
    np.testing.assert_array_equal(shift_forward(x, 9), [1.0, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(shift_forward(x, 0), x)


def test_shift_curve_equals_brute_force_per_recording():
    rng = np.random.default_rng(1)
    golds = [rng.normal(size=n) for n in (40, 25, 60)]
    preds = [g + rng.normal(scale=0.5, size=g.shape) + 0.3 for g in golds]
    shifts = np.arange(1, 70)  # beyond the shortest and the longest recording
    curve = _shift_ccc_curve(golds, preds, shifts, "avec")
    brute = [ccc(np.concatenate(golds), np.concatenate([shift_forward(p, k) for p in preds])) for k in shifts]
    np.testing.assert_allclose(curve, brute, rtol=1e-9, atol=1e-12)
    # Shifting the concatenation (leaking across recordings) is a different curve.
    leaky = [ccc(np.concatenate(golds), shift_forward(np.concatenate(preds), k)) for k in shifts[:10]]
    assert np.max(np.abs(np.array(leaky) - curve[:10])) > 1e-3


def test_time_shift_recovers_rater_lag():
    # The gold standard trails the signal by 5 frames (raters react late); predictions follow
    # the signal, so moving them 5 frames forward aligns them.
    rng = np.random.default_rng(2)
    dev = {}
    for r, n in enumerate((700, 500, 600)):
        s = smooth_track(rng, n)
        dev[f"rec{r}"] = (shift_forward(s, 5), s)
    params = tune_postprocessing(dev)
    for dim in range(2):
        assert params.dimensions[dim].shift == 5
        assert step(params, dim, "time_shift")["kept"]
    assert all(d.dev_ccc > d.dev_ccc_raw + 0.01 for d in params.dimensions)


def test_shift_never_leaks_across_recordings():
    params = PostprocessParams(
        dimensions=[
            _dim("arousal", shift=3),
            _dim("valence", shift=3),
        ]
    )
    a = np.arange(10.0).reshape(5, 2)
    b = 100 + np.arange(8.0).reshape(4, 2)
    out = apply_postprocessing(params, {"a": a, "b": b})
    np.testing.assert_array_equal(out["b"][:3], np.repeat(b[:1], 3, axis=0))  # b's own first frame
    np.testing.assert_array_equal(out["b"][3], b[0])
    np.testing.assert_array_equal(out["a"][3:], a[:2])


def _dim(name, **kw):
    from emorec.postprocess import DimensionParams

    return DimensionParams(name=name, **kw)


def test_centring_kept_for_offset_predictions_and_rejected_when_already_centred():
    rng = np.random.default_rng(3)
    gold = smooth_track(rng, 800)
    pred = gold + rng.normal(scale=0.3, size=gold.shape)
    offset = pred + np.array([0.5, -0.8])
    params = tune_postprocessing({"r": (gold, offset)}, grids=PostprocessGrids(median_windows_s=(), shift_range_s=(0.04, 0.0)))
    for dim, shift in enumerate((0.5, -0.8)):
        s = step(params, dim, "centring")
        assert s["kept"] and s["dev_ccc"] > s["dev_ccc_before"]
        assert params.dimensions[dim].offset == pytest.approx(-shift - (pred[:, dim].mean() - gold[:, dim].mean()))
    # Means equal to the last bit: centring cannot raise the CCC and must be rejected.
    centred = pred - pred.mean(axis=0) + gold.mean(axis=0)
    params = tune_postprocessing({"r": (gold, centred)}, grids=PostprocessGrids(median_windows_s=(), shift_range_s=(0.04, 0.0)))
    for dim in range(2):
        assert not step(params, dim, "centring")["kept"]
        assert params.dimensions[dim].offset == 0.0


def test_scaling_about_zero_kept_for_shrunk_predictions_and_rejected_when_it_moves_the_mean():
    rng = np.random.default_rng(4)
    gold = smooth_track(rng, 800)
    gold -= gold.mean(axis=0)
    no_other_steps = PostprocessGrids(median_windows_s=(), shift_range_s=(0.04, 0.0))
    params = tune_postprocessing({"r": (gold, 0.3 * gold + rng.normal(scale=0.02, size=gold.shape))}, grids=no_other_steps)
    for dim in range(2):
        assert step(params, dim, "scaling")["kept"]
        assert params.dimensions[dim].scale == pytest.approx(1 / 0.3, rel=0.05)
    # Gold far from zero and a noisy prediction: scaling about zero by σg/σp < 1 drags the
    # prediction's mean toward zero, so the dev CCC falls and the baseline step is rejected ...
    gold_hi = gold + 5.0
    noisy = gold_hi + rng.normal(scale=1.0, size=gold.shape)
    noisy += gold_hi.mean(axis=0) - noisy.mean(axis=0)
    params = tune_postprocessing({"r": (gold_hi, noisy)}, grids=no_other_steps)
    for dim in range(2):
        s = step(params, dim, "scaling")
        assert s["value"] < 1 and not s["kept"] and s["dev_ccc"] < s["dev_ccc_before"]
        assert params.dimensions[dim].scale == 1.0
    # ... while the paper's other reading, scaling about the mean, is kept.
    params = tune_postprocessing({"r": (gold_hi, noisy)}, grids=no_other_steps, scale_about="mean")
    for dim in range(2):
        assert step(params, dim, "scaling")["kept"]
        assert params.dimensions[dim].scale_center == pytest.approx(noisy[:, dim].mean())


def test_median_filter_kept_for_spiky_predictions():
    rng = np.random.default_rng(5)
    dev = {}
    for r in range(3):
        gold = smooth_track(rng, 1000, width=60)
        pred = gold.copy()
        spikes = rng.random(gold.shape) < 0.05
        pred[spikes] += rng.choice([-4.0, 4.0], size=spikes.sum())
        dev[f"r{r}"] = (gold, pred)
    params = tune_postprocessing(dev)
    for dim in range(2):
        s = step(params, dim, "median_filter")
        assert s["kept"] and params.dimensions[dim].median_window >= 11
        assert s["dev_ccc"] > s["dev_ccc_before"] + 0.1


def test_every_step_rejected_for_perfect_white_noise_predictions():
    rng = np.random.default_rng(6)
    gold = rng.normal(size=(900, 2))
    params = tune_postprocessing({"r": (gold, gold.copy())})
    for d in params.dimensions:
        assert d.kept == []
        assert (d.median_window, d.offset, d.scale, d.shift) == (0, 0.0, 1.0, 0)
        assert d.dev_ccc == d.dev_ccc_raw == pytest.approx(899 / 900)
        median = next(s for s in d.steps if s["step"] == "median_filter")
        assert median["dev_ccc"] < d.dev_ccc_raw  # it was tried and lost


def _realistic_dev(rng, recs=3, n=2000):
    dev = {}
    for r in range(recs):
        s = smooth_track(rng, n, width=40)
        gold = 0.02 + 0.1 * shift_forward(s, 12)
        pred = 0.05 + 0.04 * s + rng.normal(scale=0.05, size=s.shape)
        dev[f"dev_{r + 1}"] = (gold, pred)
    return dev


def test_apply_reproduces_tuned_dev_ccc_and_params_round_trip_json(tmp_path):
    rng = np.random.default_rng(7)
    dev = _realistic_dev(rng)
    params = tune_postprocessing(dev)
    assert {"median_filter", "centring", "scaling", "time_shift"} <= set(params.dimensions[0].kept)
    out = apply_postprocessing(params, {k: p for k, (_, p) in dev.items()})
    tuned = np.array([d.dev_ccc for d in params.dimensions])
    np.testing.assert_allclose(concat_ccc(dev, out), tuned, rtol=1e-9)
    assert np.all(tuned > np.array([d.dev_ccc_raw for d in params.dimensions]) + 0.05)
    # Running CCC never falls along the chain.
    for d in params.dimensions:
        kept = [s["dev_ccc"] for s in d.steps if s["kept"]]
        assert kept == sorted(kept) and d.dev_ccc == kept[-1]
    path = tmp_path / "postprocess.json"
    params.save(path)
    text = path.read_text()
    assert json.loads(text) == params.to_dict()
    loaded = PostprocessParams.load(path)
    assert loaded.to_dict() == params.to_dict()
    again = apply_postprocessing(loaded, {k: p for k, (_, p) in dev.items()})
    for k in out:
        np.testing.assert_array_equal(again[k], out[k])


def test_bad_input_and_bad_files(tmp_path):
    with pytest.raises(AlignmentError, match="rec9"):
        tune_postprocessing({"rec9": (np.zeros((10, 2)), np.zeros((9, 2)))})
    with pytest.raises(ConfigError):
        tune_postprocessing({})
    with pytest.raises(ConfigError, match="scale_about"):
        tune_postprocessing({"r": (np.zeros((10, 2)), np.zeros((10, 2)))}, scale_about="median")
    params = PostprocessParams(dimensions=[_dim("arousal"), _dim("valence")])
    with pytest.raises(AlignmentError, match="recX"):
        apply_postprocessing(params, {"recX": np.zeros((5, 3))})
    bad = tmp_path / "pp.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="pp.json"):
        PostprocessParams.load(bad)
    bad.write_text(json.dumps({**params.to_dict(), "version": 99}))
    with pytest.raises(ConfigError, match="pp.json.*version"):
        PostprocessParams.load(bad)


def test_recola_size_tuning_is_fast():
    rng = np.random.default_rng(8)
    dev = _realistic_dev(rng, recs=9, n=7500)
    start = time.perf_counter()
    params = tune_postprocessing(dev)
    elapsed = time.perf_counter() - start
    assert params.num_dev_frames == 9 * 7500
    assert all(d.shift == 12 for d in params.dimensions)
    assert elapsed < 15.0, f"tuning took {elapsed:.1f} s"
