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
    assert result["mode"] == "consecutive windows of 5 frames"
    np.testing.assert_allclose(result["raw"], windowed, atol=1e-5)
    np.testing.assert_allclose(result["predictions"][:, 0], windowed[:, 0] + 0.5, atol=1e-5)
    assert not np.allclose(windowed, _model_on(model, audio), atol=1e-3)  # the windows matter
    with pytest.raises(ConfigError, match="consecutive windows of 5 frames each start from a zero state.*"
                                          "--eval-window whole"):
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


def test_index_file_start_end(audio_export, media, tmp_path):
    # audinterface / audformat's segmented index: the media path as given, each 40 ms frame's span.
    export_dir, _ = audio_export
    wav = media / "speech.wav"
    by_time, by_segment = tmp_path / "time.csv", tmp_path / "segments.csv"
    assert cli_main(["predict", str(export_dir), str(wav), "--out", str(by_time), "--no-progress"]) == 0
    assert cli_main(["predict", str(export_dir), str(wav), "--out", str(by_segment), "--index", "file-start-end",
                     "--no-progress"]) == 0
    times, segments = pd.read_csv(by_time), pd.read_csv(by_segment)
    assert list(segments.columns) == ["file", "start", "end", "arousal", "valence"]
    assert (segments["file"] == str(wav)).all() and len(segments) == 50
    np.testing.assert_allclose(segments["start"], np.arange(50) * FRAME_PERIOD, atol=1e-9)
    np.testing.assert_allclose(segments["end"], (np.arange(1, 51)) * FRAME_PERIOD, atol=1e-9)
    assert segments["start"].iloc[1] == 0.04 and segments["end"].iloc[-1] == 2.0  # rounded, not 0.04000000001
    np.testing.assert_array_equal(segments[["arousal", "valence"]], times[["arousal", "valence"]])
    # The label time of alignment "end" is the frame's end.
    np.testing.assert_allclose(times["time"], segments["end"], atol=1e-9)


def test_offline_chunks_carry_the_state(audio_export, media):
    # Offline prediction runs a block at a time with the state carried: the chunk length does not
    # change a number, and the result is the offline graph on the whole recording.
    from emorec.runtimes import open_runtime

    export_dir, _ = audio_export
    info = pr.read_export_info(export_dir)
    arrays = pr.media_frames(media / "speech.wav", info)
    whole = open_runtime(export_dir, info).offline({k: v[None] for k, v in arrays.items()})[0]
    for chunk in (1, 7, 50, 750):
        result = pr.predict_media(export_dir, media / "speech.wav", chunk_frames=chunk)
        assert result["mode"] == "whole" and result["runtime"] == "savedmodel"
        np.testing.assert_allclose(result["raw"], whole, atol=1e-6, rtol=0)


def test_windows_are_predicted_block_wise(tmp_path, media):
    # Windows are independent, so blocks of whole windows give the windows of the whole recording,
    # whatever the block (chunk_frames rounded down to whole windows, at least one).
    run_dir, model = make_run(tmp_path, {"name": "e2e_audio", "lstm_units": 8, "lstm_layers": 2})
    PostprocessParams([DimensionParams("arousal"), DimensionParams("valence")],
                      inference={"eval_window": "train", "frames": 6}).save(run_dir / "postprocess.json")
    ex.export_run(run_dir, tmp_path / "export", model=model)
    audio = read_audio(media / "speech.wav", SAMPLE_RATE)
    frames = np.zeros((54, FRAME_SAMPLES), np.float32)  # 50 frames, padded to 9 windows of 6
    frames[:50] = audio[: 50 * FRAME_SAMPLES].reshape(50, FRAME_SAMPLES)
    want = model({"audio": frames.reshape(9, 6, FRAME_SAMPLES)}, training=False)["emotion"].numpy()
    want = want.reshape(54, 2)[:50]
    for chunk in (1, 13, 750):
        result = pr.predict_media(tmp_path / "export", media / "speech.wav", postprocess=True, chunk_frames=chunk)
        assert result["mode"] == "consecutive windows of 6 frames"
        np.testing.assert_allclose(result["raw"], want, atol=1e-5, rtol=0)


