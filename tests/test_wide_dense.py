"""WideDense: Dense's values and gradients, computed with the input gradient the cheap way round."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from emorec.models.wide_dense import WideDense, wide_matmul


def _pair(units=7, activation="relu"):
    dense = keras.layers.Dense(units, activation=activation)
    wide = WideDense(units, activation=activation)
    dense.build((None, 11))
    wide.build((None, 11))
    wide.set_weights(dense.get_weights())  # the same weights: checkpoints move between the two
    return dense, wide


def _tensors(layer, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)  # training: the custom gradient's path
        loss = tf.reduce_sum(y * tf.range(1.0, y.shape[-1] + 1.0))  # unequal weights per output
    return [y] + tape.gradient(loss, [x, layer.kernel, layer.bias])


def _gradients(layer, x, jit_compile=None):
    fn = _tensors if jit_compile is None else tf.function(_tensors, jit_compile=jit_compile)
    return [t.numpy() for t in fn(layer, tf.constant(x))]


def test_values_and_gradients_equal_dense():
    dense, wide = _pair()
    x = np.random.default_rng(0).standard_normal((5, 11)).astype(np.float32)
    for ours, theirs in zip(_gradients(wide, x), _gradients(dense, x)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_input_gradient_by_hand():
    # y = x · W, loss = sum(y · c): dL/dx = c · Wᵀ for every row.
    w = np.arange(6, dtype=np.float32).reshape(3, 2)
    x = tf.constant(np.ones((2, 3), np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(wide_matmul(x, tf.constant(w)) * tf.constant([1.0, 10.0]))
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), [[10.0, 32.0, 54.0]] * 2)


def test_compiled_gradient_equals_dense():
    dense, wide = _pair(activation=None)
    x = np.random.default_rng(1).standard_normal((4, 11)).astype(np.float32)
    for ours, theirs in zip(_gradients(wide, x, jit_compile=True), _gradients(dense, x, jit_compile=False)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def _op_types(layer, x, training):
    graph = tf.function(lambda: layer(x, training=training)).get_concrete_function().graph
    return {op.type for op in graph.get_operations()}


def test_only_training_graphs_hold_the_custom_gradient():
    # Exports trace the inference graph: it must be Dense's plain product (the LiteRT converter
    # drops the signatures of graphs with custom gradients).
    dense, wide = _pair()
    x = tf.constant(np.random.default_rng(6).standard_normal((2, 11)).astype(np.float32))
    assert "IdentityN" in _op_types(wide, x, training=True)
    assert "IdentityN" not in _op_types(wide, x, training=False)
    np.testing.assert_array_equal(wide(x, training=False).numpy(), dense(x).numpy())


def test_other_ranks_take_dense_path():
    dense, wide = _pair()
    x = np.random.default_rng(2).standard_normal((2, 3, 11)).astype(np.float32)
    np.testing.assert_allclose(wide(x).numpy(), dense(x).numpy(), rtol=1e-6)


def test_keras_file_round_trip(tmp_path):
    inputs = keras.Input((11,))
    model = keras.Model(inputs, WideDense(4, activation="tanh", name="fc")(inputs))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.get_layer("fc")) is WideDense
    x = np.random.default_rng(3).standard_normal((2, 11)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())


def test_face_auto_encoder_uses_it_for_its_wide_layers():
    from emorec.models.face_ae import build_face_decoder, build_face_encoder

    encoder = build_face_encoder(face_size=32, latent=16, slope=0.2)
    decoder = build_face_decoder(face_size=32, latent=16, slope=0.2)
    assert type(encoder.get_layer("fc_latent")) is WideDense
    assert type(decoder.get_layer("fc_expand")) is WideDense


@pytest.mark.parametrize("steps", [4, 20])  # 4: hoisted input product, unrolled; 20: Keras' loop
@pytest.mark.parametrize("from_states", [False, True])
def test_wide_lstm_equals_keras_lstm_values_and_gradients(steps, from_states):
    from emorec.models.recurrent import WideLSTM

    keras.utils.set_random_seed(4)
    theirs = keras.layers.LSTM(6, return_sequences=True, return_state=True, unit_forget_bias=True)
    ours = WideLSTM(6, return_sequences=True, return_state=True, unit_forget_bias=True)
    rng = np.random.default_rng(5)
    x = tf.constant(rng.standard_normal((3, steps, 9)).astype(np.float32))
    states = [tf.constant(rng.standard_normal((3, 6)).astype(np.float32)) for _ in range(2)]
    theirs(x)
    ours(x)
    ours.set_weights(theirs.get_weights())
    assert [w.path.split("/", 1)[1] for w in ours.weights] == [w.path.split("/", 1)[1] for w in theirs.weights]

    def run(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            tape.watch(states)
            seq, h, c = layer(x, initial_state=states if from_states else None, training=True)
            loss = tf.reduce_sum(seq * tf.range(1.0, 7.0)) + tf.reduce_sum(c)
        sources = [x] + (states if from_states else []) + layer.trainable_weights
        return [seq, h, c] + tape.gradient(loss, sources)

    for a, b in zip(run(ours), run(theirs), strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    inference = ours(x, training=False)
    for a, b in zip(inference, theirs(x, training=False), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())  # inference is Keras' own loop


def test_wide_lstm_unrolls_only_short_known_training_windows():
    from emorec.models.recurrent import WideLSTM

    layer = WideLSTM(4, return_sequences=True)
    layer.build((None, 5, 3))

    def has_loop(shape, training):
        fn = tf.function(lambda x: layer(x, training=training))
        graph = fn.get_concrete_function(tf.TensorSpec(shape, tf.float32)).graph
        return any(op.type in ("While", "StatelessWhile") for op in graph.get_operations())

    assert not has_loop((2, 5, 3), training=True)
    assert has_loop((2, 5, 3), training=False)
    assert has_loop((2, None, 3), training=True)  # length unknown when traced
    assert has_loop((2, WideLSTM.UNROLL_MAX_STEPS + 1, 3), training=True)
