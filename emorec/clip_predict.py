"""``emorec predict EXPORT clip.avi``: the class of a new video clip with an exported clip classification model.

The video (avi, mp4 or anything the build reads) goes through the clip build's
own preparation (:func:`emorec.clips.build.prepare_clip`): every frame at the
clip's rate, the MTCNN tracker's largest face cropped with the build's margin
and face size, JPEG round trip at the build's quality (decoded by TensorFlow,
as the training records were), the sound track averaged to mono at the
export's sample rate. The exported ``serving_default`` then gives the class
probabilities (see :mod:`emorec.clip_export`).

Output: the class printed; ``--out FILE.csv`` (default ``<clip>_emotion.csv``
in the current directory) holds ``class, probability`` rows, and the JSON
beside it (same name, ``.json``) the class, the probabilities, the frames, the
frames with a face and whether the clip has sound. A clip without a face is
predicted (from centred crops for the visual branches; the fusion then uses
its sound) and reported; a clip without sound has zero audio.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from emorec.errors import ConfigError, MediaError
from emorec.manifest import atomic_write_bytes
from emorec.rundir import ExportDir


def read_clip_export(export_dir) -> dict:
    """``EXPORT_DIR/export.json`` of a clip export.

    Args:
        export_dir: the export directory.

    Returns:
        The parsed ``export.json``.

    Raises:
        ConfigError: missing, unreadable, or the export of another task.
    """
    from emorec.predict import read_export_info

    info = read_export_info(export_dir)
    if info.get("task") != "clip_classification":
        raise ConfigError(f"{ExportDir(export_dir).info}: not a clip classification export")
    return info


def clip_inputs(video, info: dict, cache_dir=None, progress: bool = False) -> dict:
    """The signature's inputs for one video: ``faces``, ``face_found``, ``audio``, ``has_audio`` (NumPy).

    Args:
        video: the video file.
        info: the export's ``export.json`` (face size, sample rate, JPEG quality, face detection
            settings, classes).
        cache_dir: cache for the clip's prepared frames and audio (None: no cache).
        progress: show progress while preparing the clip.

    Returns:
        ``faces`` float32 ``(N, S, S, 3)`` in ``[0, 1]``, ``face_found`` float32 ``(N,)``,
        ``audio`` float32 ``(samples,)`` (empty without sound) and ``has_audio`` float32 scalar.

    Raises:
        MediaError: a missing, corrupt or truncated video, or one without a video stream.
    """
    import tensorflow as tf

    from emorec.clips.build import ClipBuildOptions, prepare_clip
    from emorec.clips.source import ClipSource
    from emorec.media.faces import FaceConfig

    video = Path(video)
    if not video.is_file():
        raise MediaError(f"{video}: no such file")
    face = FaceConfig(**info["face_detection"]) if info.get("face_detection") else None
    options = ClipBuildOptions(face_size=int(info["face_size"]), sample_rate=int(info["sample_rate"]),
                               jpeg_quality=int(info.get("jpeg_quality") or 95),
                               **({"face": face} if face is not None else {}))
    source = ClipSource(clip_id="clip", partition="test", video=video, classes=tuple(info["classes"]))
    prepared = prepare_clip(source, options, cache_dir=cache_dir, progress=progress)
    record = prepared.record
    faces = np.stack([tf.io.decode_jpeg(j, channels=3).numpy() for j in record.faces]).astype(np.float32) / 255.0
    audio = np.zeros(0, np.float32) if record.audio is None else np.asarray(record.audio, np.float32)
    return {"faces": faces, "face_found": np.asarray(record.face_found, np.float32), "audio": audio,
            "has_audio": np.float32(record.audio is not None)}


def run_clip_export(export_dir, inputs: dict) -> np.ndarray:
    """The export's ``serving_default`` on one clip's inputs; returns the probabilities ``(K,)``.

    Args:
        export_dir: the export directory.
        inputs: the signature's inputs (:func:`clip_inputs`).

    Returns:
        float64 class probabilities ``(K,)``.

    Raises:
        ConfigError: the export directory has no SavedModel.
    """
    import tensorflow as tf

    path = ExportDir(export_dir).saved_model
    if not path.is_dir():
        raise ConfigError(f"{path}: no SavedModel in this export directory")
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    out = serve(**{k: tf.constant(v, tf.float32) for k, v in inputs.items()})
    return out["probabilities"].numpy().astype(np.float64)


def predict_clip(export_dir, video, cache_dir=None, progress: bool = False) -> dict:
    """Classify one video clip with a clip export.

    Args:
        export_dir: written by ``emorec export`` from a clip run.
        video: the clip.
        cache_dir: face-detection cache folder (None: no cache).
        progress: progress bar while detecting faces.

    Returns:
        ``{"class", "class_index", "probabilities": {class: p}, "frames", "faces_found", "has_audio",
        "model", "video"}``.

    Raises:
        ConfigError: not a clip export; MediaError: an unusable video.
    """
    info = read_clip_export(export_dir)
    inputs = clip_inputs(video, info, cache_dir, progress)
    probs = run_clip_export(export_dir, inputs)
    classes = info["classes"]
    index = int(np.argmax(probs))
    return {
        "video": str(video), "model": info["model"], "class": classes[index], "class_index": index,
        "probabilities": {name: float(p) for name, p in zip(classes, probs)},
        "frames": int(len(inputs["faces"])), "faces_found": int(np.sum(inputs["face_found"] > 0)),
        "has_audio": bool(inputs["has_audio"]),
    }


def write_clip_prediction(result: dict, csv_path) -> tuple[Path, Path]:
    """Write ``class, probability`` rows to ``csv_path`` and the whole result to the ``.json`` beside it.

    Args:
        result: the prediction, with ``probabilities`` ``{class: probability}``; the JSON holds all
            of it.
        csv_path: the CSV to write (its folder is created if missing).

    Returns:
        ``(csv path, json path)``.
    """
    csv_path = Path(csv_path)
    json_path = csv_path.with_suffix(".json")
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["class", "probability"])
    for name, p in result["probabilities"].items():
        writer.writerow([name, f"{p:.6f}"])
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(csv_path, table.getvalue().encode())
    atomic_write_bytes(json_path, (json.dumps(result, indent=2) + "\n").encode())
    return csv_path, json_path


def default_output(video) -> Path:
    """``<clip stem>_emotion.csv`` in the current directory.

    Args:
        video: the video file.

    Returns:
        A relative path.

    >>> default_output("clips/000046280.avi").as_posix()
    '000046280_emotion.csv'
    """
    return Path(f"{Path(video).stem}_emotion.csv")
