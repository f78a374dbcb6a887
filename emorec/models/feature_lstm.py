"""Chen & Jin's LSTM on stored feature sets (``feature_lstm``, AVEC 2015).

Per 40 ms frame, one or more feature sets (``features_<name>`` inputs,
z-scored when read) go through stacked LSTM layers of ``layers`` units
(Table 3: ``[160, 120]``) and a linear output per frame.

- **Cell** (``cell``): ``peephole`` (default) is the LSTM of Graves (2013),
  the paper's eq. 2 and Theanets' layer: diagonal peepholes from the cell to
  the input and forget gates (previous cell) and to the output gate (new
  cell), :class:`~emorec.models.recurrent.PeepholeLSTMCell` without clipping;
  ``keras`` is ``keras.layers.LSTM`` (no peepholes). Either way the forget
  gate's bias starts at ``forget_bias`` = 2 (§4.3; the peephole cell adds it
  as a constant to a zero-initialised bias, which is the same
  parametrisation).
- **Direction** (``bidirectional``): a BLSTM layer runs a forward and a
  backward LSTM of the listed units each and concatenates them ("for BLSTM we
  double the size of LSTM").
- **Fusion** (``fusion``) of several sets: ``concat`` (early fusion) feeds
  their concatenation to the first layer; ``layered`` is the paper's new
  structure (Fig. 2): set ``k`` enters layer ``k``, concatenated with layer
  ``k-1``'s output (later layers take only the layer below);
  ``fusion_layers`` names the layer of each set instead (e.g. ``[0, 1, 1, 2,
  2]`` for audio; video_app + video_geo; ECG + EDA in Table 8's three-layer
  network), sets of one layer concatenated in order.
- **Targets** (``targets``): ``[arousal]``, ``[valence]`` or both (multi-task,
  Table 7). The output always has emorec's two columns ``emotion (B, T, 2)``
  = [arousal, valence]: a single-target model has one output unit, written to
  its column, and its other column is a constant 0 (never trained; the loss,
  validation and late fusion use the target columns only, and its evaluation
  metrics for the other dimension read 0).

Sequences: training reads windows of ``data.window`` seconds (the dataset's
stored windows); evaluation runs the model over each whole recording in one
call (``evaluate/avec2015.yaml``: ``eval_window: whole``). The model has no
streaming form (its layers differ in size, and a BLSTM needs the whole
sequence), so ``emorec export`` writes the offline signature only. Padding
frames at the end of a recording's last training window are zeros; a forward
LSTM never sees them before a real frame, a backward one does (only in that
one window per recording).

``model.features`` and ``model.feature_dims`` are filled from the dataset by
the task (:class:`~emorec.tasks.feature_regression.FeatureRegressionTask`)
when left null, and saved in the run's ``config.yaml``.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from emorec.config.base import (
    FieldError,
    boolean,
    choice,
    list_of,
    non_negative_int,
    number,
    optional,
    positive_int,
    setting,
)
from emorec.config.sections import ModelConfig
from emorec.errors import ConfigError
from emorec.models import fusion_layers  # noqa: F401  (registers the late-fusion layers for fused.keras)
from emorec.models.recurrent import PeepholeLSTMCell
from emorec.models.registry import register_model
from emorec.schema import SchemaError, check_feature_set_name, feature_key

DIMENSIONS = ("arousal", "valence")
FUSIONS = ("concat", "layered")
CELLS = ("peephole", "keras")


def _set_name(key: str, value):
    try:
        return check_feature_set_name(value)
    except SchemaError as exc:
        raise FieldError(key, str(exc)) from None


@dataclasses.dataclass(frozen=True)
class FeatureLSTMConfig(ModelConfig):
    """The ``model:`` section of ``feature_lstm`` (see the module docstring)."""

    NAMES = ("feature_lstm",)

    features: tuple | None = setting(None, optional(list_of(_set_name)),
                                     doc="feature sets read, in order (layered: set k enters layer k); null = "
                                         "every set the dataset holds")
    feature_dims: tuple | None = setting(None, optional(list_of(positive_int, unique=False)),
                                         doc="their dimensions; null = from the dataset")
    layers: tuple = setting((160, 120), list_of(positive_int, unique=False),
                            doc="LSTM units per layer (Table 3: [160, 120])")
    bidirectional: bool = setting(False, boolean, doc="BLSTM: forward + backward LSTM of these units per layer")
    targets: tuple = setting(DIMENSIONS, list_of(choice(*DIMENSIONS)),
                             doc="[arousal], [valence] or both (multi-task)")
    fusion: str = setting("concat", choice(*FUSIONS),
                          doc="several sets: concat (early fusion) | layered (Fig. 2: set k enters layer k)")
    fusion_layers: tuple | None = setting(None, optional(list_of(non_negative_int, unique=False)),
                                          doc="layered: the layer each set enters (null = set k, layer k)")
    cell: str = setting("peephole", choice(*CELLS),
                        doc="peephole (Graves 2013, eq. 2, Theanets) | keras (keras.layers.LSTM)")
    forget_bias: float = setting(2.0, number, doc="initial forget-gate bias (§4.3: 2)")

    def check(self) -> None:
        """Dimensions match the sets; layered fusion has a layer for every set."""
        super().check()
        object.__setattr__(self, "targets", tuple(d for d in DIMENSIONS if d in self.targets))
        if self.feature_dims is not None and self.features is None:
            raise FieldError("feature_dims", "needs model.features (which sets they are the dimensions of)")
        if self.features is not None and self.feature_dims is not None and \
                len(self.feature_dims) != len(self.features):
            raise FieldError("feature_dims", f"has {len(self.feature_dims)} dimensions for "
                                             f"{len(self.features)} feature sets {list(self.features)}")
        if self.fusion_layers is not None:
            if self.fusion != "layered":
                raise FieldError("fusion_layers", "is for fusion: layered")
            if self.features is not None and len(self.fusion_layers) != len(self.features):
                raise FieldError("fusion_layers", f"names {len(self.fusion_layers)} layers for "
                                                  f"{len(self.features)} feature sets {list(self.features)}")
            if 0 not in self.fusion_layers or max(self.fusion_layers) >= len(self.layers):
                raise FieldError("fusion_layers", f"must name layers 0..{len(self.layers) - 1} (model.layers), "
                                                  "layer 0 at least once")
        elif self.fusion == "layered" and self.features is not None and len(self.features) > len(self.layers):
            raise FieldError("fusion", f"layered feeds set k to layer k: {len(self.features)} sets need at "
                                       f"least as many layers, model.layers has {len(self.layers)} (or give "
                                       "model.fusion_layers)")

    @property
    def target_columns(self) -> tuple[int, ...]:
        """Columns of ``emotion`` the model is trained on (0 arousal, 1 valence)."""
        return tuple(DIMENSIONS.index(t) for t in self.targets)


@keras.saving.register_keras_serializable(package="emorec")
class ForgetGateBias(keras.initializers.Initializer):
    """Bias initialiser of ``keras.layers.LSTM`` (gates i, f, c, o): ``value`` for the forget gate, 0 elsewhere."""

    def __init__(self, value: float = 2.0):
        self.value = float(value)

    def __call__(self, shape, dtype=None):
        """A ``(4 units,)`` bias."""
        units = shape[0] // 4
        zeros = ops.zeros((units,), dtype=dtype)
        return ops.concatenate([zeros, ops.full((units,), self.value, dtype=dtype), zeros, zeros])

    def get_config(self):
        """Constructor arguments."""
        return {"value": self.value}


@keras.saving.register_keras_serializable(package="emorec")
class TargetColumns(keras.layers.Layer):
    """Places the outputs of the target dimensions in their columns of ``(B, T, 2)``; the other column is 0."""

    def __init__(self, columns, num_outputs: int = len(DIMENSIONS), **kwargs):
        super().__init__(**kwargs)
        self.columns = tuple(int(c) for c in columns)
        self.num_outputs = int(num_outputs)
        if not self.columns or len(set(self.columns)) != len(self.columns) or not all(
                0 <= c < self.num_outputs for c in self.columns):
            raise ValueError(f"columns must be distinct indices below {self.num_outputs}, got {columns}")

    def call(self, inputs):
        """``(B, T, len(columns))`` -> ``(B, T, num_outputs)``."""
        zero = ops.zeros_like(inputs[..., :1])
        parts = [inputs[..., self.columns.index(c): self.columns.index(c) + 1] if c in self.columns else zero
                 for c in range(self.num_outputs)]
        return ops.concatenate(parts, axis=-1)

    def compute_output_shape(self, input_shape):
        """Same leading axes, ``num_outputs`` columns."""
        return (*input_shape[:-1], self.num_outputs)

    def get_config(self):
        """Constructor arguments."""
        return {**super().get_config(), "columns": list(self.columns), "num_outputs": self.num_outputs}


def _recurrent(config: FeatureLSTMConfig, units: int, k: int):
    if config.cell == "keras":
        layer = keras.layers.LSTM(units, return_sequences=True, unit_forget_bias=False,
                                  bias_initializer=ForgetGateBias(config.forget_bias), name=f"lstm_{k}")
    else:
        cell = PeepholeLSTMCell(units, cell_clip=None, forget_bias=config.forget_bias, name=f"cell_{k}")
        layer = keras.layers.RNN(cell, return_sequences=True, name=f"lstm_{k}")
    return keras.layers.Bidirectional(layer, name=f"blstm_{k}") if config.bidirectional else layer


@register_model("feature_lstm", modalities=(), config_class=FeatureLSTMConfig, task="feature_regression",
                description="Chen & Jin (AVEC 2015): stacked (B)LSTM on feature sets, early or layered fusion")
def build_feature_lstm(config: FeatureLSTMConfig) -> keras.Model:
    """Build ``feature_lstm`` from its config (``features`` and ``feature_dims`` must be known).

    Args:
        config: the ``model`` settings: a :class:`FeatureLSTMConfig` or a mapping (missing keys
            take the defaults).

    Returns:
        The Keras model ``feature_lstm``: inputs ``features_<set>`` ``(B, T, D)``, output
        ``{"emotion": (B, T, 2)}`` (a column the model does not predict is 0).

    Raises:
        ConfigError: unknown keys or bad values in ``config``, or the feature sets or their
            dimensions are not known yet.
    """
    config = FeatureLSTMConfig.for_model("feature_lstm", config)
    if config.features is None or config.feature_dims is None:
        raise ConfigError("model feature_lstm: model.features and model.feature_dims are not known; train with "
                          "--data (they are read from the dataset) or give both")
    inputs = {feature_key(name): keras.Input((None, dim), name=feature_key(name))
              for name, dim in zip(config.features, config.feature_dims)}
    sets = list(inputs.values())
    if config.fusion == "layered":
        where = config.fusion_layers if config.fusion_layers is not None else tuple(range(len(sets)))
        x = None
        for k, units in enumerate(config.layers):
            entering = ([x] if x is not None else []) + [t for t, layer in zip(sets, where) if layer == k]
            x = entering[0] if len(entering) == 1 else keras.layers.Concatenate(name=f"fusion_{k}")(entering)
            x = _recurrent(config, units, k)(x)
    else:
        x = sets[0] if len(sets) == 1 else keras.layers.Concatenate(name="fusion")(sets)
        for k, units in enumerate(config.layers):
            x = _recurrent(config, units, k)(x)
    out = keras.layers.Dense(len(config.targets), name="output")(x)
    emotion = TargetColumns(config.target_columns, name="emotion")(out)
    return keras.Model(inputs, {"emotion": emotion}, name="feature_lstm")
