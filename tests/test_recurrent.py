"""The peephole LSTM cell and the recurrent head of the Tzirakis et al. models."""

import keras
import numpy as np
import pytest

from emorec.models.recurrent import (
    PeepholeLSTMCell,
    RecurrentHead,
    RecurrentOptions,
    recurrent_head_from_config,
)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_peephole_lstm(x, kernel, bias, w_i, w_f, w_o, *, forget_bias, cell_clip):
    """TF 1 LSTMCell(use_peepholes=True, cell_clip) in float64; returns (h seq, final c, max |c| before clipping)."""
    batch, steps, _ = x.shape
    units = w_i.shape[0]
    h = np.zeros((batch, units))
    c = np.zeros((batch, units))
    outputs, peak = [], 0.0
    for t in range(steps):
        z = np.concatenate([x[:, t], h], axis=1) @ kernel + bias
        i, j, f, o = np.split(z, 4, axis=1)
        c = _sigmoid(f + forget_bias + w_f * c) * c + _sigmoid(i + w_i * c) * np.tanh(j)
        peak = max(peak, float(np.abs(c).max()))
        if cell_clip is not None:
            c = np.clip(c, -cell_clip, cell_clip)
        h = _sigmoid(o + w_o * c) * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs, axis=1), c, peak


def _cell_model(input_dim, units, **cell_kwargs):
    inputs = keras.Input((None, input_dim))
    rnn = keras.layers.RNN(
        PeepholeLSTMCell(units, **cell_kwargs), return_sequences=True, return_state=True
    )
    seq, h, c = rnn(inputs)
    return keras.Model(inputs, [seq, h, c]), rnn.cell


def _saturating_weights(cell, input_dim, units, rng):
    """Weights that make the cell integrate ~±1 per step, so |c| passes 100 after ~100 steps."""
    kernel = rng.normal(scale=0.05, size=(input_dim + units, 4 * units))
    bias = np.zeros(4 * units)
    bias[:units] = 8.0  # input gate open
    bias[units : 2 * units] = np.where(np.arange(units) % 2 == 0, 8.0, -8.0)  # candidate ±1
    bias[2 * units : 3 * units] = 8.0  # forget gate open
    w_i = rng.uniform(0.0, 0.02, units)
    w_f = rng.uniform(0.0, 0.02, units)
    w_o = rng.uniform(-0.02, 0.02, units)
    cell.set_weights([kernel, bias, w_i, w_f, w_o])
    return kernel, bias, w_i, w_f, w_o


