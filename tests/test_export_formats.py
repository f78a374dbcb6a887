"""ONNX and LiteRT exports: every runtime gives the Keras model's predictions, offline and streaming.

The real-media tests run the astronaut's face video with espeak-ng speech
through ``emorec predict``'s pipeline in each runtime and compare with the
Keras model on the same frames; the others pin each model/runtime pair on
inputs of their own (a seed the export's own check does not use).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from media_samples import astronaut_face_video
from test_export import make_run

pytest.importorskip("tf2onnx", reason="emorec[onnx] not installed")
ort = pytest.importorskip("onnxruntime", reason="emorec[onnx] not installed")
litert = pytest.importorskip("ai_edge_litert.interpreter", reason="emorec[litert] not installed")

from emorec import export as ex  # noqa: E402
from emorec import predict as pr  # noqa: E402
from emorec.cli import main as cli_main  # noqa: E402
from emorec.export_formats import CHECK_TOLERANCE, check_inputs  # noqa: E402
from emorec.rundir import ExportDir  # noqa: E402
from emorec.runtimes import RUNTIMES, open_runtime  # noqa: E402
from emorec.streaming import build_streaming  # noqa: E402

TOL = 1e-4
# ResNet-50's float32 convolutions drift more between runtimes (see CHECK_TOLERANCE).
RESNET_TOL = CHECK_TOLERANCE
RESNET_MODELS = ("e2e_video", "e2e_av", "e2e_av_geometric")
ALL = ["savedmodel", "onnx", "litert"]
CONVERTED = ["onnx", "litert"]


@pytest.fixture(scope="module")
def mp4(tmp_path_factory):
    """1.2 s (30 frames) of the astronaut's face with real speech as its sound track."""
    path = tmp_path_factory.mktemp("media") / "talk.mp4"
    astronaut_face_video(path, seconds=1.2)
    return path


def _export(root, config, modalities, formats):
    run_dir, model = make_run(root, config, modalities=modalities)
    assert cli_main(["export", str(run_dir), str(root / "export"), "--format", *formats]) == 0
    return root / "export", model


@pytest.fixture(scope="module")
def audio_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats_audio")
    return _export(root, {"name": "e2e_audio", "lstm_units": 8, "lstm_layers": 2}, ("audio",), ALL)


@pytest.fixture(scope="module")
def av_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats_av")
    config = {"name": "ae_lstm", "lstm_units": 8, "face_latent": 16, "face_size": 32, "audio_latent": 8}
    return _export(root, config, ("audio", "video"), ALL)


