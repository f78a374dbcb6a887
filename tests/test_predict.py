"""emorec.predict on real media: espeak speech (wav) and the astronaut face video (mp4)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from media_samples import astronaut_face_video, speech_wav
from test_export import make_run

from emorec import export as ex
from emorec import predict as pr
from emorec.cli import main as cli_main
from emorec.errors import ConfigError
from emorec.media.audio import read_audio
from emorec.postprocess import DimensionParams, PostprocessParams, apply_postprocessing
from emorec.schema import FRAME_PERIOD, FRAME_SAMPLES, SAMPLE_RATE


@pytest.fixture(scope="module")
def audio_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict_audio")
    run_dir, model = make_run(root, {"name": "e2e_audio", "lstm_units": 8, "lstm_layers": 2})
    PostprocessParams([DimensionParams("arousal", median_window=5, shift=2),
                       DimensionParams("valence", offset=0.25, scale=2.0)]).save(run_dir / "postprocess.json")
    ex.export_run(run_dir, root / "export", model=model)
    return root / "export", model


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    speech_wav(root / "speech.wav", seconds=2.0)
    astronaut_face_video(root / "face.mp4", seconds=1.2)
    astronaut_face_video(root / "noface.mp4", seconds=0.8, face_from=5.0)
    return root


def _model_on(model, audio):
    frames = audio[: len(audio) // FRAME_SAMPLES * FRAME_SAMPLES].reshape(1, -1, FRAME_SAMPLES)
    return model({"audio": frames}, training=False)["emotion"].numpy()[0]


def test_wav_offline_stream_and_postprocess(audio_export, media, tmp_path):
    export_dir, model = audio_export
    out = tmp_path / "speech.csv"
    assert cli_main(["predict", str(export_dir), str(media / "speech.wav"), "--out", str(out),
                     "--plot", str(tmp_path / "speech.png"), "--no-progress"]) == 0
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["time", "arousal", "valence"]
    assert len(frame) == 2.0 / FRAME_PERIOD == 50
    np.testing.assert_allclose(frame["time"], (np.arange(50) + 1) * FRAME_PERIOD)  # label alignment end
    want = _model_on(model, read_audio(media / "speech.wav", SAMPLE_RATE))
    np.testing.assert_allclose(frame[["arousal", "valence"]].to_numpy(), want, atol=1e-5)
    assert (tmp_path / "speech.png").stat().st_size > 1000

    streamed = pr.predict_media(export_dir, media / "speech.wav", stream=True, chunk_frames=7)
    np.testing.assert_allclose(streamed["predictions"], want, atol=1e-5)

    post = pr.predict_media(export_dir, media / "speech.wav", postprocess=True)
    params = PostprocessParams.load(export_dir / "postprocess.json")
    np.testing.assert_allclose(post["predictions"], apply_postprocessing(params, {"r": want})["r"], atol=1e-5)
    np.testing.assert_allclose(post["raw"], want, atol=1e-5)


def test_postprocessing_tuned_on_windows_predicts_in_windows(tmp_path, media):
    # A chain tuned on 5-frame windows from a zero state (the default evaluation window) is applied
    # to predictions made the same way; streaming cannot reproduce them and is refused.
    run_dir, model = make_run(tmp_path, {"name": "e2e_audio", "lstm_units": 8, "lstm_layers": 2})
    PostprocessParams([DimensionParams("arousal", offset=0.5), DimensionParams("valence")],
                      inference={"eval_window": "train", "frames": 5}).save(run_dir / "postprocess.json")
    ex.export_run(run_dir, tmp_path / "export", model=model)
    audio = read_audio(media / "speech.wav", SAMPLE_RATE)
    frames = audio[: len(audio) // FRAME_SAMPLES * FRAME_SAMPLES].reshape(-1, 5, FRAME_SAMPLES)  # 50 = 10 x 5
    windowed = model({"audio": frames}, training=False)["emotion"].numpy().reshape(-1, 2)
    result = pr.predict_media(tmp_path / "export", media / "speech.wav", postprocess=True)
    assert result["mode"] == "windows of 5 frames"
    np.testing.assert_allclose(result["raw"], windowed, atol=1e-5)
    np.testing.assert_allclose(result["predictions"][:, 0], windowed[:, 0] + 0.5, atol=1e-5)
    assert not np.allclose(windowed, _model_on(model, audio), atol=1e-3)  # the windows matter
    with pytest.raises(ConfigError, match="tuned on predictions of 5-frame windows.*--eval-window whole"):
        pr.predict_media(tmp_path / "export", media / "speech.wav", postprocess=True, stream=True)


def test_mp4_sound_track_for_audio_model(audio_export, media):
    export_dir, model = audio_export
    result = pr.predict_media(export_dir, media / "face.mp4", stream=True, chunk_frames=11)
    want = _model_on(model, read_audio(media / "face.mp4", SAMPLE_RATE))
    assert result["predictions"].shape == (30, 2)  # 1.2 s
    np.testing.assert_allclose(result["predictions"], want, atol=1e-5)


@pytest.fixture(scope="module")
def video_export(tmp_path_factory):
    pytest.importorskip("emorec.models.ae_lstm")
    root = tmp_path_factory.mktemp("predict_video")
    config = {"name": "ae_lstm_video", "face_size": 32, "lstm_units": 8}
    run_dir, model = make_run(root, config, modalities=("video",))
    ex.export_run(run_dir, root / "export", model=model)
    return root / "export", model


def test_mp4_video_model_offline_equals_stream_and_keras(video_export, media):
    export_dir, model = video_export
    info = pr.read_export_info(export_dir)
    assert info["inputs"] == ["video"] and info["face_size"] == 32
    arrays = pr.media_frames(media / "face.mp4", info)
    assert arrays["video"].shape == (30, 32, 32, 3) and arrays["video"].max() <= 1.0
    want = model({"video": arrays["video"][None]}, training=False)["emotion"].numpy()[0]
    offline = pr.predict_media(export_dir, media / "face.mp4")
    streamed = pr.predict_media(export_dir, media / "face.mp4", stream=True, chunk_frames=8)
    np.testing.assert_allclose(offline["predictions"], want, atol=1e-5)
    np.testing.assert_allclose(streamed["predictions"], want, atol=1e-5)


def test_errors(audio_export, video_export, media, tmp_path, capsys):
    export_dir, _ = audio_export
    video_dir, _ = video_export
    out = str(tmp_path / "x.csv")
    cases = [
        ([str(export_dir), str(tmp_path / "missing.wav")], "missing.wav: no such file"),
        ([str(video_dir), str(media / "speech.wav")], "speech.wav: has no video stream"),
        ([str(video_dir), str(media / "noface.mp4")], "noface.mp4: no detectable face"),
        ([str(tmp_path), str(media / "speech.wav")], "export.json: not found"),
        ([str(export_dir), str(media / "speech.wav"), "--stream", "--chunk-frames", "0"], "--chunk-frames"),
    ]
    for argv, message in cases:
        assert cli_main(["predict", *argv, "--out", out, "--no-progress"]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err, err
    assert not (tmp_path / "x.csv").exists()
