"""Nguyen et al.'s ae_lstm family: shapes, hand-counted parameters, joint objective, saving, streaming."""

import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml
from script_result import run_script_result

from emorec.config import resolve_config
from emorec.errors import ConfigError
from emorec.models import ae_lstm
from emorec.models.audio_ae import AudioAEOptions, build_audio_decoder, build_audio_encoder
from emorec.models.face_ae import build_face_decoder, build_face_encoder
from emorec.models.registry import get_model_spec
from emorec.models.twin import STATES, state_twin
from emorec.objectives import JointLossConfig, joint_objective
from emorec.schema import FRAME_SAMPLES

REPO = Path(__file__).resolve().parent.parent
NAMES = tuple(ae_lstm.VARIANTS)
# Small enough to train and save in a test; the paper's sizes are counted in
# test_paper_size_parameter_count.
SMALL = {"face_size": 32, "face_latent": 64, "lstm_units": 16}


# --- hand arithmetic --------------------------------------------------------------------------


def conv(taps, cin, cout, bias=True):
    """Weights of a (transposed) convolution with ``taps`` kernel positions."""
    return taps * cin * cout + (cout if bias else 0)


def dense(n_in, n_out):
    return n_in * n_out + n_out


def lstm(n_in, units):
    return 4 * units * (n_in + units + 1)


def bn(channels):
    return 4 * channels  # gamma, beta, moving mean, moving variance


