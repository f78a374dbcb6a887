"""feature_lstm: config and YAML, parameter counts, fusion wiring, targets, forget bias, saving; the optimiser."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import yaml

from emorec.config import resolve_config
from emorec.config.train_config import config_path_for
from emorec.errors import ConfigError
from emorec.loss_zoo import ZooLossConfig
from emorec.models.feature_lstm import FeatureLSTMConfig, ForgetGateBias, build_feature_lstm
from emorec.models.fusion_layers import ExponentialSmoothing, LinearFusion
from emorec.optimizers import DOWNHILL_RHO, RMSpropNesterov
from emorec.postprocess import exponential_smoothing


def _config(**settings):
    base = dict(name="feature_lstm", features=("a", "b"), feature_dims=(5, 3), layers=(6, 4))
    return FeatureLSTMConfig(**{**base, **settings})


def _inputs(seed=0, time=7):
    rng = np.random.default_rng(seed)
    return {"features_a": rng.normal(size=(2, time, 5)).astype("float32"),
            "features_b": rng.normal(size=(2, time, 3)).astype("float32")}


def test_yaml_mirrors_the_defaults():
    doc = yaml.safe_load(config_path_for("feature_lstm").read_text())
    assert doc["model"] == FeatureLSTMConfig(name="feature_lstm").to_dict()
    assert doc["loss"] == ZooLossConfig().to_dict()
    config = resolve_config(config_path_for("feature_lstm"))
    assert config.optimizer.name == "rmsprop_nesterov" and config.optimizer.learning_rate == 1e-4
    assert config.optimizer.momentum == 0.9 and config.optimizer.rho == pytest.approx(2 ** (-1 / 14))
    assert config.training.early_stopping_patience == 50 and config.data.feature_norm == "speaker"
    demo = resolve_config(config_path_for("feature_lstm"), demo=True)
    assert demo.data.window_frames == 250 and demo.data.hop_frames == 50


@pytest.mark.parametrize("settings, expected", [
    ({}, 378 + 188 + 10),  # peephole: 4u(d+u) + 4u bias + 3u peepholes per layer
    ({"cell": "keras"}, (4 * 6 * 14 + 24) + (4 * 4 * 10 + 16) + 10),
    ({"fusion": "layered"}, 306 + 236 + 10),  # layer 0 reads a (5), layer 1 its 6 outputs + b (3)
    ({"bidirectional": True}, 2 * 378 + 2 * (4 * 4 * 16 + 28) + 18),
    ({"targets": ("valence",)}, 378 + 188 + 5),
])
def test_parameter_counts(settings, expected):
    assert build_feature_lstm(_config(**settings)).count_params() == expected


def test_layered_fusion_feeds_each_set_its_layer():
    model = build_feature_lstm(_config(fusion="layered", layers=(6, 4, 3), features=("a", "b", "c"),
                                       feature_dims=(5, 3, 2), fusion_layers=(0, 2, 2)))
    assert model.get_layer("lstm_0").input.shape[-1] == 5
    assert model.get_layer("lstm_1").input.shape[-1] == 6
    assert model.get_layer("lstm_2").input.shape[-1] == 4 + 3 + 2


def test_config_rules():
    with pytest.raises(ConfigError, match="fusion_layers"):
        FeatureLSTMConfig.for_model("feature_lstm", {"features": ["a", "b"], "fusion": "layered",
                                                     "fusion_layers": [1, 1]})
    with pytest.raises(ConfigError, match="layered feeds set k to layer k"):
        FeatureLSTMConfig.for_model("feature_lstm", {"features": ["a", "b", "c"], "fusion": "layered"})
    with pytest.raises(ConfigError, match="feature_dims"):
        FeatureLSTMConfig.for_model("feature_lstm", {"features": ["a"], "feature_dims": [2, 3]})
    assert FeatureLSTMConfig(name="feature_lstm", targets=("valence", "arousal")).targets == ("arousal", "valence")
    with pytest.raises(ConfigError, match="model.features and model.feature_dims are not known"):
        build_feature_lstm(FeatureLSTMConfig(name="feature_lstm"))


def test_single_target_writes_its_column_and_zero_elsewhere():
    model = build_feature_lstm(_config(targets=("valence",)))
    out = model(_inputs())["emotion"].numpy()
    assert out.shape == (2, 7, 2) and not out[..., 0].any() and out[..., 1].std() > 0


def test_forward_lstm_is_causal_blstm_is_not():
    x = _inputs()
    later = {k: v.copy() for k, v in x.items()}
    later["features_a"][:, 5:] += 3.0
    forward = build_feature_lstm(_config())
    a, b = forward(x)["emotion"].numpy(), forward(later)["emotion"].numpy()
    np.testing.assert_allclose(a[:, :5], b[:, :5], rtol=1e-6)
    assert np.abs(a[:, 5:] - b[:, 5:]).max() > 1e-3
    both = build_feature_lstm(_config(bidirectional=True))
    assert np.abs(both(x)["emotion"].numpy()[:, :5] - both(later)["emotion"].numpy()[:, :5]).max() > 1e-4


def test_forget_gate_starts_at_two():
    bias = ForgetGateBias(2.0)((16,)).numpy()
    np.testing.assert_array_equal(bias, [0] * 4 + [2] * 4 + [0] * 8)
    keras_model = build_feature_lstm(_config(cell="keras"))
    kernel, recurrent, b = keras_model.get_layer("lstm_0").get_weights()
    np.testing.assert_array_equal(b, np.r_[np.zeros(6), np.full(6, 2.0), np.zeros(12)])
    peephole = build_feature_lstm(_config())
    assert peephole.get_layer("lstm_0").cell.forget_bias == 2.0


def test_keras_file_reloads(tmp_path):
    model = build_feature_lstm(_config(fusion="layered", bidirectional=True, targets=("arousal",)))
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path, compile=False)
    x = _inputs(1)
    np.testing.assert_allclose(again(x)["emotion"].numpy(), model(x)["emotion"].numpy(), rtol=1e-6)


def test_smoothing_layer_equals_the_post_processing():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 20, 2)).astype("float32")
    for direction in ("forward", "backward"):
        layer = ExponentialSmoothing([0.3, 1.0], direction)
        got = layer(x).numpy()
        for row in range(2):
            np.testing.assert_allclose(got[row, :, 0], exponential_smoothing(x[row, :, 0], 0.3, direction),
                                       rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got[row, :, 1], x[row, :, 1])
    fused = LinearFusion([[2.0, 0.0], [1.0, -1.0]], [0.5, 0.25])([x, x + 1]).numpy()
    np.testing.assert_allclose(fused[..., 0], 2 * x[..., 0] + (x[..., 0] + 1) + 0.5, rtol=1e-6)
    np.testing.assert_allclose(fused[..., 1], -(x[..., 1] + 1) + 0.25, rtol=1e-6)


def _downhill_steps(grads, lr, rho, mu, eps, centered=True, nesterov=True):
    """downhill's RMSProp + momentum by hand (theta starts at 0)."""
    g1 = g2 = v = theta = 0.0
    for g in grads:
        g1 = rho * g1 + (1 - rho) * g
        g2 = rho * g2 + (1 - rho) * g * g
        delta = -lr * g / np.sqrt((g2 - g1 * g1 if centered else g2) + eps)
        v_prev, v = v, mu * v + delta
        theta = theta + (mu * mu * v_prev + (1 + mu) * delta if nesterov else v)
    return theta


@pytest.mark.parametrize("centered, nesterov", [(True, True), (False, True), (True, False)])
def test_rmsprop_nesterov_matches_downhill(centered, nesterov):
    grads = [0.5, -0.2, 0.8]
    opt = RMSpropNesterov(learning_rate=0.01, centered=centered, nesterov=nesterov)
    w = keras.Variable(np.zeros(1, "float32"))
    for g in grads:
        opt.apply_gradients([(keras.ops.convert_to_tensor(np.array([g], "float32")), w)])
    expected = _downhill_steps(grads, 0.01, DOWNHILL_RHO, 0.9, 1e-8, centered, nesterov)
    assert float(w.numpy()[0]) == pytest.approx(expected, rel=1e-5)
    again = RMSpropNesterov.from_config(opt.get_config())
    assert (again.rho, again.momentum, again.epsilon, again.centered, again.nesterov) == (
        opt.rho, 0.9, 1e-8, centered, nesterov)
