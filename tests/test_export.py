"""emorec.export: one SavedModel whose offline signature equals the Keras model and whose streaming
signature, chunk by chunk, equals offline; variables stored once; decoders left out."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from dataset_factory import make_dataset_dir

from emorec import export as ex
from emorec.cli import main as cli_main
from emorec.rundir import ExportDir
from emorec.schema import FRAME_PERIOD, FRAME_SAMPLES

UNITS = 8


def make_run(root, model_config: dict, modalities=("audio",), seed=0, data=None):
    """A run directory as the training engine lays it out (config.yaml + best.keras), from an untrained model.

    ``data`` adds settings to the run's ``data`` section (e.g. ``{"target": "last"}``).
    """
    import keras

    from emorec.config import resolve_config
    from emorec.models import build_model

    data_dir, _ = make_dataset_dir(root, recordings={"dev": 1}, frames=12, window_frames=6,
                                   modalities=modalities, seed=seed)
    config = resolve_config({"model": model_config,
                             "data": {"window": 6 * FRAME_PERIOD, "modalities": list(modalities), **(data or {})}})
    run_dir = root / "run"
    config.save(run_dir, {"data_dir": str(data_dir)})
    keras.utils.set_random_seed(seed)
    model = build_model(model_config["name"], model_config)
    calibrate_batchnorm(model, seed)
    model.save(run_dir / "best.keras")
    return run_dir, model


def calibrate_batchnorm(model, seed=0):
    """Give every batch norm the statistics of its inputs, as training would.

    Freshly built, a batch norm in inference mode is the identity; through
    ResNet-50's He-initialised trunk the activations then grow to ~1e5 and
    saturate the LSTM, so an untrained e2e_av predicts a constant and the
    exports' numerical checks measure rounding of huge numbers. One forward
    pass in training mode with momentum 0 sets each layer's moving statistics
    to its batch statistics.
    """
    import keras

    from emorec.export_formats import check_inputs

    norms = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
             if isinstance(layer, keras.layers.BatchNormalization)]
    if not norms:
        return
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(check_inputs(model, 6, batch=4, seed=seed + 1000), training=True)
    for layer, momentum in zip(norms, momenta):
        layer.momentum = momentum


def _chunks_through(step, inputs: dict, states, sizes):
    """Feed ``inputs (B, T, ...)`` through a streaming ``step`` signature in chunks of ``sizes``."""
    parts, start = [], 0
    for size in sizes:
        out = step(**{k: tf.constant(v[:, start:start + size]) for k, v in inputs.items()}, states=states)
        parts.append(np.stack([out["arousal"].numpy(), out["valence"].numpy()], axis=-1))
        states = out["states"]
        start += size
    assert start == next(iter(inputs.values())).shape[1]
    return np.concatenate(parts, axis=1), states


@pytest.fixture(scope="module")
def audio_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_audio")
    run_dir, model = make_run(root, {"name": "e2e_audio", "lstm_units": UNITS, "lstm_layers": 2})
    from emorec.postprocess import DimensionParams, PostprocessParams

    params = PostprocessParams([DimensionParams("arousal", shift=3), DimensionParams("valence", offset=0.5)])
    params.save(run_dir / "postprocess.json")
    out = root / "export"
    assert cli_main(["export", str(run_dir), str(out)]) == 0
    return out, model


def test_layout_and_export_json(audio_export):
    out, _ = audio_export
    info = json.loads((out / ExportDir.EXPORT_JSON).read_text())
    assert info["model"] == "e2e_audio" and info["inputs"] == ["audio"] and info["modalities"] == ["audio"]
    assert info["face_size"] is None and info["frame_period"] == FRAME_PERIOD
    assert info["audio_norm"] == "none" and info["label_alignment"] == "end"
    # 2 layers x (h, c) of 8 units.
    assert info["streaming"]["state_shape"] == [4, UNITS]
    assert info["postprocess"] == "postprocess.json"
    assert json.loads((out / "postprocess.json").read_text())["dimensions"][0]["shift"] == 3
    for name in ("model.keras", "saved_model/saved_model.pb"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model.keras", "postprocess.json",
                                                     "saved_model"]
    # model.keras is the run's best.keras itself (a hard link), not a second copy.
    assert (out / "model.keras").stat().st_ino == (out.parent / "run" / "best.keras").stat().st_ino


def test_offline_saved_model_equals_keras(audio_export):
    out, model = audio_export
    loaded = tf.saved_model.load(str(out / ExportDir.SAVED_MODEL))
    assert sorted(loaded.signatures) == ["initial_state", "serving_default", "step"]
    serve = loaded.signatures["serving_default"]
    assert sorted(serve.structured_input_signature[1]) == ["audio"]
    rng = np.random.default_rng(0)
    for batch, frames in ((1, 9), (3, 14)):  # batch and time are dynamic
        audio = rng.normal(0, 0.3, (batch, frames, FRAME_SAMPLES)).astype(np.float32)
        got = serve(audio=tf.constant(audio))
        want = model({"audio": audio}, training=False)["emotion"].numpy()
        assert got["arousal"].shape == (batch, frames)
        np.testing.assert_allclose(got["arousal"].numpy(), want[..., 0], atol=1e-5)
        np.testing.assert_allclose(got["valence"].numpy(), want[..., 1], atol=1e-5)


def test_streaming_saved_model_chunks_equal_offline(audio_export):
    out, model = audio_export
    loaded = tf.saved_model.load(str(out / ExportDir.SAVED_MODEL))
    zeros = loaded.signatures["initial_state"](batch_size=tf.constant(2))["states"]
    assert zeros.shape == (2, 4, UNITS) and not np.any(zeros.numpy())
    # Two streams (different recordings) served in one batch.
    audio = np.random.default_rng(1).normal(0, 0.3, (2, 23, FRAME_SAMPLES)).astype(np.float32)
    want = model({"audio": audio}, training=False)["emotion"].numpy()
    got, states = _chunks_through(loaded.signatures["step"], {"audio": audio}, zeros, [5, 1, 10, 7])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert states.shape == (2, 4, UNITS)
    # Without carrying the state the second chunk differs: the state is really used.
    fresh = loaded.signatures["step"](audio=tf.constant(audio[:, 5:]), states=zeros)
    assert not np.allclose(fresh["arousal"].numpy(), want[:, 5:, 0], atol=1e-5)


def test_keras_lstm_streaming_export(tmp_path):
    """keras.layers.LSTM heads (ae_lstm family, or e2e with recurrent: keras) stream exactly too."""
    try:
        import emorec.models.ae_lstm  # noqa: F401

        config = {"name": "ae_lstm_audio", "lstm_units": UNITS}
    except ImportError:
        config = {"name": "e2e_audio", "recurrent": "keras", "lstm_units": UNITS, "lstm_layers": 2}
    run_dir, model = make_run(tmp_path, config)
    info = ex.export_run(run_dir, tmp_path / "export", model=model)
    assert info["streaming"]["state_shape"] == [4, UNITS]
    loaded = tf.saved_model.load(str(tmp_path / "export" / ExportDir.SAVED_MODEL))
    audio = np.random.default_rng(2).normal(0, 0.3, (1, 17, FRAME_SAMPLES)).astype(np.float32)
    want = model({"audio": audio}, training=False)["emotion"].numpy()
    zeros = loaded.signatures["initial_state"](batch_size=tf.constant(1))["states"]
    got, _ = _chunks_through(loaded.signatures["step"], {"audio": audio}, zeros, [4, 4, 9])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_one_copy_of_the_weights_and_no_decoders(tmp_path):
    # ae_lstm's decoders play no part in prediction: the export holds the encoders and the head once,
    # whatever the number of signatures.
    config = {"name": "ae_lstm", "lstm_units": UNITS, "face_latent": 16, "face_size": 32, "audio_latent": 8}
    run_dir, model = make_run(tmp_path, config, modalities=("audio", "video"))
    ex.export_run(run_dir, tmp_path / "export", model=model)
    reader = tf.train.load_checkpoint(str(tmp_path / "export" / "saved_model" / "variables" / "variables"))
    stored = sum(int(np.prod(shape)) for name, shape in reader.get_variable_to_shape_map().items()
                 if "OBJECT_GRAPH" not in name and "save_counter" not in name)
    decoders = sum(model.get_layer(n).count_params() for n in ("face_decoder", "audio_decoder"))
    assert stored == model.count_params() - decoders


def test_errors(tmp_path, capsys):
    assert cli_main(["export", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "config.yaml" in capsys.readouterr().err