def face_encoder_params(size, latent):
    # block: a 1x1, b 3x3 stride 2, c 1x1, shortcut 1x1 on every other pixel
    block1 = conv(1, 3, 8) + conv(9, 8, 8) + conv(1, 8, 16) + conv(1, 3, 16)
    block2 = conv(1, 16, 16) + conv(9, 16, 16) + conv(1, 16, 32) + conv(1, 16, 32)
    return block1 + block2 + dense((size // 4) ** 2 * 32, latent)


def face_decoder_params(size, latent):
    block1 = conv(1, 32, 16) + conv(9, 16, 16) + conv(1, 16, 16) + conv(1, 32, 16)
    block2 = conv(1, 16, 8) + conv(9, 8, 8) + conv(1, 8, 3) + conv(1, 16, 3)
    return dense(latent, (size // 4) ** 2 * 32) + block1 + block2


# conv 40 x 20 taps (no bias) + BN, conv 40 x 40 taps over 40 channels (no bias) + BN
SPEECH_PARAMS = conv(20, 1, 40, bias=False) + bn(40) + conv(40, 40, 40, bias=False) + bn(40)


def audio_encoder_params(latent):
    return SPEECH_PARAMS + (dense(1280, latent) if latent else 0)


def audio_decoder_params(pool, latent):
    channels_in = 4 if pool == "channels" else 40  # 320 x 4, or 32 x 40 upsampled to 320 x 40
    return (dense(latent, 1280) if latent else 0) + conv(20, channels_in, 40) + conv(40, 40, 1)


def expected_params(name, size=96, face_latent=2048, units=512, pool="channels", audio_latent=None):
    modalities, decoders, two_stream = ae_lstm.VARIANTS[name]
    total, widths = 0, []
    if "video" in modalities:
        total += face_encoder_params(size, face_latent) + (face_decoder_params(size, face_latent) if decoders else 0)
        widths.append(face_latent)
    if "audio" in modalities:
        total += audio_encoder_params(audio_latent) + (audio_decoder_params(pool, audio_latent) if decoders else 0)
        widths.append(audio_latent or 1280)

    def head(n_in):
        return lstm(n_in, units) + lstm(units, units) + dense(units, 2)

    return total + (sum(head(w) for w in widths) if two_stream else head(sum(widths)))


def small_batch(b=2, t=3, size=32, seed=0, modalities=("audio", "video")):
    rng = np.random.default_rng(seed)
    batch = {
        "labels": rng.uniform(-0.5, 0.5, (b, t, 2)).astype(np.float32),
        "mask": np.ones((b, t), np.float32),
    }
    if "audio" in modalities:
        batch["audio"] = rng.normal(0, 0.3, (b, t, FRAME_SAMPLES)).astype(np.float32)
    if "video" in modalities:
        batch["video"] = rng.random((b, t, size, size, 3)).astype(np.float32)
    return batch


def inputs_of(model, batch):
    return {t.name: batch[t.name] for t in model.inputs}


def small_config(name, **extra):
    config = {k: v for k, v in SMALL.items() if k in ae_lstm.CONFIG_CLASSES[name].keys()}
    return {**config, **extra}


# --- architecture -----------------------------------------------------------------------------


def test_paper_size_parameter_count():
    model = ae_lstm.build("ae_lstm", {"name": "ae_lstm"})
    assert face_encoder_params(96, 2048) == 37_755_288  # FC 18432 -> 2048 = 37,750,784 of it
    assert face_decoder_params(96, 2048) == 37_771_614
    assert SPEECH_PARAMS == 65_120
    assert audio_decoder_params("channels", None) == 4_841
    assert lstm(3328, 512) == 7_866_368  # 2048 + 1280 = 3328 fused features
    assert model.count_params() == expected_params("ae_lstm") == 85_563_457
    assert model.get_layer("face_encoder").count_params() == face_encoder_params(96, 2048)
    assert model.get_layer("face_decoder").count_params() == face_decoder_params(96, 2048)
    assert model.get_layer("face_encoder").get_layer("flatten").output.shape == (None, 24 * 24 * 32)
    assert model.get_layer("face_encoder").get_layer("enc_block1_add").output.shape == (None, 48, 48, 16)
    assert model.get_layer("face_decoder").get_layer("dec_block1_add").output.shape == (None, 48, 48, 16)
    out = model.output
    assert out["emotion"].shape == (None, None, 2)
    assert out["recon_video"].shape == (None, None, 96, 96, 3)
    assert out["recon_audio"].shape == (None, None, FRAME_SAMPLES)
    assert model.get_layer("recurrent").rnns[0].cell.kernel.shape == (3328, 4 * 512)


@pytest.mark.parametrize("name", NAMES)
def test_every_variant_matches_hand_count_and_outputs(name):
    model = ae_lstm.build(name, small_config(name))
    modalities, decoders, _ = ae_lstm.VARIANTS[name]
    assert model.count_params() == expected_params(name, size=32, face_latent=64, units=16)
    assert sorted(t.name for t in model.inputs) == sorted(modalities)
    batch = small_batch(modalities=modalities)
    out = model(inputs_of(model, batch))
    expected = {"emotion": (2, 3, 2)}
    if decoders and "video" in modalities:
        expected["recon_video"] = (2, 3, 32, 32, 3)
    if decoders and "audio" in modalities:
        expected["recon_audio"] = (2, 3, FRAME_SAMPLES)
    assert {k: tuple(v.shape) for k, v in out.items()} == expected
    if "recon_video" in out:  # sigmoid output
        assert 0.0 < float(np.min(out["recon_video"])) and float(np.max(out["recon_video"])) < 1.0


@pytest.mark.parametrize(
    "pool, latent, pooled_layer, pooled_shape",
    [
        ("channels", None, "channel_pool", (None, 320, 4)),
        ("channels", 640, "channel_pool", (None, 320, 4)),
        ("time", None, "time_pool_10", (None, 32, 40)),
        ("time", 640, "time_pool_10", (None, 32, 40)),
    ],
)
def test_both_audio_readings_build_with_documented_shapes(pool, latent, pooled_layer, pooled_shape):
    config = AudioAEOptions(audio_pool=pool, audio_latent=latent)
    encoder = build_audio_encoder(config, slope=0.2)
    decoder = build_audio_decoder(config, slope=0.2)
    assert encoder.get_layer(pooled_layer).output.shape == pooled_shape
    assert encoder.output.shape == (None, latent or 1280)
    assert decoder.get_layer("deconv1").output.shape == (None, 320, 40)
    assert decoder.get_layer("upsample").output.shape == (None, 640, 40)
    assert decoder.output.shape == (None, FRAME_SAMPLES)
    assert encoder.count_params() == audio_encoder_params(latent)
    assert decoder.count_params() == audio_decoder_params(pool, latent)
    model = ae_lstm.build("ae_lstm_audio", {"lstm_units": 16, "audio_pool": pool, "audio_latent": latent})
    assert model.count_params() == expected_params("ae_lstm_audio", units=16, pool=pool, audio_latent=latent)
    assert model.get_layer("recurrent").rnns[0].cell.kernel.shape == (latent or 1280, 64)


def test_time_reading_pools_over_time_and_channel_reading_over_channels():
    rng = np.random.default_rng(1)
    frame = rng.normal(size=(1, FRAME_SAMPLES)).astype(np.float32)
    ref = {}
    for pool, layer in (("channels", "channel_pool"), ("time", "time_pool_10")):
        keras.utils.set_random_seed(5)  # same conv weights in both readings
        encoder = build_audio_encoder(AudioAEOptions(audio_pool=pool), slope=0.2)
        probe = keras.Model(encoder.input, [encoder.get_layer("conv2_relu").output, encoder.get_layer(layer).output])
        conv, pooled = (np.asarray(a)[0] for a in probe(frame, training=False))
        ref[pool] = (conv, pooled)
    conv = ref["channels"][0]
    np.testing.assert_allclose(ref["time"][0], conv, rtol=1e-6)
    np.testing.assert_allclose(ref["channels"][1], conv.reshape(320, 4, 10).max(axis=2), rtol=1e-6)
    np.testing.assert_allclose(ref["time"][1], conv.reshape(32, 10, 40).max(axis=1), rtol=1e-6)


def test_face_networks_build_at_other_sizes_and_reject_bad_ones():
    assert build_face_encoder(face_size=64, latent=32, slope=0.2).count_params() == face_encoder_params(64, 32)
    assert build_face_decoder(face_size=64, latent=32, slope=0.2).output.shape == (None, 64, 64, 3)
    with pytest.raises(ConfigError, match="face_size"):
        ae_lstm.build("ae_lstm_video", {"face_size": 30})


def test_unknown_model_key_is_a_config_error():
    with pytest.raises(ConfigError, match="lstm_unit"):
        ae_lstm.build("ae_lstm", {"lstm_unit": 3})
    with pytest.raises(ConfigError, match="audio_pool"):
        ae_lstm.build("ae_lstm_audio", {"audio_pool": "frequency"})


def test_frames_are_encoded_independently_and_emotion_is_causal():
    model = ae_lstm.build("ae_lstm", small_config("ae_lstm"))
    batch = small_batch(b=2, t=4, seed=2)
    out = model(inputs_of(model, batch), training=False)
    # Folding batch x time must keep each frame with its own reconstruction.
    face_ae = [model.get_layer("face_encoder"), model.get_layer("face_decoder")]
    audio_ae = [model.get_layer("audio_encoder"), model.get_layer("audio_decoder")]
    for b, t in ((0, 0), (1, 2), (0, 3)):
        face = face_ae[1](face_ae[0](batch["video"][b, t][None], training=False), training=False)
        audio = audio_ae[1](audio_ae[0](batch["audio"][b, t][None], training=False), training=False)
        np.testing.assert_allclose(out["recon_video"][b, t], face[0], atol=1e-5)
        np.testing.assert_allclose(out["recon_audio"][b, t], audio[0], atol=1e-5)
    changed = {k: v.copy() for k, v in batch.items()}
    changed["video"][:, 3] = 1.0 - changed["video"][:, 3]
    out2 = model(inputs_of(model, changed), training=False)
    np.testing.assert_allclose(out2["emotion"][:, :3], out["emotion"][:, :3], atol=1e-6)
    assert np.abs(np.asarray(out2["emotion"][:, 3] - out["emotion"][:, 3])).max() > 1e-6


# --- the joint objective ------------------------------------------------------------------------


def numpy_ccc(y, x):
    mx, my = x.mean(0), y.mean(0)
    cov = ((x - mx) * (y - my)).mean(0)
    return 2 * cov / (x.var(0) + y.var(0) + (mx - my) ** 2)


def random_objective_inputs(seed=0):
    rng = np.random.default_rng(seed)
    b, t, s = 3, 4, 4
    batch = small_batch(b, t, size=s, seed=seed)
    batch["mask"][0, 2:] = 0
    batch["mask"][2, 3] = 0
    outputs = {
        "emotion": rng.normal(0, 0.5, (b, t, 2)).astype(np.float32),
        "recon_video": rng.random((b, t, s, s, 3)).astype(np.float32),
        "recon_audio": rng.normal(0, 0.3, (b, t, FRAME_SAMPLES)).astype(np.float32),
    }
    return batch, outputs


def test_joint_loss_is_the_weighted_sum_of_numpy_terms():
    batch, outputs = random_objective_inputs()
    valid = batch["mask"] > 0
    se_video = ((outputs["recon_video"] - batch["video"]) ** 2)[valid]  # (frames, 4, 4, 3)
    se_audio = ((outputs["recon_audio"] - batch["audio"]) ** 2)[valid]
    rho = numpy_ccc(batch["labels"][valid].astype(np.float64), outputs["emotion"][valid].astype(np.float64))
    alpha, beta, gamma = 0.5, 2.0, 0.3
    for mode, l2d, l1d in (
        ("mean", se_video.mean(), se_audio.mean()),
        ("sum", se_video.sum(), se_audio.sum()),  # eq. 3-4: sum over frames of squared norms
    ):
        total, terms = joint_objective(batch, outputs, alpha=alpha, beta=beta, gamma=gamma, reconstruction=mode)
        terms = {k: float(v) for k, v in terms.items()}
        assert set(terms) == {"loss_2d", "loss_1d", "loss_ccc", "ccc_arousal", "ccc_valence"}
        assert terms["loss_2d"] == pytest.approx(l2d, rel=1e-5)
        assert terms["loss_1d"] == pytest.approx(l1d, rel=1e-5)
        assert terms["ccc_arousal"] == pytest.approx(rho[0], abs=1e-6)
        assert terms["ccc_valence"] == pytest.approx(rho[1], abs=1e-6)
        assert terms["loss_ccc"] == pytest.approx(1 - rho.mean(), abs=1e-6)
        weighted = alpha * terms["loss_2d"] + beta * terms["loss_1d"] + gamma * terms["loss_ccc"]
        assert float(total) == pytest.approx(weighted, rel=1e-6)
    default_total, t = joint_objective(batch, outputs)
    assert float(default_total) == pytest.approx(
        float(t["loss_2d"]) + float(t["loss_1d"]) + 0.01 * float(t["loss_ccc"]), rel=1e-6
    )


def test_padding_frames_do_not_move_the_loss():
    batch, outputs = random_objective_inputs()
    total, terms = joint_objective(batch, outputs)
    padded = {k: v.copy() for k, v in batch.items()}
    invalid = padded["mask"] == 0
    padded["video"][invalid] = 50.0
    padded["audio"][invalid] = -80.0
    total2, terms2 = joint_objective(padded, outputs)
    assert float(total2) == pytest.approx(float(total), rel=1e-6)
    assert float(terms2["loss_2d"]) == pytest.approx(float(terms["loss_2d"]), rel=1e-6)


def test_models_without_a_decoder_drop_its_term_and_bad_settings_raise():
    batch, outputs = random_objective_inputs()
    only_emotion = {"emotion": outputs["emotion"]}
    total, terms = joint_objective(batch, only_emotion, gamma=0.01)
    assert set(terms) == {"loss_ccc", "ccc_arousal", "ccc_valence"}
    assert float(total) == pytest.approx(0.01 * float(terms["loss_ccc"]), rel=1e-6)
    _, video_terms = joint_objective(batch, {"emotion": outputs["emotion"], "recon_video": outputs["recon_video"]})
    assert "loss_2d" in video_terms and "loss_1d" not in video_terms
    # Bad weights are refused where they enter: the loss section.
    with pytest.raises(ConfigError, match="loss.reconstruction must be one of mean, sum"):
        JointLossConfig.from_dict({"reconstruction": "median"})
    with pytest.raises(ConfigError, match="loss.gamma must be a non-negative number"):
        JointLossConfig.from_dict({"gamma": -1})


def test_reconstruction_loss_falls_on_a_fixed_batch():
    keras.utils.set_random_seed(0)
    model = ae_lstm.build("ae_lstm", small_config("ae_lstm", audio_dropout=0.0))
    batch = small_batch(b=4, t=3, seed=3)
    # Learnable content (random pixels or samples only teach the mean): coloured faces
    # with a gradient, and a sine tone per frame.
    ramp = np.linspace(0.0, 0.3, 32, dtype=np.float32)
    batch["video"] = np.broadcast_to(
        np.array([0.6, 0.2, 0.5], np.float32) + ramp[:, None, None] + ramp[None, :, None], (4, 3, 32, 32, 3)
    ).copy()
    phase = np.arange(12, dtype=np.float32).reshape(4, 3, 1)
    batch["audio"] = 0.5 * np.sin(2 * np.pi * np.arange(FRAME_SAMPLES) / 64.0 + phase).astype(np.float32) + 0.3
    optimizer = keras.optimizers.Adam(3e-3)
    inputs = inputs_of(model, batch)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss, terms = joint_objective(batch, model(inputs, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return terms

    history = [{k: float(v) for k, v in step().items()} for _ in range(12)]
    for term in ("loss_2d", "loss_1d"):
        assert history[-1][term] < 0.8 * history[0][term], (term, history[0][term], history[-1][term])


_DISTRIBUTED_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from emorec.losses import local_moments
    from emorec.objectives import joint_objective

    rng = np.random.default_rng(3)
    B, T, F = 4, 5, 3
    feats = rng.normal(size=(B, T, F))
    batch = {
        "labels": rng.normal(0.1, 0.4, size=(B, T, 2)),
        "audio": rng.normal(size=(B, T, 6)),
        "video": rng.random((B, T, 2, 2, 3)),
        "mask": np.ones((B, T)),
    }
    batch["mask"][1, 2:] = 0  # replica 0 (rows 0-1): 7 valid frames
    batch["mask"][3, 4:] = 0  # replica 1 (rows 2-3): 9 valid frames
    settings = dict(alpha=0.7, beta=1.3, gamma=0.5)

    def make_layers():
        w = np.random.default_rng(7)
        layers = []
        for width in (2, 6, 12):
            layer = keras.layers.Dense(width, dtype="float64")
            layer.build((None, None, F))
            layer.set_weights([w.normal(size=(F, width)), w.normal(size=(width,))])
            layers.append(layer)
        return layers

    def forward(layers, x):
        emo, audio, video = (layer(x) for layer in layers)
        shape = tf.shape(video)
        return {"emotion": emo, "recon_audio": audio,
                "recon_video": tf.reshape(video, tf.concat([shape[:2], [2, 2, 3]], 0))}

    def weights(layers):
        return [v for layer in layers for v in layer.trainable_variables]

    single = make_layers()
    with tf.GradientTape() as tape:
        loss_1, terms_1 = joint_objective(batch, forward(single, feats), **settings)
    grads_1 = [g.numpy() for g in tape.gradient(loss_1, weights(single))]

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        layers = make_layers()

    def shard(a):
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(a[2 * ctx.replica_id_in_sync_group: 2 * ctx.replica_id_in_sync_group + 2]))

    dx = shard(feats)
    dbatch = {k: shard(v) for k, v in batch.items()}

    def step(x, b, exact):
        with tf.GradientTape() as tape:
            if exact:
                loss, terms = joint_objective(b, forward(layers, x), **settings)
            else:
                loss, terms = joint_objective(b, forward(layers, x), reduce_fn=local_moments, **settings)
                loss = loss / strategy.num_replicas_in_sync
        return loss, terms, tape.gradient(loss, weights(layers))

    result = {"single_loss": float(loss_1), "single_terms": {k: float(v) for k, v in terms_1.items()},
              "single_grads": [g.tolist() for g in grads_1]}
    for exact in (True, False):
        run = tf.function(lambda x, b: strategy.run(step, args=(x, b, exact)))
        loss, terms, grads = run(dx, dbatch)
        key = "exact" if exact else "naive"
        result[key + "_losses"] = [float(v) for v in strategy.experimental_local_results(loss)]
        result[key + "_terms"] = [
            {k: float(strategy.experimental_local_results(v)[i]) for k, v in terms.items()} for i in range(2)]
        result[key + "_loss_sum"] = float(strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None))
        summed = strategy.reduce(tf.distribute.ReduceOp.SUM, grads, axis=None)
        result[key + "_grads"] = [g.numpy().tolist() for g in summed]
    print("RESULT " + json.dumps(result))
    """
)


def test_joint_loss_and_gradients_under_mirrored_strategy_equal_single_device():
    r = run_script_result(_DISTRIBUTED_SCRIPT)
    single = r["single_loss"]
    for value in r["exact_losses"]:
        assert value == pytest.approx(single, rel=1e-6)
    for replica_terms in r["exact_terms"]:
        for name, value in r["single_terms"].items():
            assert replica_terms[name] == pytest.approx(value, rel=1e-5, abs=1e-7), name
    for a, b in zip(r["exact_grads"], r["single_grads"]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-9)
    # Teeth: per-replica means over unequal valid-frame counts are a different loss.
    assert abs(r["naive_loss_sum"] - single) > 1e-3
    rel = max(
        np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max()
        for a, b in zip(r["naive_grads"], r["single_grads"])
    )
    assert rel > 1e-2


# --- saving, streaming, registry, configs ---------------------------------------------------------


@pytest.mark.parametrize(
    "name, extra", [("ae_lstm", {}), ("ae_2slstm", {"audio_pool": "time", "audio_latent": 8})]
)
def test_keras_save_and_load_give_identical_outputs(tmp_path, name, extra):
    model = ae_lstm.build(name, small_config(name, **extra))
    batch = small_batch(seed=4)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    before = model(inputs_of(model, batch), training=False)
    after = loaded(inputs_of(loaded, batch), training=False)
    assert set(before) == set(after)
    for key in before:
        np.testing.assert_array_equal(np.asarray(before[key]), np.asarray(after[key]))
    # The export path: a streaming twin of the loaded model.
    stream = state_twin(loaded, outputs=("emotion",))
    rows = stream.input[STATES].shape[1]
    first = stream({"audio": batch["audio"][:, :2], "video": batch["video"][:, :2],
                    STATES: np.zeros((2, rows, 16), np.float32)}, training=False)
    np.testing.assert_allclose(np.asarray(first["emotion"]), np.asarray(before["emotion"][:, :2]), atol=1e-5)


@pytest.mark.parametrize("name", ["ae_lstm", "ae_2slstm", "ae_lstm_audio"])
def test_streaming_chunk_by_chunk_equals_offline(name):
    model = ae_lstm.build(name, small_config(name))
    stream = state_twin(model, outputs=("emotion",))
    # The decoders drop out of the streaming twin.
    assert stream.count_params() < model.count_params() or not ae_lstm.VARIANTS[name][1]
    heads = 2 if ae_lstm.VARIANTS[name][2] else 1
    assert stream.input[STATES].shape == (None, heads * 4, 16)
    batch = small_batch(b=2, t=7, seed=5, modalities=ae_lstm.VARIANTS[name][0])
    offline = np.asarray(model(inputs_of(model, batch), training=False)["emotion"])
    states = np.zeros((2, heads * 4, 16), np.float32)
    pieces, start = [], 0
    for size in (3, 1, 3):
        chunk = {k: batch[k][:, start:start + size] for k in ae_lstm.VARIANTS[name][0]}
        out = stream({**chunk, STATES: states}, training=False)
        pieces.append(np.asarray(out["emotion"]))
        states = np.asarray(out[STATES])
        start += size
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), offline, atol=1e-5)
    # Shared layers: a weight change in the offline model shows in the streaming one.
    head = model.get_layer("recurrent" if heads == 1 else "recurrent_video")
    head.output_layer.bias.assign(head.output_layer.bias + 1.0)
    shifted = stream({**{k: batch[k][:, :2] for k in ae_lstm.VARIANTS[name][0]},
                      STATES: np.zeros_like(states)}, training=False)
    np.testing.assert_allclose(np.asarray(shifted["emotion"]), offline[:, :2] + 1.0, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_registry_and_yaml_mirror_the_defaults(name):
    spec = get_model_spec(name)
    assert spec.objective is joint_objective
    assert spec.modalities == ae_lstm.VARIANTS[name][0]
    path = REPO / "train" / f"{name}.yaml"
    doc = yaml.safe_load(path.read_text())
    assert doc["model"] == ae_lstm.CONFIG_CLASSES[name](name=name).to_dict()
    assert doc["loss"] == JointLossConfig().to_dict()
    config = resolve_config(path)
    assert config.window_frames == 5
    assert config.data.batch_size == 32
    assert config.optimizer.learning_rate == pytest.approx(1e-4)
    assert config.training.epochs * config.training.steps_per_epoch == 50_000
    assert sorted(config.data.modalities) == sorted(spec.modalities)
    demo = resolve_config(path, demo=True)
    # The main job's schedule, as measured in the README (160 steps of 16 windows); the
    # ablations share it so that the README's ablation table compares like with like.
    assert demo.training.epochs * demo.training.steps_per_epoch == 160
    assert demo.data.batch_size == 16
    main = resolve_config(REPO / "train" / "ae_lstm.yaml", demo=True)
    for section in ("optimizer", "loss", "training"):
        assert getattr(demo, section) == getattr(main, section), section
    model, main_model = demo.model.to_dict(), main.model.to_dict()
    shared = (set(model) & set(main_model)) - {"name"}
    assert {k: model[k] for k in shared} == {k: main_model[k] for k in shared}
