"""emorec.inference: sliding windows through the split model equal the whole model per window."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from emorec.inference import RecordingPredictor, split_at_heads
from emorec.models import build_model
from emorec.schema import FRAME_SAMPLES

FACE = 32


def _arrays(names, frames=23, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    if "audio" in names:
        out["audio"] = rng.normal(0, 0.3, (frames, FRAME_SAMPLES)).astype(np.float32)
    if "video" in names:
        out["video"] = rng.integers(0, 256, (frames, FACE, FACE, 3), dtype=np.uint8)
    return out


def _direct_sliding(model, arrays, w):
    """Each frame's window through the whole model, by hand."""
    names = list(arrays)
    total = len(arrays[names[0]])
    out = np.zeros((total, 2), np.float32)
    for end in range(total):
        piece = {}
        for k, v in arrays.items():
            v = v[max(0, end - w + 1):end + 1]
            piece[k] = (v.astype(np.float32) / 255.0 if v.dtype == np.uint8 else v)[None]
        out[end] = model(piece, training=False)["emotion"].numpy()[0, -1]
    return out


@pytest.mark.parametrize("config", [
    {"name": "ae_lstm", "face_size": FACE, "face_latent": 16, "lstm_units": 8},
    {"name": "ae_2slstm", "face_size": FACE, "face_latent": 16, "lstm_units": 8},
    {"name": "e2e_audio", "lstm_units": 8, "lstm_layers": 2},
])
def test_sliding_split_equals_whole_windows(config):
    keras.utils.set_random_seed(1)
    model = build_model(config["name"], config)
    arrays = _arrays([t.name for t in model.inputs])
    predictor = RecordingPredictor(model, "sliding", 5, batch_size=3)
    got = predictor(arrays)
    assert predictor._split is not None  # per-frame features: the split path ran
    np.testing.assert_allclose(got, _direct_sliding(model, arrays, 5), atol=2e-5, rtol=0)
    # Shorter than the window: every frame has fewer than four predecessors.
    short = {k: v[:3] for k, v in arrays.items()}
    np.testing.assert_allclose(predictor(short), _direct_sliding(model, short, 5), atol=2e-5, rtol=0)


def test_split_shares_weights_and_drops_decoders():
    model = build_model("ae_lstm", {"name": "ae_lstm", "face_size": FACE, "face_latent": 16, "lstm_units": 8})
    features, head = split_at_heads(model)
    decoders = sum(layer.count_params() for layer in model.layers if "decoder" in layer.name)
    assert decoders > 0
    assert features.count_params() + head.count_params() == model.count_params() - decoders
    assert features.output[0].shape[-1] == head.input[0].shape[-1] == model.get_layer("recurrent").input.shape[-1]


def test_front_end_mixing_frames_runs_whole_windows():
    # The paper's speech CNN convolves across frame boundaries, so its features of one frame
    # depend on its neighbours: the split is refused and every window runs the whole model.
    keras.utils.set_random_seed(2)
    model = build_model("e2e_audio", {"name": "e2e_audio", "audio_variant": "paper", "lstm_units": 8})
    arrays = _arrays(["audio"], frames=9)
    predictor = RecordingPredictor(model, "sliding", 4, batch_size=2)
    got = predictor(arrays)
    assert predictor._split is None
    np.testing.assert_allclose(got, _direct_sliding(model, arrays, 4), atol=2e-5, rtol=0)


def test_model_without_heads_has_no_split():
    inputs = {"audio": keras.Input((None, FRAME_SAMPLES), name="audio")}
    emotion = keras.layers.Dense(2)(inputs["audio"])
    assert split_at_heads(keras.Model(inputs, {"emotion": emotion})) is None


def test_trained_scale_features_still_split():
    # A trained ae_lstm's per-frame features reach ~2e3, where one frame computed among its
    # neighbours and alone differ by ~5e-3 of float32 rounding: that is per-frame, and the split
    # must be kept (an element-wise rtol once refused it at random, running validation 5x slower).
    from emorec.inference import same_features

    rng = np.random.default_rng(0)
    joint = rng.normal(0, 500, (1, 1, 3328)).astype(np.float32)
    joint[0, 0, :4] = [1917.9, -1500.0, 1e-3, -2e-4]
    rounding = joint + rng.normal(0, 2e-3, joint.shape).astype(np.float32)
    assert same_features(joint, rounding, scale=float(np.abs(joint).max()))
    assert not np.allclose(joint, rounding, rtol=1e-4, atol=1e-5)  # what the old check asked
    mixed = joint.copy()
    mixed[0, 0, 10] += 5.0  # a neighbour's contribution
    assert not same_features(joint, mixed, scale=float(np.abs(joint).max()))


def test_a_model_is_split_the_same_way_every_time():
    # Each epoch's validation makes a new predictor for the same model: building the split adds
    # nodes to the heads, so a second split used to be refused and every later validation ran
    # the whole model per window (~5x slower).
    model = build_model("ae_lstm", {"name": "ae_lstm", "face_size": FACE, "face_latent": 16, "lstm_units": 8})
    first = split_at_heads(model)
    assert first is not None and split_at_heads(model) is first
    arrays = _arrays([t.name for t in model.inputs], frames=7)
    splits, outputs = [], []
    for batch_size in (3, 4):
        predictor = RecordingPredictor(model, "sliding", 5, batch_size=batch_size)
        outputs.append(predictor(arrays))
        splits.append(predictor._split)
    # The second predictor (the evaluation after the last validation) reuses the traced functions.
    assert splits[0] is not None and splits[1] is splits[0]
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=1e-6)
