"""The Tzirakis et al. end-to-end models: shapes, parameter counts, numerics, saving, init, streaming."""

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

from emorec.errors import ConfigError
from emorec.models import build_model, get_model_spec
from emorec.models.e2e import CONFIG_CLASSES, init_from_unimodal
from emorec.models.geometry import (
    TEMPLATE_SHAPE,
    ProcrustesAlign,
    align_np,
    mean_shape_from_landmarks,
    normalize_shape_np,
)
from emorec.models.speech import ChannelMaxPool
from emorec.models.twin import state_twin
from emorec.models.visual import IMAGENET_NOTOP_FILE
from emorec.schema import DEFAULT_FACE_SIZE, FRAME_SAMPLES

TRAIN_DIR = Path(__file__).resolve().parent.parent / "train"
MODELS = ("e2e_audio", "e2e_video", "e2e_av", "e2e_av_geometric")


# -- parameter counts computed from the layer lists ---------------------------------------------


def bn(channels):
    return 4 * channels  # gamma, beta, moving mean, moving variance


def speech_cnn_params(taps1, taps2, batch_norm=True):
    filters = 40
    conv1 = taps1 * 1 * filters + (0 if batch_norm else filters)
    conv2 = taps2 * filters * filters + (0 if batch_norm else filters)
    return conv1 + conv2 + (2 * bn(filters) if batch_norm else 0)


def resnet50_notop_params():
    total = 7 * 7 * 3 * 64 + 64 + bn(64)  # conv1 with bias + its batch norm
    channels = 64
    for blocks, width in ((3, 64), (4, 128), (6, 256), (3, 512)):
        out = 4 * width
        for block in range(blocks):
            total += channels * width + width + bn(width)  # 1x1
            total += 9 * width * width + width + bn(width)  # 3x3
            total += width * out + out + bn(out)  # 1x1 expand
            if block == 0:
                total += channels * out + out + bn(out)  # projection shortcut
            channels = out
    return total


def head_params(features, units=256):
    lstm1 = (features + units) * 4 * units + 4 * units + 3 * units
    lstm2 = (2 * units) * 4 * units + 4 * units + 3 * units
    return lstm1 + lstm2 + units * 2 + 2


SPEECH = speech_cnn_params(20, 40)
RESNET = resnet50_notop_params()


def test_hand_counts():
    assert SPEECH == 65_120
    assert RESNET == 23_587_712
    assert head_params(1280) == 2_101_250
    assert head_params(3328) == 4_198_402


# -- shared models (ResNet-50 builds are the slow part) -----------------------------------------


@pytest.fixture(scope="module")
def audio_model():
    return build_model("e2e_audio", {})


@pytest.fixture(scope="module")
def video_model():
    return build_model("e2e_video", {"name": "e2e_video"})


@pytest.fixture(scope="module")
def av_model():
    return build_model("e2e_av", {})


def _audio(batch, steps, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, steps, FRAME_SAMPLES)).astype("float32")


def _video(batch, steps, size=DEFAULT_FACE_SIZE, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(batch, steps, size, size, 3)).astype("float32")


# -- registry and configs -----------------------------------------------------------------------


def test_registered_with_modalities():
    assert get_model_spec("e2e_audio").modalities == ("audio",)
    assert get_model_spec("e2e_video").modalities == ("video",)
    assert get_model_spec("e2e_av").modalities == ("audio", "video")
    assert get_model_spec("e2e_av_geometric").modalities == ("audio", "video")


@pytest.mark.parametrize("name", MODELS)
def test_yaml_model_section_equals_defaults(name):
    doc = yaml.safe_load((TRAIN_DIR / f"{name}.yaml").read_text())
    model = dict(doc["model"])
    assert model["name"] == name
    # The YAML states every setting of the model, at its default (the paper's).
    defaults = CONFIG_CLASSES[name](name=name).to_dict()
    if "mean_shape" in defaults:
        np.testing.assert_allclose(model.pop("mean_shape"), defaults.pop("mean_shape"))
    assert model == defaults
    assert doc["optimizer"] == {"name": "adam", "learning_rate": 1.0e-4, "epsilon": 1.0e-8}
    assert doc["data"]["window"] == 6.0
    assert doc["data"]["batch_size"] == (25 if name == "e2e_audio" else 2)
    assert "demo" in doc


