"""``emorec export RUN OUT`` for clip classification runs: one clip's faces and sound → class probabilities.

Layout of ``OUT`` (names in :class:`emorec.rundir.ExportDir`)::

    export.json     task, model, classes, face size and sample rate the inputs must have, the
                    face detection settings of the build (``emorec predict`` repeats them)
    model.keras     the run's best model (a hard link to RUN/best.keras where possible)
    saved_model/    signature serving_default (one clip per call, its length free)

Signature::

    serving_default(faces=float32 (N, S, S, 3) RGB face crops in [0, 1], S = export.json face_size,
                    face_found=float32 (N,) 1 where the tracker had a face,
                    audio=float32 (M,) mono in [-1, 1] at export.json sample_rate (M may be 0),
                    has_audio=float32 () 0 for a clip without a sound track)
        -> {probabilities: float32 (K,), class_index: int32 ()}

Inside, each run predicts a clip as its evaluation does (:mod:`emorec.clip_evaluate`,
same sampling functions of :mod:`emorec.clips.data`, no augmentation):

- frame branch: every face resized to the model's side, probabilities averaged over the
  frames with a face (over all frames when the clip has none);
- C3D branch: consecutive 16-frame slices (one more ending at the last frame), averaged
  over the slices holding a face;
- audio branch: the middle second (zero-padded; zeros without sound);
- fusion: 48 faces and 32 slices spread over the clip and the middle second through the
  frozen branches, visual features zeroed for a clip without any face and audio features
  for a clip without sound, then the fusion network. The SavedModel holds the four models.
"""

from __future__ import annotations

from pathlib import Path

from emorec.errors import ConfigError
from emorec.rundir import ExportDir, RunDir

CLIP_EXPORT_VERSION = 1
OUTPUTS = ("probabilities", "class_index")


def _clip_signature_specs(face_size: int) -> list:
    import tensorflow as tf

    return [
        tf.TensorSpec((None, face_size, face_size, 3), tf.float32, name="faces"),
        tf.TensorSpec((None,), tf.float32, name="face_found"),
        tf.TensorSpec((None,), tf.float32, name="audio"),
        tf.TensorSpec((), tf.float32, name="has_audio"),
    ]


def _resize(images, size: int, indices=None):
    import tensorflow as tf

    from emorec.clips.augment import crop_zoom_flip, identity_params

    count = tf.shape(images)[0] if indices is None else tf.shape(indices)[0]
    return crop_zoom_flip(images, identity_params(count), size, indices)


def _masked_mean(probs, keep):
    """Mean of the kept rows (all rows when none is kept)."""
    import tensorflow as tf

    weights = tf.cast(keep, tf.float32)
    weights = tf.cond(tf.reduce_sum(weights) > 0, lambda: weights, lambda: tf.ones_like(weights))
    return tf.reduce_sum(probs * weights[:, None], axis=0) / tf.reduce_sum(weights)


def _frame_inputs(faces, size: int, indices=None):
    return _resize(faces, size, indices)


def _slice_inputs(faces, starts, frames: int, size: int):
    import tensorflow as tf

    from emorec.clips.data import slice_indices

    n = tf.shape(faces)[0]
    index = tf.reshape(slice_indices(starts, n, frames), [-1])
    images = _resize(faces, size, index)
    return tf.reshape(images, [-1, frames, size, size, 3]), index


def _middle_second(audio, has_audio, samples: int):
    import tensorflow as tf

    from emorec.clips.data import audio_window

    start = tf.maximum(tf.shape(audio)[0] - samples, 0) // 2
    return (audio_window(audio, samples, start) * has_audio)[None]


