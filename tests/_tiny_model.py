"""A tiny registered model for the training tests: per-frame Dense (L2) -> Dropout -> LSTM -> Dense.

Importing this module registers ``_test_tiny_lstm`` (audio only). ``model:``
settings: ``units`` (default 8), ``dropout`` (default 0.0), ``l2`` (default 1e-3).
"""

from __future__ import annotations

import dataclasses

import keras

from emorec.config import ModelConfig, setting
from emorec.config.base import fraction, non_negative_number, positive_int
from emorec.models.registry import register_model
from emorec.schema import FRAME_SAMPLES

NAME = "_test_tiny_lstm"


@dataclasses.dataclass(frozen=True)
class TinyConfig(ModelConfig):
    """The tiny model's settings."""

    NAMES = (NAME,)
    units: int = setting(8, positive_int)
    dropout: float = setting(0.0, fraction())
    l2: float = setting(1e-3, non_negative_number)


@register_model(NAME, modalities=("audio",), config_class=TinyConfig, description="training-test model")
def build_tiny(config) -> keras.Model:
    """Dense(units, tanh, L2) per frame -> Dropout -> LSTM(units) -> Dense(2)."""
    config = TinyConfig.for_model(NAME, config)
    units = config.units
    audio = keras.Input((None, FRAME_SAMPLES), name="audio")
    x = keras.layers.Dense(units, activation="tanh",
                           kernel_regularizer=keras.regularizers.L2(config.l2))(audio)
    x = keras.layers.Dropout(config.dropout)(x)
    x = keras.layers.LSTM(units, return_sequences=True)(x)
    emotion = keras.layers.Dense(2, name="emotion")(x)
    return keras.Model({"audio": audio}, {"emotion": emotion}, name="tiny_lstm")


def tiny_config(**training) -> dict:
    """A complete training config for the tiny model (10-frame windows, batch 4)."""
    return {
        "model": {"name": NAME, "units": 8, "dropout": 0.0, "l2": 1e-3},
        "data": {"window": 0.4, "modalities": ["audio"], "batch_size": 4,
                 "augment": True},
        "optimizer": {"name": "adam", "learning_rate": 1e-2},
        "training": {"epochs": 2, "seed": 3, "strategy": "one", **training},
        "loss": {},
    }
