"""``emorec predict EXPORT_DIR MEDIA --out preds.csv``: arousal and valence every 40 ms of a new wav or mp4.

    emorec predict export/ talk.mp4 --out talk.csv --plot talk.png
    emorec predict export/ talk.wav --out talk.csv --stream --chunk-frames 25
    emorec predict export/ talk.mp4 --out talk.csv --postprocess
    emorec predict export/ talk.wav --out talk.csv --runtime onnx --index file-start-end

The media goes through the same frame pipeline as the dataset build
(:func:`emorec.recording.prepare_recording`: 16 kHz audio cut into 640-sample
frames with the training data's normalisation, MTCNN face track, crops of the
exported face size, JPEG round trip as in the TFRecords), decoded a block of
frames at a time, and each block is predicted as soon as it is decoded, so
memory does not grow with the recording's length (only the face track, 57
bytes a frame, and the predictions and their table, tens of bytes a frame, do).

``--runtime`` picks the format that runs (:mod:`emorec.runtimes`):
``savedmodel`` (TensorFlow; the default when the export holds it), ``onnx``
(ONNX Runtime) or ``litert`` (the LiteRT interpreter); all give the same
numbers to float rounding.

Offline mode predicts the whole recording as one sequence from a zero state.
It runs ``--chunk-frames`` frames at a time (default 750 = 30 s) through the
streaming graph, carrying the recurrent state from chunk to chunk, which is
the offline model on the whole recording (the per-frame CNNs see one frame at
a time and the LSTMs are causal) without holding every frame's activations;
an export without a streaming form (``--no-streaming``) runs its offline
graph on the whole recording at once instead, in memory that grows with the
length. ``--stream`` is the same computation, named for clients that want the
streaming graph explicitly. ``--window train`` predicts the way ``emorec evaluate``'s default
evaluation window scores a run: in the training window from a zero state,
consecutive windows (``data.target: all``, the e2e models) or, for a run
scored on each window's last frame (``data.target: last``, ``ae_lstm``), the
window ending at every frame (shorter at the start), kept on its last frame.
``--postprocess`` applies the run's tuned chain
(``EXPORT_DIR/postprocess.json``) to predictions made the way it was tuned
(the inference recorded in it), so with a chain tuned on windows prediction
runs those windows, a block at a time; ``--stream`` is then refused, as
streaming carries the state across windows.

Output: ``--index time`` (default) writes ``time, arousal, valence``, one row
per 40 ms frame, ``time`` being the label time the frame's prediction stands
for (the frame's end for label alignment ``end``). ``--index file-start-end``
writes ``file, start, end, arousal, valence`` in the segmented-index
convention of audEERING's audinterface / audformat tables: ``file`` is the
media path as given, ``start``/``end`` the frame's span ``[0.04 i, 0.04 (i +
1))`` in seconds (``pd.to_timedelta(df.start, unit="s")`` gives audformat's
index). Unusable media (missing, no audio for an audio model, no video or no
face for a video model), an unusable export or an unwritable ``--out`` prints
``error: ...`` naming the file and exits 2, before any output is written.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from emorec.errors import ConfigError, ExportError, MediaError
from emorec.rundir import ExportDir
from emorec.schema import DEFAULT_FACE_SIZE, FRAME_PERIOD
from emorec.streaming import DEFAULT_CHUNK_FRAMES

logger = logging.getLogger(__name__)

INDEX_CHOICES = ("time", "file-start-end")


def read_export_info(export_dir) -> dict:
    """``EXPORT_DIR/export.json``; ExportError naming it if absent or unreadable.

    Args:
        export_dir: a directory written by ``emorec export``.

    Returns:
        The export description (at least ``inputs``, ``modalities``, ``audio_norm`` and
        ``label_alignment``; a clip classification export, ``task: clip_classification``,
        at least ``inputs``).

    Raises:
        ExportError: the file is missing, unreadable, not JSON, or lacks those keys.
    """
    path = ExportDir(export_dir).info
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise ExportError(f"{path}: not found; EXPORT_DIR must be written by `emorec export`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"{path}: cannot read it: {exc}") from None
    if not isinstance(info, dict):
        raise ExportError(f"{path}: not an emorec export description (not a JSON object)")
    # A clip classification export (emorec.clip_export) describes other inputs; its predictor checks them.
    needed = ("inputs",) if info.get("task") == "clip_classification" else (
        "inputs", "modalities", "audio_norm", "label_alignment")
    missing = [k for k in needed if k not in info]
    if missing:
        raise ExportError(f"{path}: not an emorec export description (missing {missing or 'everything'})")
    return info


def open_media(media, info: dict, cache_dir=None, progress: bool = False):
    """Check a media file against the export and prepare its frames (the face track is made here).

    Args:
        media: the wav or video file.
        info: the export's ``export.json``.
        cache_dir: the face-track cache.
        progress: show progress bars.

    Returns:
        The :class:`~emorec.recording.PreparedRecording`, ready to stream its frames.

    Raises:
        MediaError: a missing file, a missing stream the model needs, no face at all for a video model.
    """
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
    if prepared.faces is not None and not np.any(np.asarray(prepared.faces.found)):
        raise MediaError(f"{media}: no face detected in any frame; model {info['model']} needs a face")
    return prepared


def frame_blocks(prepared, inputs, block_frames: int, progress: bool = False) -> Iterator[dict]:
    """The recording's model inputs, ``block_frames`` frames at a time (the last block may be shorter).

    Args:
        prepared: from :func:`open_media`.
        inputs: the model's input names (``audio``, ``video``, ``landmarks``).
        block_frames: frames per block.
        progress: show a progress bar over the frames.

    Yields:
        ``{"audio": (n, 640), "video": (n, S, S, 3) float32 in [0, 1], "landmarks": (n, 5, 2)}``
        (the names in ``inputs``).
    """
    import tensorflow as tf

    inputs = set(inputs)
    block: dict[str, list] = {name: [] for name in inputs}
    count = 0

    def flush():
        out = {name: np.stack(values).astype(np.float32) for name, values in block.items()}
        if "video" in out:
            out["video"] /= 255.0
        for values in block.values():
            values.clear()
        return out

    for frame in prepared.frames(progress=progress):
        if "audio" in inputs:
            block["audio"].append(frame.audio)
        if "video" in inputs:
            # Decoded by TensorFlow, as the training data's JPEGs were.
            block["video"].append(tf.io.decode_jpeg(frame.face, channels=3).numpy())
        if "landmarks" in inputs:
            block["landmarks"].append(frame.landmarks)
        count += 1
        if count == block_frames:
            yield flush()
            count = 0
    if count:
        yield flush()


def media_frames(media, info: dict, cache_dir=None, progress: bool = False) -> dict:
    """Every frame's model inputs of one media file at once.

    It holds the whole recording in memory: for short clips.

    Args:
        media: the wav or video file.
        info: the export's ``export.json`` (see :func:`read_export_info`).
        cache_dir: the face-track cache folder; None for the default.
        progress: show progress bars.

    Returns:
        ``{"audio": (N, 640), "video": (N, S, S, 3) in [0, 1], "landmarks": (N, 5, 2)}`` (the
        export's inputs), float32.

    Raises:
        MediaError: see :func:`open_media`.
    """
    prepared = open_media(media, info, cache_dir=cache_dir, progress=progress)
    blocks = list(frame_blocks(prepared, info["inputs"], max(prepared.num_frames, 1), progress=progress))
    return blocks[0]


def predict_chunked(runtime, blocks) -> np.ndarray:
    """One sequence from a zero state, a block at a time through ``runtime.step``.

    Equal to ``runtime.offline`` on the whole sequence: the state carried from
    block to block is the state the whole-sequence run reaches there.

    Args:
        runtime: an opened :class:`~emorec.runtimes.Runtime` (any format).
        blocks: per-block input dicts ``{name: (n, ...) float32}`` from :func:`frame_blocks`,
            in order.

    Returns:
        ``(N, 2)`` float32 predictions, one per frame (``(0, 2)`` for no blocks).
    """
    states = runtime.initial_state(1)
    parts = []
    for block in blocks:
        out, states = runtime.step({k: v[None] for k, v in block.items()}, states)
        parts.append(out[0])
    return np.concatenate(parts) if parts else np.zeros((0, 2), np.float32)


def predict_windows(runtime, blocks, window_frames: int) -> np.ndarray:
    """Consecutive windows of ``window_frames`` frames, each from a zero state; returns ``(N, 2)``.

    Every block but the last must hold whole windows; the last window is
    zero-padded after the recording's end, which cannot change the frames
    before (every part of the model is causal per frame), and the padding's
    predictions are dropped.

    Args:
        runtime: an opened :class:`~emorec.runtimes.Runtime` (any format).
        blocks: per-block input dicts ``{name: (n, ...) float32}`` from :func:`frame_blocks`,
            in order.
        window_frames: the training window in frames.

    Returns:
        ``(N, 2)`` float32 predictions, one per frame (``(0, 2)`` for no blocks).
    """
    parts = []
    for block in blocks:
        total = len(next(iter(block.values())))
        count = -(-total // window_frames)
        windows = {}
        for k, v in block.items():
            padded = np.zeros((count * window_frames, *v.shape[1:]), np.float32)
            padded[:total] = v
            windows[k] = padded.reshape(count, window_frames, *v.shape[1:])
        parts.append(runtime.offline(windows).reshape(count * window_frames, -1)[:total])
    return np.concatenate(parts) if parts else np.zeros((0, 2), np.float32)


def predict_sliding(runtime, blocks, window_frames: int, batch_rows: int = 64) -> np.ndarray:
    """For every frame, the window of ``window_frames`` frames ending at it, from a zero state,
    kept on its last frame; returns ``(N, 2)``.

    The first ``window_frames - 1`` frames have fewer predecessors: they are
    one shorter sequence from the recording's start, whose output at frame t
    is the window ``[0, t]``'s last (every part of the model is causal per
    frame). The last ``window_frames - 1`` frames of each block are carried
    into the next, so the windows do not depend on the block size. This is
    :class:`emorec.inference.RecordingPredictor`'s ``sliding`` mode, a block at
    a time.

    Args:
        runtime: an opened :class:`~emorec.runtimes.Runtime`.
        blocks: per-block input dicts from :func:`frame_blocks`.
        window_frames: the window (frames).
        batch_rows: windows per runtime call.

    Returns:
        ``(N, 2)`` float32 predictions, one per frame.
    """
    w = int(window_frames)
    parts, context, seen = [], None, 0
    for block in blocks:
        n = len(next(iter(block.values())))
        joined = block if context is None else {k: np.concatenate([context[k], v]) for k, v in block.items()}
        lead = len(joined[next(iter(joined))]) - n  # carried frames before this block's first
        out = np.zeros((n, 2), np.float32)
        head = max(0, min(w - 1 - seen, n))  # this block's frames that lack a full window
        if head:
            # lead < w - 1 here, so ``joined`` still starts at the recording's first frame.
            short = {k: v[:lead + head][None] for k, v in joined.items()}
            out[:head] = runtime.offline(short)[0, lead:]
        ends = np.arange(lead + head, lead + n)
        for i in range(0, len(ends), batch_rows):
            chosen = ends[i:i + batch_rows]
            index = chosen[:, None] - w + 1 + np.arange(w)[None, :]
            rows = {k: v[index] for k, v in joined.items()}
            out[chosen - lead] = runtime.offline(rows)[:, -1]
        parts.append(out)
        seen += n
        context = {k: v[-(w - 1):] for k, v in joined.items()} if w > 1 else None
    return np.concatenate(parts) if parts else np.zeros((0, 2), np.float32)


def predict_whole(runtime, blocks) -> np.ndarray:
    """All blocks joined into one sequence through ``runtime.offline``.

    Memory grows with the recording's length.

    Args:
        runtime: an opened :class:`~emorec.runtimes.Runtime` (any format).
        blocks: per-block input dicts ``{name: (n, ...) float32}`` from :func:`frame_blocks`,
            in order.

    Returns:
        ``(N, 2)`` predictions, one per frame (``(0, 2)`` for no blocks).
    """
    blocks = list(blocks)
    if not blocks:
        return np.zeros((0, 2), np.float32)
    whole = {k: np.concatenate([b[k] for b in blocks])[None] for k in blocks[0]}
    return runtime.offline(whole)[0]


WINDOW_CHOICES = ("whole", "train")


def _postprocess_params(export: ExportDir):
    """The export's tuned chain and the inference its dev predictions were made with (or None)."""
    from emorec.postprocess import PostprocessParams

    if not export.postprocess.is_file():
        raise ConfigError(f"{export.postprocess}: this export has no tuned post-processing (run emorec "
                          "evaluate --postprocess tune on dev before exporting)")
    params = PostprocessParams.load(export.postprocess)
    inference = params.inference or {}
    if inference.get("frames") is None:
        return params, None
    return params, {"mode": inference.get("mode", "window"), "frames": int(inference["frames"])}