def clip_predictor(model, branch: str, branch_models: dict | None = None, fusion_config=None):
    """``(faces, face_found, audio, has_audio) -> probabilities (K,)`` of one run, as TensorFlow ops.

    Args:
        model: the run's Keras model.
        branch: ``frame``, ``c3d``, ``audio`` or ``fusion``.
        branch_models: for the fusion, ``{"frame", "c3d", "audio"}`` Keras branch models.
        fusion_config: for the fusion, its model config (``frames``, ``slices``).

    Returns:
        A Python function of tensors (trace it with ``tf.function``).
    """
    import tensorflow as tf

    from emorec.clips.data import eval_slice_starts, spread_indices

    def frame_probs(m, faces, face_found):
        size = int(m.input["face"].shape[1])
        probs = m({"face": _frame_inputs(faces, size)}, training=False)["emotion_class"]
        return _masked_mean(probs, face_found > 0)

    def c3d_probs(m, faces, face_found):
        frames, size = int(m.input["clip"].shape[1]), int(m.input["clip"].shape[2])
        starts = eval_slice_starts(tf.shape(faces)[0], frames)
        clips, index = _slice_inputs(faces, starts, frames, size)
        probs = m({"clip": clips}, training=False)["emotion_class"]
        found = tf.reduce_max(tf.reshape(tf.gather(face_found, index), [-1, frames]), axis=1)
        return _masked_mean(probs, found > 0)

    def audio_out(m, audio, has_audio, key):
        samples = int(m.input["audio"].shape[1])
        return m({"audio": _middle_second(audio, has_audio, samples)}, training=False)[key][0]

    if branch == "frame":
        return lambda faces, face_found, audio, has_audio: frame_probs(model, faces, face_found)
    if branch == "c3d":
        return lambda faces, face_found, audio, has_audio: c3d_probs(model, faces, face_found)
    if branch == "audio":
        return lambda faces, face_found, audio, has_audio: audio_out(model, audio, has_audio, "emotion_class")

    frame_model, c3d_model, audio_model = (branch_models[k] for k in ("frame", "c3d", "audio"))
    frames, slices = int(fusion_config.frames), int(fusion_config.slices)
    face_size = int(frame_model.input["face"].shape[1])
    slice_frames, slice_size = int(c3d_model.input["clip"].shape[1]), int(c3d_model.input["clip"].shape[2])

    def fusion(faces, face_found, audio, has_audio):
        n = tf.shape(faces)[0]
        frame_index = spread_indices(n, frames)
        frame_features = frame_model({"face": _frame_inputs(faces, face_size, frame_index)},
                                     training=False)["features"]
        starts = spread_indices(tf.maximum(n - slice_frames, 0) + 1, slices)
        clips, _ = _slice_inputs(faces, starts, slice_frames, slice_size)
        slice_features = c3d_model({"clip": clips}, training=False)["features"]
        audio_features = audio_out(audio_model, audio, has_audio, "features")
        has_face = tf.cast(tf.reduce_sum(tf.gather(face_found, frame_index)) > 0, tf.float32)
        inputs = {"frame_features": frame_features[None] * has_face,
                  "slice_features": slice_features[None] * has_face,
                  "audio_features": audio_features[None] * has_audio}
        return model(inputs, training=False)["emotion_class"][0]

    return fusion


def clip_serving_module(model, branch: str, face_size: int, branch_models=None, fusion_config=None):
    """A ``tf.Module`` holding the model(s) with the ``serving_default`` function; returns ``(module, signatures)``.

    Args:
        model: the run's Keras model.
        branch: ``frame``, ``c3d``, ``audio`` or ``fusion``.
        face_size: side of the face crops the signature takes.
        branch_models: for the fusion, ``{"frame", "c3d", "audio"}`` Keras branch models (kept on
            the module so they are saved).
        fusion_config: for the fusion, its model config.

    Returns:
        ``(module, {"serving_default": concrete function})``; the function takes ``faces`` ``(N,
        S, S, 3)``, ``face_found`` ``(N,)``, ``audio`` ``(samples,)`` and scalar ``has_audio``
        (float32) and returns ``probabilities`` ``(K,)`` and int32 ``class_index``.
    """
    import tensorflow as tf

    predict = clip_predictor(model, branch, branch_models, fusion_config)
    module = tf.Module()
    module.model = model
    if branch_models:
        module.branches = list(branch_models.values())

    def serve(faces, face_found, audio, has_audio):
        probs = predict(faces, face_found, audio, has_audio)
        return {"probabilities": probs, "class_index": tf.argmax(probs, output_type=tf.int32)}

    module.serve = tf.function(serve, input_signature=_clip_signature_specs(face_size))
    return module, {"serving_default": module.serve.get_concrete_function()}


