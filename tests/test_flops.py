"""Multiply-add counting on a tiny model, against hand arithmetic."""

import keras
import pytest

from emorec.models.cell_dropout_lstm import CellDropoutLSTMCell
from emorec.models.flops import flops_per_example, multiply_adds_per_example
from emorec.models.netvlad import NetVLAD


def test_tiny_model_multiply_adds():
    image = keras.Input((10, 12, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="valid")(image)  # (4, 5, 4)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Reshape((20, 4))(x)
    seq = keras.layers.LSTM(6, return_sequences=True)(x)  # 20 steps
    seq = keras.layers.RNN(CellDropoutLSTMCell(5), return_sequences=True)(seq)
    vlad = NetVLAD(2)(seq)  # (10,)
    out = keras.layers.Dense(7)(vlad)
    inner = keras.Model(image, out)
    outer_in = keras.Input((10, 12, 3))
    model = keras.Model(outer_in, keras.layers.Dense(2)(inner(outer_in)))

    conv = (4 * 5) * (3 * 3 * 3) * 4
    lstm = 20 * (4 * 24 + 6 * 24)
    cell = 20 * (6 * 20 + 5 * 20)
    netvlad = 2 * 20 * 5 * 2
    dense = 10 * 7 + 7 * 2
    assert multiply_adds_per_example(model) == conv + lstm + cell + netvlad + dense
    assert flops_per_example(model) == 2 * (conv + lstm + cell + netvlad + dense)


def test_dense_counts_every_position_and_dynamic_shapes_fail():
    x = keras.Input((3, 4, 8))
    assert multiply_adds_per_example(keras.Model(x, keras.layers.Dense(5)(x))) == 12 * 8 * 5
    dynamic = keras.Input((None, 8))
    with pytest.raises(ValueError, match="not static"):
        multiply_adds_per_example(keras.Model(dynamic, keras.layers.Dense(5)(dynamic)))