def test_export_json_describes_every_format(audio_export):
    out, _ = audio_export
    info = json.loads((out / ExportDir.EXPORT_JSON).read_text())
    assert info["format_version"] == ex.EXPORT_VERSION == 3
    assert list(info["formats"]) == ALL
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["export.json", "model.keras", "saved_model", "model.onnx", "model_step.onnx", "model.tflite",
         "model_step.tflite"])  # and no staging folder left behind
    files = {"onnx": (ExportDir.ONNX, ExportDir.ONNX_STREAMING),
             "litert": (ExportDir.LITERT, ExportDir.LITERT_STREAMING)}
    for name in CONVERTED:
        entry = info["formats"][name]
        assert (entry["offline"]["file"], entry["streaming"]["file"]) == files[name]
        assert entry["offline"]["inputs"] == ["audio"] and entry["offline"]["outputs"] == ["arousal", "valence"]
        assert entry["streaming"]["inputs"] == ["audio", "states"]
        assert entry["streaming"]["outputs"] == ["arousal", "valence", "next_states"]
    assert info["formats"]["savedmodel"]["streaming"]["outputs"] == ["arousal", "valence", "states"]
    assert info["formats"]["litert"]["batch"].startswith("1")
    for name in ALL:
        diff = info["formats"][name]["check_max_abs_diff"]
        assert 0 <= diff["offline"] <= CHECK_TOLERANCE and 0 <= diff["streaming"] <= CHECK_TOLERANCE, name
    # The names export.json gives are the ones the files carry.
    session = ort.InferenceSession(str(out / ExportDir.ONNX_STREAMING), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["audio", "states"]
    assert sorted(o.name for o in session.get_outputs()) == ["arousal", "next_states", "valence"]
    assert [i.shape[0] for i in session.get_inputs()][1] != 1  # dynamic batch
    interpreter = litert.Interpreter(model_path=str(out / ExportDir.LITERT_STREAMING))
    signature = interpreter.get_signature_list()["serving_default"]
    assert sorted(signature["inputs"]) == ["audio", "states"]
    assert sorted(signature["outputs"]) == ["arousal", "next_states", "valence"]


def _keras_on_media(model, export_dir, mp4):
    arrays = pr.media_frames(mp4, pr.read_export_info(export_dir))
    want = np.asarray(model({k: v[None] for k, v in arrays.items()}, training=False)["emotion"])[0]
    # The comparison means something only if the predictions move with the input.
    assert want.shape == (30, 2) and float(np.ptp(want)) > 1e-3
    return arrays, want


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_audio_model_on_real_mp4_every_runtime(audio_export, mp4, runtime):
    export_dir, model = audio_export
    arrays, want = _keras_on_media(model, export_dir, mp4)
    offline = pr.predict_media(export_dir, mp4, runtime=runtime, chunk_frames=7)
    streamed = pr.predict_media(export_dir, mp4, runtime=runtime, stream=True, chunk_frames=11)
    assert offline["runtime"] == streamed["runtime"] == runtime
    np.testing.assert_allclose(offline["predictions"], want, atol=TOL, rtol=0)
    np.testing.assert_allclose(streamed["predictions"], want, atol=TOL, rtol=0)
    # The offline graph itself (model.onnx, model.tflite, serving_default) on the whole recording,
    # and on windows from a zero state (the windowed post-processing's mode; LiteRT loops over them).
    engine = open_runtime(export_dir, pr.read_export_info(export_dir), runtime)
    np.testing.assert_allclose(engine.offline({k: v[None] for k, v in arrays.items()})[0], want, atol=TOL, rtol=0)
    windows = pr.predict_windows(engine, [{k: v[:20] for k, v in arrays.items()},
                                          {k: v[20:] for k, v in arrays.items()}], 10)
    frames = arrays["audio"].reshape(3, 10, -1)
    np.testing.assert_allclose(windows, np.asarray(model({"audio": frames}, training=False)["emotion"]).reshape(30, 2),
                               atol=TOL, rtol=0)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_audiovisual_model_on_real_mp4_every_runtime(av_export, mp4, runtime):
    export_dir, model = av_export
    _, want = _keras_on_media(model, export_dir, mp4)
    offline = pr.predict_media(export_dir, mp4, runtime=runtime, chunk_frames=8)
    streamed = pr.predict_media(export_dir, mp4, runtime=runtime, stream=True, chunk_frames=13)
    np.testing.assert_allclose(offline["predictions"], want, atol=TOL, rtol=0)
    np.testing.assert_allclose(streamed["predictions"], want, atol=TOL, rtol=0)


def _pin_pair(tmp_path, config, modalities, formats, chunks_independent=True):
    """Export ``formats`` of a tiny model, then compare each runtime with Keras on fresh inputs."""
    run_dir, model = make_run(tmp_path, config, modalities=modalities)
    tol = RESNET_TOL if config["name"] in RESNET_MODELS else TOL
    info = ex.export_run(run_dir, tmp_path / "export", model=model, formats=formats)
    keras_model = ex.inference_model(model)
    twin = build_streaming(keras_model)
    inputs = check_inputs(keras_model, 9, batch=2, seed=7)
    want = np.asarray(keras_model(inputs, training=False)["emotion"])
    assert float(np.ptp(want)) > 1e-3
    zeros = np.zeros((2, *info["streaming"]["state_shape"]), np.float32)
    for fmt in formats:
        engine = open_runtime(tmp_path / "export", info, fmt)
        np.testing.assert_allclose(engine.offline(inputs), want, atol=tol, rtol=0, err_msg=fmt)
        states, keras_states, parts = zeros, zeros, []
        for lo, hi in ((0, 4), (4, 5), (5, 9)):
            chunk = {k: v[:, lo:hi] for k, v in inputs.items()}
            got, states = engine.step(chunk, states)
            ref = twin({**chunk, "states": keras_states}, training=False)
            keras_states = np.asarray(ref["states"])
            np.testing.assert_allclose(got, np.asarray(ref["emotion"]), atol=tol, rtol=0, err_msg=fmt)
            np.testing.assert_allclose(states, keras_states, atol=tol, rtol=0, err_msg=fmt)
            parts.append(got)
        if chunks_independent:
            np.testing.assert_allclose(np.concatenate(parts, axis=1), want, atol=tol, rtol=0, err_msg=fmt)


FACE = {"face_size": 32}
AE = {"lstm_units": 8, "face_latent": 16, "audio_latent": 8, **FACE}
PAIRS = [
    pytest.param({"name": "e2e_audio", "lstm_units": 8, "recurrent": "keras"}, ("audio",), True, id="e2e_audio-keras"),
    pytest.param({"name": "e2e_audio", "lstm_units": 8, "audio_variant": "paper"}, ("audio",), False,
                 id="e2e_audio-paper", marks=pytest.mark.slow),
    pytest.param({"name": "ae_2slstm", **AE}, ("audio", "video"), True, id="ae_2slstm"),
    pytest.param({"name": "ae_lstm_audio", "lstm_units": 8, "audio_latent": 8}, ("audio",), True,
                 id="ae_lstm_audio", marks=pytest.mark.slow),
    pytest.param({"name": "ae_lstm_video", "lstm_units": 8, "face_latent": 16, **FACE}, ("video",), True,
                 id="ae_lstm_video", marks=pytest.mark.slow),
    pytest.param({"name": "conv_lstm", **AE}, ("audio", "video"), True, id="conv_lstm", marks=pytest.mark.slow),
    # ResNet-50: about a minute per converted graph on 2 cores.
    pytest.param({"name": "e2e_video", "lstm_units": 8, **FACE}, ("video",), True, id="e2e_video",
                 marks=pytest.mark.slow),
    pytest.param({"name": "e2e_av_geometric", "lstm_units": 8, **FACE}, ("audio", "video"), True,
                 id="e2e_av_geometric", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("config", "modalities", "independent"), PAIRS)
def test_model_runtime_pair(tmp_path, config, modalities, independent):
    _pin_pair(tmp_path, config, modalities, CONVERTED, chunks_independent=independent)


@pytest.mark.slow
def test_e2e_av_on_real_mp4_every_runtime(tmp_path, mp4):
    """The full Tzirakis et al. multimodal model (speech CNN + ResNet-50) in all three runtimes."""
    export_dir, model = _export(tmp_path, {"name": "e2e_av", "lstm_units": 8, **FACE}, ("audio", "video"), ALL)
    _, want = _keras_on_media(model, export_dir, mp4)
    for runtime in RUNTIMES:
        offline = pr.predict_media(export_dir, mp4, runtime=runtime, chunk_frames=12)
        streamed = pr.predict_media(export_dir, mp4, runtime=runtime, stream=True, chunk_frames=7)
        np.testing.assert_allclose(offline["predictions"], want, atol=RESNET_TOL, rtol=0, err_msg=runtime)
        np.testing.assert_allclose(streamed["predictions"], want, atol=RESNET_TOL, rtol=0, err_msg=runtime)


def test_formats_are_replaced_not_mixed(tmp_path):
    # A second export with other formats leaves no file of the first behind.
    run_dir, model = make_run(tmp_path, {"name": "e2e_audio", "lstm_units": 4, "lstm_layers": 1})
    out = tmp_path / "export"
    ex.export_run(run_dir, out, model=model, formats=["onnx"])
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model.keras", "model.onnx", "model_step.onnx"]
    info = ex.export_run(run_dir, out, model=model, formats=["litert"])
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model.keras", "model.tflite",
                                                     "model_step.tflite"]
    assert list(info["formats"]) == ["litert"] and info["saved_model"] is None
    # Without a SavedModel, predict runs what the export holds.
    from emorec.runtimes import default_runtime

    assert default_runtime(info) == "litert"


def test_no_streaming_export_has_offline_graphs_only(tmp_path, mp4):
    run_dir, model = make_run(tmp_path, {"name": "e2e_audio", "lstm_units": 4, "lstm_layers": 1})
    info = ex.export_run(run_dir, tmp_path / "export", model=model, formats=["onnx"], streaming=False)
    assert info["formats"]["onnx"]["streaming"] is None and info["streaming"] is None
    assert not (tmp_path / "export" / ExportDir.ONNX_STREAMING).exists()
    _, want = _keras_on_media(model, tmp_path / "export", mp4)
    result = pr.predict_media(tmp_path / "export", mp4, runtime="onnx")
    assert result["mode"] == "whole"
    np.testing.assert_allclose(result["predictions"], want, atol=TOL, rtol=0)