def export_clip_run(run_dir, out_dir, *, model=None, data=None) -> dict:
    """Write the export directory of a clip run's best model (see the module docstring).

    Args:
        run_dir: a clip classification run (a branch or the fusion).
        out_dir: the export directory (an earlier export there is replaced).
        model: use this model instead of ``RUN/best.keras``.
        data: the training clip dataset (its face size, sample rate and face detection settings);
            default: the one the run's config names.

    Returns:
        The dict written to ``export.json``.

    Raises:
        ConfigError: an unusable run (or its branch runs) or training dataset.
    """
    from emorec.clip_features import BranchModels, BranchRuns
    from emorec.config import load_run_config
    from emorec.dataset import open_dataset
    from emorec.evaluate import load_best_model
    from emorec.export import link_or_copy, write_staged
    from emorec.tasks.clip_classification import branch_of

    run, out = RunDir(run_dir), ExportDir(out_dir)
    config = load_run_config(run.path)
    branch = branch_of(config)
    keras_file = run.best_model if model is None else None
    model = model if model is not None else load_best_model(run.path)
    if data is None:
        data = (config.run or {}).get("data_dir")
        if not data:
            raise ConfigError(f"{run.config}: names no training dataset (run.data_dir); the export needs its "
                              "face size, sample rate and face detection settings")
    data = open_dataset(data)
    branch_models = None
    info_branches = None
    if branch == "fusion":
        runs = BranchRuns.load(run.path)
        loaded = BranchModels(runs)
        loaded.check_dims(config.model, str(run.config))
        branch_models = loaded.models
        info_branches = {k: str(Path(v).resolve()) for k, v in runs.items()}
    face_size = int(data.face_size)
    module, signatures = clip_serving_module(model, branch, face_size, branch_models, config.model)

    def fill(stage: Path) -> dict:
        import tensorflow as tf

        tf.saved_model.save(module, str(stage / ExportDir.SAVED_MODEL), signatures=signatures)
        if keras_file is not None and keras_file.is_file():
            link_or_copy(keras_file, stage / ExportDir.KERAS_MODEL)
        else:
            from emorec.training.checkpoint import save_keras_atomic

            save_keras_atomic(model, stage / ExportDir.KERAS_MODEL)
        info = {
            "format_version": CLIP_EXPORT_VERSION,
            "task": "clip_classification",
            "model": config.model_name,
            "branch": branch,
            "run_dir": str(run.path.resolve()),
            "branches": info_branches,
            "classes": list(data.classes),
            "inputs": ["faces", "face_found", "audio", "has_audio"],
            "face_size": face_size,
            "faces_input": "float32 (N, S, S, 3) RGB face crops in [0, 1] (uint8 / 255), one clip per call",
            "sample_rate": int(data.sample_rate),
            "audio_input": "float32 (M,) mono in [-1, 1]; has_audio 0 when the clip has no sound track",
            "face_detection": data.options.get("face_detection"),
            "jpeg_quality": data.options.get("jpeg_quality"),
            "outputs": list(OUTPUTS),
            "saved_model": ExportDir.SAVED_MODEL,
            "keras_model": ExportDir.KERAS_MODEL,
            "signature": "serving_default",
        }
        return info

    return write_staged(out.path, fill)