def test_sliding_windows_as_evaluate_scores_them(tmp_path, media):
    # A run scored on each window's last frame (ae_lstm's data.target: last) is predicted with
    # --window train as emorec evaluate's sliding mode scores it, whatever the block size; a chain
    # tuned that way is applied to predictions made that way.
    from emorec.inference import RecordingPredictor

    run_dir, model = make_run(tmp_path, {"name": "e2e_audio", "lstm_units": 8, "lstm_layers": 1},
                              data={"window": 0.2, "target": "last"})
    PostprocessParams([DimensionParams("arousal", offset=0.5), DimensionParams("valence")],
                      inference={"eval_window": "train", "mode": "sliding", "frames": 5}).save(
        run_dir / "postprocess.json")
    ex.export_run(run_dir, tmp_path / "export", model=model)
    assert pr.read_export_info(tmp_path / "export")["training_inference"] == {"mode": "sliding", "frames": 5}
    audio = read_audio(media / "speech.wav", SAMPLE_RATE)[: 50 * FRAME_SAMPLES].reshape(50, FRAME_SAMPLES)
    want = RecordingPredictor(model, "sliding", window_frames=5)({"audio": audio})
    # Frame 3 sees frames 0-3, frame 20 frames 16-20: by hand from the model.
    np.testing.assert_allclose(want[3], model({"audio": audio[None, :4]})["emotion"].numpy()[0, -1], atol=1e-5)
    np.testing.assert_allclose(want[20], model({"audio": audio[None, 16:21]})["emotion"].numpy()[0, -1],
                               atol=1e-5)
    for chunk in (1, 3, 750):
        result = pr.predict_media(tmp_path / "export", media / "speech.wav", window="train", chunk_frames=chunk)
        assert result["mode"] == "sliding windows of 5 frames"
        np.testing.assert_allclose(result["raw"], want, atol=1e-5, rtol=0)
    post = pr.predict_media(tmp_path / "export", media / "speech.wav", postprocess=True)
    np.testing.assert_allclose(post["predictions"][:, 0], want[:, 0] + 0.5, atol=1e-5)
    with pytest.raises(ConfigError, match="tuned on sliding windows of 5 frames, not on whole recordings"):
        pr.predict_media(tmp_path / "export", media / "speech.wav", postprocess=True, window="whole")
    with pytest.raises(ConfigError, match="export.json: sliding windows of 5 frames each start from a zero"):
        pr.predict_media(tmp_path / "export", media / "speech.wav", window="train", stream=True)


def test_export_records_the_audio_normalisation_the_model_saw(tmp_path):
    # Normalised when read (data.audio_norm: recording) on a dataset stored raw: prediction must
    # normalise too.
    run_dir, model = make_run(tmp_path, {"name": "e2e_audio", "lstm_units": 8, "lstm_layers": 1},
                              data={"audio_norm": "recording"})
    info = ex.export_run(run_dir, tmp_path / "export", model=model)
    assert info["audio_norm"] == "recording"
    assert pr.read_export_info(tmp_path / "export")["training_inference"] == {"mode": "window", "frames": 6}


def test_frame_spans():
    start, end = pr.frame_spans(4)
    np.testing.assert_array_equal(start, [0.0, 0.04, 0.08, 0.12])
    np.testing.assert_array_equal(end, [0.04, 0.08, 0.12, 0.16])
    assert pr.frame_spans(0)[0].shape == (0,)


def test_choices_match_the_library():
    # The command modules spell their choices without importing the heavy modules.
    from emorec.commands import export as export_command
    from emorec.commands import predict as predict_command
    from emorec.export_formats import FORMATS
    from emorec.runtimes import RUNTIMES

    assert predict_command.RUNTIME_CHOICES == RUNTIMES
    assert predict_command.INDEX_CHOICES == pr.INDEX_CHOICES
    assert predict_command.WINDOW_CHOICES == pr.WINDOW_CHOICES
    assert export_command.FORMAT_CHOICES == FORMATS
