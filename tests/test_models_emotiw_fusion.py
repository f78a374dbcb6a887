"""NetVLAD against a numpy implementation of Pini et al.'s eq. 1-2, and the fusion network."""

import keras
import numpy as np
import pytest

from emorec.errors import ConfigError
from emorec.models.emotiw_fusion import build_emotiw_fusion
from emorec.models.netvlad import NetVLAD


def numpy_vlad_eq12(x, centres, alpha):
    """Eq. 1-2 literally: soft assignment by squared distance, residual sums, then normalisations."""
    batch, _, dim = x.shape
    k = centres.shape[0]
    out = np.zeros((batch, k * dim))
    for b in range(batch):
        dist = ((x[b][:, None, :] - centres[None]) ** 2).sum(-1)  # (N, K)
        logits = -alpha * dist
        delta = np.exp(logits - logits.max(1, keepdims=True))
        delta /= delta.sum(1, keepdims=True)
        vlad = np.stack([(delta[:, j : j + 1] * (x[b] - centres[j])).sum(0) for j in range(k)])
        vlad /= np.linalg.norm(vlad, axis=1, keepdims=True)
        flat = vlad.reshape(-1)
        out[b] = flat / np.linalg.norm(flat)
    return out


def numpy_vlad_decoupled(x, kernel, bias, centres):
    """The layer's form with free assignment parameters (softmax of x W + b)."""
    logits = x @ kernel + bias
    a = np.exp(logits - logits.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    vlad = np.einsum("bnk,bnd->bkd", a, x) - a.sum(1)[:, :, None] * centres[None]
    vlad /= np.linalg.norm(vlad, axis=-1, keepdims=True)
    flat = vlad.reshape(len(x), -1)
    return flat / np.linalg.norm(flat, axis=-1, keepdims=True)


def test_netvlad_matches_equations_1_and_2():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 48, 16)).astype("float32")
    centres = rng.normal(size=(8, 16)).astype("float32")
    layer = NetVLAD(8)
    layer.build(x.shape)
    layer.set_from_centres(centres, alpha=0.3)
    out = np.asarray(layer(x))
    assert out.shape == (3, 8 * 16)
    np.testing.assert_allclose(
        out, numpy_vlad_eq12(x.astype("float64"), centres, 0.3), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_netvlad_with_free_assignment_weights_and_parameter_count():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 32, 256)).astype("float32")
    layer = NetVLAD(8)
    layer.build(x.shape)
    kernel = rng.normal(0, 0.1, size=(256, 8)).astype("float32")
    bias = rng.normal(size=8).astype("float32")
    centres = rng.normal(size=(8, 256)).astype("float32")
    layer.set_weights([kernel, bias, centres])
    assert layer.count_params() == 256 * 8 + 8 + 8 * 256 == 4104
    np.testing.assert_allclose(
        layer(x), numpy_vlad_decoupled(x, kernel, bias, centres), rtol=1e-4, atol=1e-5
    )
    clone = NetVLAD.from_config(layer.get_config())
    assert clone.num_clusters == 8 and clone.intra_normalize


def test_fusion_parameters_shapes_and_dropout_only_in_training():
    model = build_emotiw_fusion()
    netvlad = 256 * 8 + 8 + 8 * 256
    branch_fc = 2048 * 128 + 4 * 128  # dense without bias + batch norm
    fusion_fc = 384 * 128 + 4 * 128
    softmax = 128 * 7 + 7
    assert model.count_params() == 2 * (netvlad + branch_fc) + fusion_fc + softmax == 584_087
    assert model.get_layer("fusion_concat").output.shape[1:] == (384,)
    rng = np.random.default_rng(2)
    inputs = {
        "frame_features": rng.normal(size=(4, 48, 256)).astype("float32"),
        "slice_features": rng.normal(size=(4, 32, 256)).astype("float32"),
        "audio_features": rng.normal(size=(4, 128)).astype("float32"),
    }
    out = model(inputs)
    assert out["emotion_class"].shape == (4, 7) and out["features"].shape == (4, 128)
    np.testing.assert_allclose(np.sum(out["emotion_class"], axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(model(inputs)["emotion_class"], out["emotion_class"])
    assert not np.allclose(model(inputs, training=True)["features"], out["features"])
    dropouts = {
        layer.name: layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)
    }
    assert dropouts == pytest.approx({"fusion_input_dropout": 0.2, "fusion_fc_dropout": 0.5})


def test_fusion_keras_file_round_trip(tmp_path):
    keras.utils.set_random_seed(3)
    model = build_emotiw_fusion()
    rng = np.random.default_rng(3)
    inputs = {
        "frame_features": rng.normal(size=(2, 48, 256)).astype("float32"),
        "slice_features": rng.normal(size=(2, 32, 256)).astype("float32"),
        "audio_features": rng.normal(size=(2, 128)).astype("float32"),
    }
    # One training step so batch norm statistics and weights are no longer their initial values.
    model.compile(optimizer="adam", loss={"emotion_class": "categorical_crossentropy"})
    targets = {"emotion_class": np.eye(7, dtype="float32")[[1, 4]]}
    model.fit(inputs, targets, epochs=1, verbose=0)
    path = tmp_path / "fusion.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.get_layer("frame_netvlad"), NetVLAD)
    for key in ("emotion_class", "features"):
        np.testing.assert_allclose(loaded(inputs)[key], model(inputs)[key], rtol=1e-6, atol=1e-6)


def test_fusion_rejects_bad_keep_probability():
    with pytest.raises(ConfigError, match="input_keep_prob"):
        build_emotiw_fusion(input_keep_prob=0.0)