def _training_inference(info: dict, path) -> dict:
    """``export.json``'s training inference: the run's window and whether it slides."""
    inference = info.get("training_inference")
    if inference is None:
        window = info.get("training_window_frames")
        if not window:
            raise ExportError(f"{path}: the export does not say its training window; export it again")
        # Exports written before training_inference was recorded: consecutive windows.
        inference = {"mode": "window", "frames": int(window)}
    return {"mode": inference["mode"], "frames": int(inference["frames"])}


def _choose_inference(export: ExportDir, info: dict, window: str | None, stream: bool, postprocess: bool):
    """The windowed inference to run (``{"mode", "frames"}``) or None for whole-recording runs."""
    if window not in (None, *WINDOW_CHOICES):
        raise ConfigError(f"--window must be one of {', '.join(WINDOW_CHOICES)}, got {window!r}")
    params, tuned = _postprocess_params(export) if postprocess else (None, None)
    wanted = _training_inference(info, export.info) if window == "train" else None
    if postprocess and window is not None and (wanted or None) != (tuned or None):
        raise ConfigError(
            f"{export.postprocess}: the post-processing was tuned on "
            f"{_describe(tuned)}, not on {_describe(wanted)}; leave out --window (predict the way it was tuned) "
            "or re-tune with the matching emorec evaluate --eval-window and export again")
    chosen = tuned if postprocess else wanted
    if chosen is not None and stream:
        where = export.postprocess if postprocess else export.info
        raise ConfigError(
            f"{where}: {_describe(chosen)} each start from a zero state, which streaming (the state "
            "carried across the recording) cannot reproduce; predict without --stream"
            + (", or re-tune on whole recordings (emorec evaluate RUN --partition dev --postprocess tune "
               "--eval-window whole) and export again" if postprocess else ""))
    return params, chosen


