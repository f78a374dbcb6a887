"""Stateful training: state carried across stream-ordered rows, per-row reset, padding, training, CLI, resume."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml
from cli_run import train_result
from dataset_factory import make_dataset_dir
from read_spec import make_dataset

from emorec.config import resolve_config
from emorec.data import read_recordings
from emorec.errors import ConfigError
from emorec.models.registry import build_model
from emorec.models.twin import STATES, state_twin
from emorec.objectives import joint_objective
from emorec.training import train
from emorec.training.predictions import predict_stream
from emorec.training.stateful import StatefulStep
from emorec.training.steps import StepContext

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# No dropout, no batch norm: training-mode outputs equal inference-mode ones.
MODEL = {"name": "ae_lstm_audio", "lstm_units": 8, "lstm_layers": 1, "audio_dropout": 0.0,
         "audio_batch_norm": False}
T = 5


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # Lengths 23, 12, 17 over 2 lanes: rows 5 + 3 + 4 -> lanes end unevenly, so padding rows occur.
    path, _ = make_dataset_dir(tmp_path_factory.mktemp("stateful"), recordings={"train": 3, "dev": 2},
                               frames=[23, 12, 17], window_frames=T, modalities=("audio",))
    return path


def _config(**training):
    return {"model": dict(MODEL),
            "data": {"window": 0.2, "modalities": ["audio"], "batch_size": 2, "augment": False,
                     "stream_ordered": True},
            "optimizer": {"name": "adam", "learning_rate": 1e-2},
            "training": {"epochs": 2, "seed": 0, "strategy": "one", "stateful": True, **training},
            "loss": {}}


def _model():
    keras.utils.set_random_seed(1)
    return build_model(MODEL["name"], MODEL)


def test_stream_prediction_equals_offline_whole_recording(data_dir):
    model = _model()
    ds = make_dataset(data_dir, "train", batch_size=2, modalities=["audio"], window_frames=T,
                      stream_ordered=True)
    got = predict_stream(model, ds)
    recordings = dict(read_recordings(data_dir, "train", ["audio"]))
    assert set(got) == set(recordings)
    for rid, arrays in recordings.items():
        want = model({"audio": tf.constant(arrays["audio"][None])})["emotion"].numpy()[0]
        gold, pred = got[rid]
        np.testing.assert_allclose(gold, arrays["labels"], atol=1e-6)
        np.testing.assert_allclose(pred, want, atol=1e-5)


def test_step_carries_resets_and_zeroes_padding(data_dir):
    """With a zero learning rate, the state after each step is the twin's state over the lane since its reset."""
    model = _model()
    twin = state_twin(model)
    strategy = tf.distribute.get_strategy()
    step = StatefulStep(StepContext(model, keras.optimizers.SGD(learning_rate=0.0), joint_objective, strategy,
                                    2, ["audio"]))
    ds = make_dataset(data_dir, "train", batch_size=2, modalities=["audio"], window_frames=T,
                      stream_ordered=True)
    since_reset = [[], []]
    saw_reset_mid_lane = saw_padding = False
    for k, batch in enumerate(ds):
        step({key: v for key, v in batch.items() if v.dtype != tf.string})
        carried = step.variable.numpy()
        for r in range(2):
            if batch["reset"][r]:
                saw_reset_mid_lane |= k > 0
                since_reset[r] = []
            since_reset[r].append(batch["audio"][r].numpy())
            if not batch["mask"][r].numpy().any():
                saw_padding = True
                np.testing.assert_array_equal(carried[r], 0.0)
                continue
            audio = np.concatenate(since_reset[r])[None]
            zero = np.zeros((1, *carried.shape[1:]), np.float32)
            want = twin({"audio": tf.constant(audio), STATES: tf.constant(zero)})[STATES].numpy()[0]
            np.testing.assert_allclose(carried[r], want, atol=1e-5)
    assert saw_reset_mid_lane and saw_padding


def test_padding_rows_do_not_change_the_loss(data_dir):
    model = _model()
    twin = state_twin(model)
    batch = next(iter(make_dataset(data_dir, "train", batch_size=3, modalities=["audio"],
                                   window_frames=T, stream_ordered=True).skip(4)))
    mask = batch["mask"].numpy()
    pad = int(np.nonzero(~mask.any(axis=1))[0][0])  # lane 3 of 3 (12 frames) has ended by row 4
    rng = np.random.default_rng(0)
    states = rng.standard_normal((3, 2, 8)).astype(np.float32)

    def loss(audio, states):
        outputs = twin({"audio": tf.constant(audio), STATES: tf.constant(states)})
        value, terms = joint_objective(dict(batch), outputs, reduce_fn=lambda x: x)
        return float(value), {k: float(v) for k, v in terms.items()}

    audio = batch["audio"].numpy()
    noisy_audio, noisy_states = audio.copy(), states.copy()
    noisy_audio[pad] = rng.standard_normal(noisy_audio[pad].shape)
    noisy_states[pad] = 10 * rng.standard_normal(noisy_states[pad].shape)
    assert loss(audio, states) == loss(noisy_audio, noisy_states)


@pytest.mark.slow  # three short training runs (~1 min on a loaded 2-core machine)
def test_stateful_training_lowers_the_loss_and_resumes_exactly(data_dir, tmp_path):
    config = resolve_config(_config(epochs=None, max_steps=12, checkpoint_every=1))
    losses = []
    full = train(config, data_dir, tmp_path / "full", progress=False,
                 on_step=lambda info: losses.append(info["terms"]["loss"]))
    # Each 6-step epoch sees the same rows (order shuffled): compare epoch means.
    assert np.mean(losses[6:]) < np.mean(losses[:6])
    assert all(np.isfinite(row["dev_ccc_mean"]) for row in full.history)

    half = resolve_config(_config(epochs=None, max_steps=8, checkpoint_every=1))
    train(half, data_dir, tmp_path / "resumed", progress=False)  # stops mid-epoch 2, lanes in flight
    resumed = train(config, data_dir, tmp_path / "resumed", progress=False, resume=True)
    for a, b in zip(full.model.get_weights(), resumed.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_cli_flag_records_the_setting(data_dir, tmp_path):
    doc = _config()
    doc["training"].pop("stateful")
    doc["data"]["stream_ordered"] = False
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = tmp_path / "run"
    train_result(["--model", MODEL["name"], "--config", str(path), "--data", str(data_dir), "--out", str(out),
                  "--steps", "2", "--stateful", "--no-progress"])
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["training"]["stateful"] is True and saved["data"]["stream_ordered"] is True
    assert resolve_config(doc).training.stateful is False  # off by default (the paper)


def test_config_errors(data_dir, tmp_path):
    with pytest.raises(ConfigError, match="stream_ordered"):
        train(_config() | {"data": {**_config()["data"], "stream_ordered": False}}, data_dir,
              tmp_path / "a", progress=False)
    import _tiny_model

    tiny = _tiny_model.tiny_config(stateful=True)
    tiny["data"].update(stream_ordered=True)
    with pytest.raises(ConfigError, match="RecurrentHead"):
        train(tiny, data_dir, tmp_path / "b", progress=False)
    with pytest.raises(ConfigError, match="training.stateful must be true or false"):
        resolve_config(_config(stateful="yes"))
