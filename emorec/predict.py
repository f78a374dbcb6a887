"""``emorec predict EXPORT_DIR MEDIA --out preds.csv``: arousal and valence every 40 ms of a new wav or mp4.

    emorec predict export/ talk.mp4 --out talk.csv --plot talk.png
    emorec predict export/ talk.wav --out talk.csv --stream --chunk-frames 25
    emorec predict export/ talk.mp4 --out talk.csv --postprocess

The media goes through the same frame pipeline as the dataset build
(:func:`emorec.recording.prepare_recording`: 16 kHz audio cut into 640-sample
frames with the training data's normalisation, MTCNN face track, crops of the
exported face size, JPEG round trip as in the TFRecords). Offline mode runs
the exported SavedModel's ``serving_default`` on the whole recording at once;
``--stream`` feeds ``--chunk-frames`` at a time through its ``step``
signature, carrying the recurrent state (same numbers). ``--postprocess``
applies the run's tuned chain (``EXPORT_DIR/postprocess.json``); a chain tuned
on windowed predictions (the default evaluation window) is applied to
predictions made the same way, so offline prediction then runs the training
window's windows from a zero state, and ``--stream`` is refused. The CSV holds ``time, arousal,
valence``, one row per 40 ms frame; ``time`` is the label time the frame's
prediction stands for (the frame's end for label alignment ``end``).
Unusable media (missing, no audio for an audio model, no video or no face for a
video model) prints ``error: ...`` naming the file and exits 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from emorec.errors import ConfigError, MediaError
from emorec.export import STATES
from emorec.rundir import ExportDir
from emorec.schema import DEFAULT_FACE_SIZE
from emorec.streaming import DEFAULT_CHUNK_FRAMES


def read_export_info(export_dir) -> dict:
    """``EXPORT_DIR/export.json``; ConfigError naming it if absent or unreadable."""
    path = ExportDir(export_dir).info
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; EXPORT_DIR must be written by `emorec export`") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it: {exc}") from None


def media_frames(media, info: dict, cache_dir=None, progress: bool = False) -> dict:
    """Per-frame model inputs of one media file: ``audio (N, 640)``, ``video (N, S, S, 3)`` in [0, 1], ``landmarks``."""
    import tensorflow as tf

    from emorec.media.video import probe_media
    from emorec.recording import BuildOptions, RecordingSource, prepare_recording

    media = Path(media)
    if not media.is_file():
        raise MediaError(f"{media}: no such file")
    needs = set(info["inputs"])
    if info.get("feature_sets"):
        raise ConfigError(
            f"{media}: model {info['model']} reads feature sets ({', '.join(info['feature_sets'])}), which "
            "emorec predict does not compute from media; build a dataset of the media with `emorec build ... "
            "--extract ...` and run `emorec evaluate` on it (docs/feature_lstm.md)")
    probe = probe_media(media)
    if "audio" in needs and not probe.has_audio:
        raise MediaError(f"{media}: has no audio stream, and model {info['model']} needs audio")
    if needs & {"video", "landmarks"} and not probe.has_video:
        raise MediaError(
            f"{media}: has no video stream, and model {info['model']} needs face crops from a video"
        )
    modalities = tuple(info["modalities"]) or (("video",) if "landmarks" in needs else ())
    source = RecordingSource(
        recording_id=media.stem, partition="test", subject_id=media.stem,
        audio=None if probe.has_video else media, video=media if probe.has_video else None,
    )
    options = BuildOptions(
        modalities=modalities, face_size=int(info.get("face_size") or DEFAULT_FACE_SIZE),
        audio_norm=info["audio_norm"], label_alignment=info["label_alignment"],
    )
    prepared = prepare_recording(source, options, cache_dir=cache_dir, progress=progress)
    arrays = {}
    if "audio" in needs:
        arrays["audio"] = np.asarray(prepared.audio, np.float32)
    if "video" in modalities:
        if not np.any(np.asarray(prepared.faces.found)):
            raise MediaError(f"{media}: no face detected in any frame; model {info['model']} needs a face")
        faces, landmarks = [], []
        for frame in prepared.frames(progress=progress):
            # Decoded by TensorFlow, as the training data's JPEGs were.
            faces.append(tf.io.decode_jpeg(frame.face, channels=3).numpy())
            landmarks.append(frame.landmarks)
        if "video" in needs:
            arrays["video"] = np.stack(faces).astype(np.float32) / 255.0
        if "landmarks" in needs:
            arrays["landmarks"] = np.stack(landmarks).astype(np.float32)
    return arrays


def _load(export_dir):
    import tensorflow as tf

    path = ExportDir(export_dir).saved_model
    if not path.is_dir():
        raise ConfigError(f"{path}: no SavedModel in this export directory")
    return tf.saved_model.load(str(path))


def _stack(out) -> np.ndarray:
    return np.stack([out["arousal"].numpy(), out["valence"].numpy()], axis=-1)


def run_offline(export_dir, inputs: dict, window_frames: int | None = None) -> np.ndarray:
    """The ``serving_default`` signature on ``{name: (B, T, ...)}``; returns ``(B, T, 2)``.

    ``window_frames`` cuts the sequences into consecutive windows of that many
    frames, each from a zero state (the way the default evaluation and the
    post-processing tuned on it see a recording); None runs them whole.
    """
    import tensorflow as tf

    serve = _load(export_dir).signatures["serving_default"]
    first = next(iter(inputs.values()))
    batch, total = first.shape[0], first.shape[1]
    if window_frames is None:
        return _stack(serve(**{k: tf.constant(v, tf.float32) for k, v in inputs.items()}))
    count = -(-total // window_frames)
    windows = {}
    for k, v in inputs.items():
        # Zero padding after the end cannot change earlier outputs: every part is causal per frame.
        padded = np.zeros((batch, count * window_frames, *v.shape[2:]), np.float32)
        padded[:, :total] = v
        windows[k] = tf.constant(padded.reshape(batch * count, window_frames, *v.shape[2:]))
    out = _stack(serve(**windows))
    return out.reshape(batch, count * window_frames, -1)[:, :total]


def run_streaming(export_dir, inputs: dict, chunk_frames: int = DEFAULT_CHUNK_FRAMES, states=None):
    """The ``step`` signature chunk by chunk with the state carried; returns ``((B, T, 2), final states)``."""
    import tensorflow as tf

    if chunk_frames < 1:
        raise ConfigError(f"--chunk-frames must be a positive integer, got {chunk_frames}")
    loaded = _load(export_dir)
    if "step" not in loaded.signatures:
        raise ConfigError(f"{ExportDir(export_dir).saved_model}: no streaming signature in this export "
                          "(exported with --no-streaming, or the model has no recurrent state)")
    step = loaded.signatures["step"]
    first = next(iter(inputs.values()))
    batch, total = first.shape[0], first.shape[1]
    if states is None:
        states = loaded.signatures["initial_state"](batch_size=tf.constant(batch, tf.int32))[STATES]
    parts = []
    for start in range(0, total, chunk_frames):
        chunk = {k: tf.constant(v[:, start:start + chunk_frames], tf.float32) for k, v in inputs.items()}
        out = step(**chunk, states=states)
        states = out[STATES]
        parts.append(_stack(out))
    return np.concatenate(parts, axis=1), states.numpy()


def predict_media(
    export_dir,
    media,
    *,
    stream: bool = False,
    chunk_frames: int | None = None,
    postprocess: bool = False,
    cache_dir=None,
    progress: bool = False,
) -> dict:
    """Predict a wav/mp4.

    Args:
        export_dir: a directory written by ``emorec export``.
        media: the wav or video file.
        stream: run chunk by chunk through the ``step`` signature.
        chunk_frames: frames per chunk with ``stream`` (default 750).
        postprocess: apply the export's tuned chain, predicting the way it was tuned.
        cache_dir: the face-track cache.
        progress: show progress bars.

    Returns:
        ``{"times" (N,), "predictions" (N, 2), "raw" (N, 2), "info", "mode"}``; ``predictions`` are
        post-processed when ``postprocess`` (``raw`` never is); ``mode`` says how it was predicted.

    Raises:
        MediaError: unusable media; ConfigError: an unusable export or a post-processing chain tuned
            on windowed predictions with ``stream``.
    """
    from emorec.evaluate import frame_times

    chunk_frames = DEFAULT_CHUNK_FRAMES if chunk_frames is None else int(chunk_frames)
    if chunk_frames < 1:
        raise ConfigError(f"--chunk-frames must be a positive integer, got {chunk_frames}")
    export = ExportDir(export_dir)
    info = read_export_info(export.path)
    params, window = None, None
    if postprocess:
        from emorec.postprocess import PostprocessParams

        if not export.postprocess.is_file():
            raise ConfigError(f"{export.postprocess}: this export has no tuned post-processing (run emorec "
                              "evaluate --postprocess tune on dev before exporting)")
        params = PostprocessParams.load(export.postprocess)
        window = (params.inference or {}).get("frames")
        if window is not None and stream:
            raise ConfigError(
                f"{export.postprocess}: the post-processing was tuned on predictions of {window}-frame "
                "windows from a zero state, which streaming cannot reproduce; predict without --stream, "
                "or re-tune on whole recordings (emorec evaluate RUN --partition dev --postprocess tune "
                "--eval-window whole) and export again"
            )
    arrays = media_frames(media, info, cache_dir=cache_dir, progress=progress)
    inputs = {k: v[None] for k, v in arrays.items()}
    if stream:
        raw = run_streaming(export.path, inputs, chunk_frames)[0][0]
        mode = "streaming"
    else:
        raw = run_offline(export.path, inputs, window)[0]
        mode = "whole" if window is None else f"windows of {window} frames"
    preds = raw
    if params is not None:
        from emorec.postprocess import apply_postprocessing

        preds = apply_postprocessing(params, {"media": raw})["media"]
    return {"times": frame_times(len(raw), info["label_alignment"]), "predictions": preds,
            "raw": raw, "info": info, "mode": mode}


if __name__ == "__main__":
    from emorec.cli import module_main

    module_main("predict", "python -m emorec.predict")