def _describe(inference: dict | None) -> str:
    if inference is None:
        return "whole recordings"
    kind = "sliding windows" if inference["mode"] == "sliding" else "consecutive windows"
    return f"{kind} of {inference['frames']} frames"


def predict_media(
    export_dir,
    media,
    *,
    stream: bool = False,
    chunk_frames: int | None = None,
    window: str | None = None,
    postprocess: bool = False,
    runtime: str | None = None,
    cache_dir=None,
    progress: bool = False,
) -> dict:
    """Predict a wav/mp4, a block of frames at a time.

    Args:
        export_dir: a directory written by ``emorec export``.
        media: the wav or video file.
        stream: say that the streaming graph must be used (refuses a chain tuned on windows).
        chunk_frames: frames per call of the model (default 750); the predictions do not depend on it.
        window: ``whole`` (default) or ``train`` (the training window, as ``emorec evaluate`` scores).
        postprocess: apply the export's tuned chain, predicting the way it was tuned.
        runtime: ``savedmodel``, ``onnx`` or ``litert`` (default: savedmodel when exported).
        cache_dir: the face-track cache.
        progress: show progress bars.

    Returns:
        ``{"times" (N,), "predictions" (N, 2), "raw" (N, 2), "info", "mode", "runtime"}``;
        ``predictions`` are post-processed when ``postprocess`` (``raw`` never is); ``mode`` says how
        it was predicted.

    Raises:
        MediaError: unusable media; ExportError: an unusable export or runtime; ConfigError:
            windowed prediction with ``stream``, or a ``window`` other than the chain was tuned on.
    """
    from emorec.evaluate import frame_times
    from emorec.runtimes import open_runtime

    chunk_frames = DEFAULT_CHUNK_FRAMES if chunk_frames is None else int(chunk_frames)
    if chunk_frames < 1:
        raise ConfigError(f"--chunk-frames must be a positive integer, got {chunk_frames}")
    export = ExportDir(export_dir)
    info = read_export_info(export.path)
    params, inference = _choose_inference(export, info, window, stream, postprocess)
    model = open_runtime(export.path, info, runtime)
    if stream and not model.streaming:
        raise ExportError(f"{export.info}: this export has no streaming form (exported with --no-streaming, "
                          "or the model has no recurrent state); predict without --stream")
    prepared = open_media(media, info, cache_dir=cache_dir, progress=progress)
    if inference is not None:
        frames = inference["frames"]
        blocks = frame_blocks(prepared, info["inputs"], frames * max(1, chunk_frames // frames), progress)
        if inference["mode"] == "sliding":
            raw = predict_sliding(model, blocks, frames)
        else:
            raw = predict_windows(model, blocks, frames)
        mode = _describe(inference)
    elif model.streaming:
        raw = predict_chunked(model, frame_blocks(prepared, info["inputs"], chunk_frames, progress))
        mode = "streaming" if stream else "whole"
    else:
        logger.warning("%s: no streaming form in this export, so the whole recording goes through the "
                       "model at once (memory grows with its length)", export.path)
        raw = predict_whole(model, frame_blocks(prepared, info["inputs"], chunk_frames, progress))
        mode = "whole"
    preds = raw
    if params is not None:
        from emorec.postprocess import apply_postprocessing

        preds = apply_postprocessing(params, {"media": raw})["media"]
    return {"times": frame_times(len(raw), info["label_alignment"]), "predictions": preds,
            "raw": raw, "info": info, "mode": mode, "runtime": model.name}


def frame_spans(num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (seconds) of each 40 ms frame: ``[0.04 i, 0.04 (i + 1))``, rounded to the µs.

    Args:
        num_frames: number of frames ``N``.

    Returns:
        ``(starts, ends)``, each a ``(N,)`` float64 array.

    >>> [s.tolist() for s in frame_spans(3)]
    [[0.0, 0.04, 0.08], [0.04, 0.08, 0.12]]
    """
    edges = np.round(np.arange(num_frames + 1) * FRAME_PERIOD, 6)
    return edges[:-1], edges[1:]


def prediction_table(result: dict, media, index: str = "time"):
    """The predictions as a DataFrame, indexed by time or by file, start and end.

    Args:
        result: from :func:`predict_media`.
        media: the media path as the user gave it (the ``file`` column).
        index: ``time`` or ``file-start-end``.

    Returns:
        A ``pandas.DataFrame``, one row per frame, columns ``time, arousal, valence`` or
        ``file, start, end, arousal, valence``.

    Raises:
        ConfigError: an unknown ``index``.
    """
    import pandas as pd

    preds = np.asarray(result["predictions"])
    if index == "time":
        columns = {"time": np.round(np.asarray(result["times"], np.float64), 6)}
    elif index == "file-start-end":
        start, end = frame_spans(len(preds))
        columns = {"file": [str(media)] * len(preds), "start": start, "end": end}
    else:
        raise ConfigError(f"--index must be one of {', '.join(INDEX_CHOICES)}, got {index!r}")
    return pd.DataFrame({**columns, "arousal": preds[:, 0], "valence": preds[:, 1]})


def table_csv_bytes(table) -> bytes:
    r"""A prediction table as CSV bytes (floats to 8 significant digits).

    Args:
        table: a ``pandas.DataFrame`` such as :func:`prediction_table` makes.

    Returns:
        The UTF-8 CSV with a header row, no index column, ``\n`` line ends.

    >>> import pandas as pd
    >>> table_csv_bytes(pd.DataFrame({"time": [0.04], "arousal": [0.1], "valence": [1 / 3]}))
    b'time,arousal,valence\n0.04,0.1,0.33333333\n'
    """
    buffer = io.StringIO()
    table.to_csv(buffer, index=False, float_format="%.8g")
    return buffer.getvalue().encode()


if __name__ == "__main__":
    from emorec.cli import module_main

    module_main("predict", "python -m emorec.predict")