def test_peephole_cell_matches_numpy_including_clipping():
    rng = np.random.default_rng(0)
    input_dim, units, steps = 3, 4, 130
    model, cell = _cell_model(input_dim, units, cell_clip=100.0, forget_bias=1.0)
    weights = _saturating_weights(cell, input_dim, units, rng)
    x = rng.normal(size=(2, steps, input_dim)).astype("float32")
    seq, _, c_final = (np.asarray(a) for a in model(x))

    ref_seq, ref_c, peak = numpy_peephole_lstm(
        x.astype(np.float64), *weights, forget_bias=1.0, cell_clip=100.0
    )
    assert peak > 100.5  # each step would push |c| past the clip (it adds up to ~1)
    np.testing.assert_allclose(seq, ref_seq, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(c_final, ref_c, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.abs(c_final), 100.0)  # every unit ends clipped, both signs
    assert (c_final > 0).any() and (c_final < 0).any()

    # Without the clip the same weights give visibly different outputs.
    free_seq, _, _ = numpy_peephole_lstm(
        x.astype(np.float64), *weights, forget_bias=1.0, cell_clip=None
    )
    assert np.abs(free_seq - seq).max() > 1e-3


def test_peephole_cell_generic_weights_and_forget_bias():
    rng = np.random.default_rng(1)
    model, cell = _cell_model(5, 3, cell_clip=None, forget_bias=0.5)
    kernel, bias, w_i, w_f, w_o = (rng.normal(scale=0.7, size=w.shape) for w in cell.get_weights())
    cell.set_weights([kernel, bias, w_i, w_f, w_o])
    x = rng.normal(size=(3, 7, 5)).astype("float32")
    seq = np.asarray(model(x)[0])
    ref, _, _ = numpy_peephole_lstm(
        x.astype(np.float64), kernel, bias, w_i, w_f, w_o, forget_bias=0.5, cell_clip=None
    )
    np.testing.assert_allclose(seq, ref, rtol=1e-4, atol=1e-5)


def _peephole_layer_params(input_dim, units):
    # one kernel over [x, h] for 4 gates + 4 biases + 3 peephole vectors
    return (input_dim + units) * 4 * units + 4 * units + 3 * units


def test_parameter_counts():
    model, _ = _cell_model(1280, 256, cell_clip=100.0)
    assert model.count_params() == _peephole_layer_params(1280, 256) == 1_574_656

    head = recurrent_head_from_config(RecurrentOptions())
    head.build((None, None, 1280))
    expected = _peephole_layer_params(1280, 256) + _peephole_layer_params(256, 256) + 256 * 2 + 2
    assert head.count_params() == expected == 2_101_250

    keras_head = RecurrentHead(256, 2, cell="keras", cell_clip=None, forget_bias=1.0)
    keras_head.build((None, None, 3328))
    plain = 4 * (3328 * 256 + 256 * 256 + 256) + 4 * (256 * 256 + 256 * 256 + 256) + 514
    assert keras_head.count_params() == plain


@pytest.mark.parametrize("cell", ["peephole", "keras"])
def test_head_streaming_states_continue_the_sequence(cell):
    rng = np.random.default_rng(2)
    head = RecurrentHead(6, 2, cell=cell, cell_clip=100.0, forget_bias=1.0)
    x = rng.normal(size=(2, 9, 5)).astype("float32")
    offline, final = (np.asarray(a) for a in head(x))
    assert offline.shape == (2, 9, 2)
    assert head.state_shape == (4, 6) and final.shape == (2, 4, 6)

    states = head.zero_states(2)
    chunks = []
    for start in (0, 4, 5):
        stop = {0: 4, 4: 5, 5: 9}[start]
        out, states = head(x[:, start:stop], initial_states=states)
        chunks.append(np.asarray(out))
    np.testing.assert_allclose(np.concatenate(chunks, axis=1), offline, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(states), final, rtol=1e-5, atol=1e-6)

    # Layout: index 2l = h of layer l, which for the top layer is its last output.
    top_h = np.asarray(head.rnns[-1](head.rnns[0](x)[0])[0])[:, -1]
    np.testing.assert_allclose(final[:, 2], top_h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(head.output_layer(final[:, 2])), offline[:, -1], rtol=1e-5, atol=1e-6
    )


def test_peephole_model_keras_roundtrip(tmp_path):
    rng = np.random.default_rng(3)
    inputs = keras.Input((None, 4))
    outputs, _ = RecurrentHead(5, 2, cell="peephole", cell_clip=3.0, forget_bias=1.0, name="recurrent")(inputs)
    model = keras.Model(inputs, outputs)
    for w in model.weights:
        w.assign(rng.normal(scale=0.5, size=w.shape))
    x = rng.normal(size=(2, 6, 4)).astype("float32")
    path = tmp_path / "cell.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))
    cell = loaded.get_layer("recurrent").rnns[0].cell
    assert isinstance(cell, PeepholeLSTMCell)
    assert cell.cell_clip == 3.0 and cell.forget_bias == 1.0 and cell.use_peepholes


def test_keras_cell_rejects_unsupported_forget_bias():
    with pytest.raises(ValueError, match="forget bias"):
        RecurrentHead(4, 1, cell="keras", cell_clip=None, forget_bias=2.0)
