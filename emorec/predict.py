"""``python -m emorec.predict EXPORT_DIR MEDIA --out preds.csv``: arousal and valence every 40 ms of a new wav or mp4.

    python -m emorec.predict export/ talk.mp4 --out talk.csv --plot talk.png
    python -m emorec.predict export/ talk.wav --out talk.csv --stream --chunk-frames 25
    python -m emorec.predict export/ talk.mp4 --out talk.csv --postprocess

The media goes through the same frame pipeline as the dataset build
(:func:`emorec.recording.prepare_recording`: 16 kHz audio cut into 640-sample
frames with the training data's normalisation, MTCNN face track, crops of the
exported face size, JPEG round trip as in the TFRecords). Offline mode runs
the exported SavedModel on the whole recording at once; ``--stream`` feeds it
``--chunk-frames`` at a time through the streaming SavedModel, carrying the
recurrent state (same numbers). ``--postprocess`` applies the run's tuned AVEC
chain (``EXPORT_DIR/postprocess.json``). The CSV holds ``time, arousal,
valence``, one row per 40 ms frame; ``time`` is the label time the frame's
prediction stands for (the frame's end for label alignment ``end``).
Unusable media (missing, no audio for an audio model, no video or no face for a
video model) prints ``error: ...`` naming the file and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from emorec.errors import ConfigError, EmorecError, MediaError
from emorec.export import EXPORT_JSON, OFFLINE_DIR, POSTPROCESS_FILE, STATES, STREAMING_DIR
from emorec.schema import DEFAULT_FACE_SIZE
from emorec.streaming import DEFAULT_CHUNK_FRAMES


def read_export_info(export_dir) -> dict:
    """``EXPORT_DIR/export.json``; ConfigError naming it if absent or unreadable."""
    path = Path(export_dir) / EXPORT_JSON
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; EXPORT_DIR must be written by `python -m emorec.export`") from None
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
    probe = probe_media(media)
    needs = set(info["inputs"])
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


def run_offline(export_dir, inputs: dict) -> np.ndarray:
    """The offline SavedModel on ``{name: (B, T, ...)}``; returns ``(B, T, 2)``."""
    import tensorflow as tf

    serve = tf.saved_model.load(str(Path(export_dir) / OFFLINE_DIR)).signatures["serving_default"]
    out = serve(**{k: tf.constant(v, tf.float32) for k, v in inputs.items()})
    return np.stack([out["arousal"].numpy(), out["valence"].numpy()], axis=-1)


def run_streaming(export_dir, inputs: dict, chunk_frames: int = DEFAULT_CHUNK_FRAMES, states=None):
    """The streaming SavedModel chunk by chunk with the state carried; returns ``((B, T, 2), final states)``."""
    import tensorflow as tf

    if chunk_frames < 1:
        raise ConfigError(f"--chunk-frames must be a positive integer, got {chunk_frames}")
    path = Path(export_dir) / STREAMING_DIR
    if not path.is_dir():
        raise ConfigError(f"{path}: no streaming SavedModel in this export (exported with --no-streaming?)")
    loaded = tf.saved_model.load(str(path))
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
        parts.append(np.stack([out["arousal"].numpy(), out["valence"].numpy()], axis=-1))
    return np.concatenate(parts, axis=1), states.numpy()


def predict_media(
    export_dir,
    media,
    *,
    stream: bool = False,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    postprocess: bool = False,
    cache_dir=None,
    progress: bool = False,
) -> dict:
    """Predict a wav/mp4; returns ``{"times" (N,), "predictions" (N, 2), "raw" (N, 2), "info"}``.

    ``predictions`` are post-processed when ``postprocess`` (``raw`` never is).
    """
    from emorec.evaluate import frame_times

    export_dir = Path(export_dir)
    info = read_export_info(export_dir)
    params = None
    if postprocess:
        from emorec.postprocess import PostprocessParams

        path = export_dir / POSTPROCESS_FILE
        if not path.is_file():
            raise ConfigError(f"{path}: this export has no tuned post-processing (run emorec.evaluate "
                              "--postprocess tune on dev before exporting)")
        params = PostprocessParams.load(path)
    arrays = media_frames(media, info, cache_dir=cache_dir, progress=progress)
    inputs = {k: v[None] for k, v in arrays.items()}
    if stream:
        raw = run_streaming(export_dir, inputs, chunk_frames)[0][0]
    else:
        raw = run_offline(export_dir, inputs)[0]
    preds = raw
    if params is not None:
        from emorec.postprocess import apply_postprocessing

        preds = apply_postprocessing(params, {"media": raw})["media"]
    return {"times": frame_times(len(raw), info["label_alignment"]), "predictions": preds,
            "raw": raw, "info": info}


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(prog="python -m emorec.predict", description=__doc__.split("\n")[0])
    parser.add_argument("export_dir", type=Path, help="directory written by python -m emorec.export")
    parser.add_argument("media", type=Path, help="a wav (audio models) or mp4 file")
    parser.add_argument("--out", type=Path, required=True, help="CSV to write (time, arousal, valence)")
    parser.add_argument("--plot", type=Path, default=None, help="also write a PNG of the predictions")
    parser.add_argument("--stream", action="store_true", help="run chunk by chunk through the streaming model")
    parser.add_argument("--chunk-frames", type=int, default=DEFAULT_CHUNK_FRAMES,
                        help=f"frames per chunk with --stream (default {DEFAULT_CHUNK_FRAMES})")
    parser.add_argument("--postprocess", action="store_true", help="apply the export's tuned AVEC chain")
    parser.add_argument("--cache-dir", type=Path, default=None, help="face-track cache directory")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: exit 0 on success, 2 on unusable media or settings."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        result = predict_media(
            args.export_dir, args.media, stream=args.stream, chunk_frames=args.chunk_frames,
            postprocess=args.postprocess, cache_dir=args.cache_dir, progress=not args.no_progress,
        )
    except (EmorecError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from emorec.evaluate import write_predictions_csv

    write_predictions_csv(args.out, result["times"], result["predictions"], with_gold=False)
    if args.plot is not None:
        from emorec.plots import plot_recording

        plot_recording(args.plot, result["times"], result["predictions"],
                       title=f"{args.media.name} ({result['info']['model']})")
    print(f"{len(result['times'])} frames of {args.media} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