def test_config_errors():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) model.lstm_unit \(known: .*lstm_units"):
        build_model("e2e_audio", {"lstm_unit": 3})
    with pytest.raises(ConfigError, match="audio_variant"):
        build_model("e2e_audio", {"audio_variant": "mfcc"})
    with pytest.raises(ConfigError, match="e2e_video"):
        build_model("e2e_audio", {"name": "e2e_video"})
    with pytest.raises(ConfigError, match="recurrent"):
        build_model("e2e_audio", {"recurrent": "gru"})


# -- speech network -----------------------------------------------------------------------------


def np_conv_same(x, kernel):
    """1-D 'same' convolution (TF/Keras padding: the extra zero goes to the right)."""
    taps = kernel.shape[0]
    left = (taps - 1) // 2
    padded = np.pad(x, ((left, taps - 1 - left), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, taps, axis=0)  # (L, Cin, K)
    return np.einsum("lck,kco->lo", windows, kernel)


def np_batch_norm(x, gamma, beta, mean, var, eps=1e-5):
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def np_speech_frame(frame, w):
    """The released speech CNN on one frame, in inference mode."""
    h = np_conv_same(frame[:, None].astype(np.float64), w["conv1_conv"][0])
    h = np.maximum(np_batch_norm(h, *w["conv1_bn"]), 0.0)
    h = h.reshape(-1, 2, 40).max(axis=1)  # pool 2 over time
    h = np_conv_same(h, w["conv2_conv"][0])
    h = np.maximum(np_batch_norm(h, *w["conv2_bn"]), 0.0)
    h = h.reshape(h.shape[0], 4, 10).max(axis=2)  # groups of 10 adjacent channels
    return h.reshape(-1)  # time-major


def test_speech_cnn_matches_numpy(audio_model):
    cnn = audio_model.get_layer("speech_cnn")
    assert cnn.count_params() == SPEECH
    rng = np.random.default_rng(4)
    weights = {}
    for name in ("conv1_conv", "conv2_conv", "conv1_bn", "conv2_bn"):
        layer = cnn.get_layer(name)
        values = [rng.normal(scale=0.3, size=v.shape) for v in layer.get_weights()]
        if name.endswith("bn"):
            values[3] = rng.uniform(0.5, 2.0, size=values[3].shape)  # positive variance
        layer.set_weights(values)
        weights[name] = values
    bn_layer = cnn.get_layer("conv1_bn")
    assert bn_layer.momentum == 0.997 and bn_layer.epsilon == 1e-5 and bn_layer.scale
    assert not cnn.get_layer("conv1_conv").use_bias
    frames = _audio(1, 2, seed=5)[0]
    got = np.asarray(cnn(frames, training=False))
    want = np.stack([np_speech_frame(f, weights) for f in frames])
    assert got.shape == (2, 1280)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_channel_max_pool_groups_adjacent_channels():
    x = np.random.default_rng(6).normal(size=(2, 3, 40)).astype("float32")
    got = np.asarray(ChannelMaxPool(10)(x))
    want = np.stack([x[..., 10 * g : 10 * (g + 1)].max(axis=-1) for g in range(4)], axis=-1)
    np.testing.assert_array_equal(got, want)


def test_speech_weight_decay_is_tf1_l2(audio_model):
    cnn = audio_model.get_layer("speech_cnn")
    kernels = [cnn.get_layer(n).kernel for n in ("conv1_conv", "conv2_conv")]
    expected = sum(1e-4 * np.sum(np.square(np.asarray(k))) / 2 for k in kernels)
    assert len(audio_model.losses) == 2
    np.testing.assert_allclose(float(sum(audio_model.losses)), expected, rtol=1e-5)


def test_e2e_audio_shapes_counts_and_frame_independence(audio_model):
    assert audio_model.count_params() == SPEECH + head_params(1280) == 2_166_370
    audio = _audio(2, 3)
    out = audio_model({"audio": audio})
    assert set(out) == {"emotion"} and out["emotion"].shape == (2, 3, 2)
    # Frames are convolved on their own: changing frame 1 leaves frame 0's features alone.
    feats = keras.Model(audio_model.input, audio_model.get_layer("features").output)
    changed = audio.copy()
    changed[:, 1] += 1.0
    a, b = np.asarray(feats({"audio": audio})), np.asarray(feats({"audio": changed}))
    assert a.shape == (2, 3, 1280)
    np.testing.assert_array_equal(a[:, 0], b[:, 0])
    assert np.abs(a[:, 1] - b[:, 1]).max() > 0


def test_e2e_audio_paper_variant():
    model = build_model("e2e_audio", {"audio_variant": "paper"})
    cnn = model.get_layer("speech_cnn")
    assert cnn.get_layer("conv1_conv").kernel_size == (80,)
    assert cnn.get_layer("conv2_conv").kernel_size == (4000,)
    assert cnn.count_params() == speech_cnn_params(80, 4000) == 6_403_520
    assert model.count_params() == speech_cnn_params(80, 4000) + head_params(1280)
    audio = _audio(1, 3)
    assert model({"audio": audio})["emotion"].shape == (1, 3, 2)
    # The whole window is one signal: frame 0's features see frame 1.
    feats = keras.Model(model.input, model.get_layer("features").output)
    changed = audio.copy()
    changed[:, 1] += 1.0
    a, b = np.asarray(feats({"audio": audio})), np.asarray(feats({"audio": changed}))
    assert a.shape == (1, 3, 1280)
    assert np.abs(a[:, 0] - b[:, 0]).max() > 0

    bare = build_model("e2e_audio", {"audio_variant": "paper", "audio_batch_norm": False})
    assert bare.get_layer("speech_cnn").count_params() == speech_cnn_params(80, 4000, False)


def test_e2e_audio_gradients_reach_every_trainable_weight():
    model = build_model("e2e_audio", {"lstm_units": 8})
    audio = _audio(2, 3, seed=13)
    with tf.GradientTape() as tape:
        emotion = model({"audio": audio}, training=True)["emotion"]
        loss = keras.ops.mean(keras.ops.square(emotion)) + sum(model.losses)
    grads = tape.gradient(loss, model.trainable_variables)
    assert len(grads) == len(model.trainable_variables) == 6 + 2 * 5 + 2  # 2 convs + 2 x (gamma, beta); 2 x 5 LSTM; Dense
    assert all(g is not None and float(keras.ops.max(keras.ops.abs(g))) > 0 for g in grads)


def test_e2e_audio_keras_roundtrip(audio_model, tmp_path):
    audio = _audio(2, 4, seed=7)
    path = tmp_path / "e2e_audio.keras"
    audio_model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    np.testing.assert_array_equal(
        np.asarray(loaded({"audio": audio})["emotion"]),
        np.asarray(audio_model({"audio": audio})["emotion"]),
    )


def test_streaming_model_equals_offline(audio_model):
    audio = _audio(2, 7, seed=8)
    offline = np.asarray(audio_model({"audio": audio})["emotion"])
    stream = state_twin(audio_model, outputs=("emotion",))
    states = np.zeros((2, 4, 256), np.float32)
    chunks = []
    for start, stop in ((0, 3), (3, 4), (4, 7)):
        out = stream({"audio": audio[:, start:stop], "states": states})
        chunks.append(np.asarray(out["emotion"]))
        states = np.asarray(out["states"])
    np.testing.assert_allclose(np.concatenate(chunks, axis=1), offline, rtol=1e-5, atol=1e-5)
    # The streaming model owns no weights of its own.
    assert {id(w) for w in stream.weights} == {id(w) for w in audio_model.weights}


# -- visual network -----------------------------------------------------------------------------


def test_e2e_video(video_model):
    cnn = video_model.get_layer("visual_cnn")
    assert cnn.count_params() == RESNET
    assert video_model.count_params() == RESNET + head_params(2048)
    trunk = cnn.get_layer("resnet50")
    norms = [layer for layer in trunk.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert {(layer.momentum, layer.epsilon) for layer in norms} == {(0.997, 1e-5)}
    assert len(video_model.losses) == 53  # one L2 term per ResNet-50 conv kernel
    out = video_model({"video": _video(1, 3)})
    assert out["emotion"].shape == (1, 3, 2)


def test_visual_weights_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="does not exist"):
        build_model("e2e_video", {"visual_weights": str(tmp_path / "missing.weights.h5")})
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty_keras_home"))
    with pytest.raises(ConfigError, match=IMAGENET_NOTOP_FILE):
        build_model("e2e_video", {"visual_weights": "imagenet", "input_norm": "caffe"})
    # ImageNet weights need the preprocessing they were trained with.
    with pytest.raises(ConfigError, match="input_norm must be caffe with visual_weights: imagenet"):
        build_model("e2e_video", {"visual_weights": "imagenet"})


def test_resnet_convs_start_from_he_initialisation():
    import keras

    model = build_model("e2e_video", {"face_size": 32, "lstm_units": 4})
    trunk = model.get_layer("visual_cnn").get_layer("resnet50")
    convs = [layer for layer in trunk.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 53
    for layer in convs:
        cfg = layer.get_config()["kernel_initializer"]["config"]
        assert (cfg["scale"], cfg["mode"], cfg["distribution"]) == (2.0, "fan_in", "truncated_normal")
    # The largest conv's weights have He's spread: std = sqrt(2 / fan_in).
    kernel = max((np.asarray(c.kernel) for c in convs), key=lambda k: k.size)
    fan_in = kernel.shape[0] * kernel.shape[1] * kernel.shape[2]
    assert kernel.std() == pytest.approx(np.sqrt(2.0 / fan_in), rel=0.05)


@pytest.mark.slow
def test_visual_weights_from_file(video_model, tmp_path):
    path = tmp_path / "visual.weights.h5"
    video_model.get_layer("visual_cnn").save_weights(path)
    other = build_model("e2e_video", {"visual_weights": str(path), "face_size": 48})
    for a, b in zip(other.get_layer("visual_cnn").weights, video_model.get_layer("visual_cnn").weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_imagenet_weights_come_from_the_keras_cache(tmp_path, monkeypatch):
    import h5py
    from keras.src.legacy.saving import legacy_h5_format  # writes Keras' legacy .h5 layout

    trunk = keras.applications.ResNet50(
        include_top=False, weights=None, input_shape=(48, 48, 3), pooling="avg"
    )
    (tmp_path / "models").mkdir()
    with h5py.File(tmp_path / "models" / IMAGENET_NOTOP_FILE, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, trunk)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    model = build_model("e2e_video", {"visual_weights": "imagenet", "input_norm": "caffe", "face_size": 48})
    loaded = model.get_layer("visual_cnn").get_layer("resnet50")
    for a, b in zip(loaded.weights, trunk.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_input_norm_modes():
    from emorec.models.visual import InputNorm

    x = np.random.default_rng(9).uniform(size=(2, 4, 4, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(InputNorm("none")(x)), x)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(np.asarray(InputNorm("imagenet")(x)), (x - mean) / std, rtol=1e-5, atol=1e-6)
    caffe = x[..., ::-1] * 255.0 - np.array([103.939, 116.779, 123.68])
    np.testing.assert_allclose(np.asarray(InputNorm("caffe")(x)), caffe, rtol=1e-5, atol=1e-4)


# -- multimodal ---------------------------------------------------------------------------------


def test_e2e_av_shapes_and_counts(av_model):
    assert av_model.get_layer("features").output.shape[-1] == 3328
    assert av_model.count_params() == SPEECH + RESNET + head_params(3328) == 27_851_234
    out = av_model({"audio": _audio(1, 3), "video": _video(1, 3)})
    assert out["emotion"].shape == (1, 3, 2)
    twin = state_twin(av_model, outputs=("emotion",))
    step = twin({"audio": _audio(1, 2), "video": _video(1, 2), "states": np.zeros((1, 4, 256), "float32")})
    assert step["emotion"].shape == (1, 2, 2) and step["states"].shape == (1, 4, 256)


def _values(layer):
    return [np.array(w) for w in layer.weights]


def test_init_from_unimodal(audio_model, video_model, av_model, tmp_path):
    audio_path = tmp_path / "audio.keras"
    audio_model.save(audio_path)
    head_before = _values(av_model.get_layer("recurrent"))

    init_from_unimodal(av_model, audio_model=str(audio_path), video_model=video_model)

    for name, source in (("speech_cnn", audio_model), ("visual_cnn", video_model)):
        for a, b in zip(_values(av_model.get_layer(name)), _values(source.get_layer(name))):
            np.testing.assert_array_equal(a, b)
    head_after = _values(av_model.get_layer("recurrent"))
    for a, b in zip(head_after, head_before):
        np.testing.assert_array_equal(a, b)  # the LSTMs stay as initialised
    # ... and they are not the unimodal ones (the second LSTM layer has the same shapes).
    av_lstm2 = av_model.get_layer("recurrent").rnns[1].cell.kernel
    audio_lstm2 = audio_model.get_layer("recurrent").rnns[1].cell.kernel
    assert av_lstm2.shape == audio_lstm2.shape
    assert not np.allclose(np.asarray(av_lstm2), np.asarray(audio_lstm2))

    with pytest.raises(ConfigError, match="speech_cnn"):
        init_from_unimodal(av_model, audio_model=build_model("e2e_audio", {"audio_variant": "paper"}))


# -- geometric variant --------------------------------------------------------------------------


def kabsch_align(points, mean_shape):
    """Independent reference: SVD orthogonal Procrustes restricted to rotations."""
    p, q = normalize_shape_np(points), normalize_shape_np(mean_shape)
    u, _, vt = np.linalg.svd(p.T @ q)
    d = np.sign(np.linalg.det(u @ vt))
    rotation = u @ np.diag([1.0, d]) @ vt
    return p @ rotation


def test_procrustes_align_against_svd():
    rng = np.random.default_rng(10)
    template = np.asarray(TEMPLATE_SHAPE)
    layer = ProcrustesAlign(TEMPLATE_SHAPE)
    shapes = []
    for _ in range(6):
        angle, scale = rng.uniform(-np.pi, np.pi), rng.uniform(20, 90)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        noisy = template + rng.normal(scale=0.03, size=template.shape)
        shapes.append(scale * noisy @ rot.T + rng.uniform(0, 96, size=2))
    shapes = np.stack(shapes).reshape(2, 3, 5, 2).astype("float32")
    got = np.asarray(layer(shapes))
    assert got.shape == (2, 3, 10)
    want = np.stack([kabsch_align(s, template) for s in shapes.reshape(-1, 5, 2)])
    np.testing.assert_allclose(got.reshape(-1, 5, 2), want, atol=1e-5)
    np.testing.assert_allclose(align_np(shapes, template).reshape(2, 3, 10), got, atol=1e-5)
    # An exact similarity transform of the template lands on the normalised template.
    exact = 40.0 * template @ np.array([[0.0, -1.0], [1.0, 0.0]]).T + 7.0
    np.testing.assert_allclose(
        np.asarray(layer(exact[None].astype("float32")))[0].reshape(5, 2),
        normalize_shape_np(template),
        atol=1e-6,
    )
    # A frame without landmarks (all zeros) gives zeros, not NaN.
    np.testing.assert_array_equal(np.asarray(layer(np.zeros((1, 5, 2), "float32"))), 0.0)


def test_mean_shape_from_landmarks_recovers_template():
    rng = np.random.default_rng(11)
    template = np.asarray(TEMPLATE_SHAPE)
    sets = []
    for _ in range(20):
        angle = rng.uniform(-0.5, 0.5)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        sets.append(rng.uniform(30, 60) * template @ rot.T + rng.uniform(0, 50, size=2))
    mean = mean_shape_from_landmarks(np.stack(sets))
    np.testing.assert_allclose(align_np(mean, template), normalize_shape_np(template), atol=1e-6)


def test_e2e_av_geometric(audio_model, tmp_path):
    weights = tmp_path / "audio.weights.h5"
    audio_model.save_weights(weights)
    model = build_model("e2e_av_geometric", {"face_size": 48, "init_audio": str(weights)})
    for a, b in zip(_values(model.get_layer("speech_cnn")), _values(audio_model.get_layer("speech_cnn"))):
        np.testing.assert_array_equal(a, b)
    assert model.get_layer("features").output.shape[-1] == 3338
    assert model.count_params() == SPEECH + RESNET + head_params(3338)
    assert not model.get_layer("speech_cnn").trainable
    assert not model.get_layer("visual_cnn").trainable
    head = model.get_layer("recurrent")
    assert {id(w) for w in model.trainable_weights} == {id(w) for w in head.trainable_weights}
    batch = {
        "audio": _audio(1, 2),
        "video": _video(1, 2, size=48),
        "landmarks": np.random.default_rng(12).uniform(0, 48, (1, 2, 5, 2)).astype("float32"),
    }
    assert model(batch)["emotion"].shape == (1, 2, 2)
    # Frozen CNNs run in inference mode even while training: no input dropout.
    features = keras.Model(model.input, model.get_layer("features").output)
    np.testing.assert_array_equal(
        np.asarray(features(batch, training=True)), np.asarray(features(batch, training=False))
    )


def test_first_resnet_build_in_a_process_gets_the_seeded_weights():
    # Building Keras' ResNet50 for its config used to consume Python `random` draws, so the first
    # e2e_video built in a process had other weights than later ones from the same seed.
    import subprocess
    import sys

    code = """
import keras, numpy as np
from emorec.models import build_model
def weights():
    keras.utils.set_random_seed(7)
    return build_model("e2e_video", {"face_size": 32, "lstm_units": 4}).get_weights()[0]
print("SAME" if np.array_equal(weights(), weights()) else "DIFFERENT")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.stdout.strip().endswith("SAME"), proc.stderr[-2000:]
