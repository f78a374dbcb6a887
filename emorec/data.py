"""The tf.data input pipeline: dataset directory -> dict batches for training and evaluation.

``make_dataset`` yields batches with the keys of docs/ARCHITECTURE.md:
``audio (B, T, 640)``, ``video (B, T, S, S, 3)`` float32 in [0, 1],
``landmarks (B, T, 5, 2)``, ``face_found (B, T)``, ``labels (B, T, 2)``,
``mask (B, T)``, ``target (B, T)``, ``recording_id (B,)``, ``start_frame (B,)``,
``reset (B,)``. Only the requested modalities' keys are present; ``labels``,
``mask``, ``target``, ``recording_id``, ``start_frame`` and ``reset`` always are.
``target`` marks the frames a window is scored on: every real frame
(``target="all"``), or only the last real frame of each row (``"last"``:
Nguyen et al.'s reading, "the frame and its last four" predict the frame).

Choices worth knowing:

- Unlabelled partitions (RECOLA's test set) give all-zero ``labels``; ask
  :meth:`DatasetHandle.has_labels <emorec.dataset.DatasetHandle.has_labels>` before trusting them.
  Labels are read only if every recording of the partition has them.
- Window mode (default): every row is an independent window, so ``reset`` is
  True on every row. Training draws the windows as :mod:`emorec.sampling`
  says: one permutation of all the partition's windows per pass, an epoch a
  stretch of that endless stream (so every window is seen equally often over
  a run), each window read by its byte offset; ``epoch`` and ``skip`` say
  which batches. Evaluation reads every window once, in shard order.
- ``window_frames`` shorter than the stored window splits each stored window
  into ``ceil(W / T)`` consecutive sub-windows; the last one is padded with
  mask-0 frames when ``T`` does not divide ``W``; sub-windows with no real
  frame are dropped. Stored windows that overlap (hop < window) stay
  overlapping in this mode.
- Stream-ordered mode (``stream_ordered=True``, for stateful recurrent
  models): each recording's frames are stitched back by ``start_frame``
  (whatever the stored hop) and cut into consecutive, non-overlapping
  ``T``-frame rows. Recordings are laid out over ``batch_size`` lanes: the
  next recording goes to the lane that ends first (lowest lane on ties) and
  its first row has ``reset=True``. Lanes that finish early are padded with
  rows of ``mask 0``, ``recording_id b""``, ``start_frame -1`` and
  ``reset False`` until the longest lane ends, so every batch is full.
  Training shuffles only the order of recordings, differently every epoch.
  ``window_frames`` may here exceed the stored window. The manifest's
  ``frames`` and ``windows`` per shard must match the shard (checked while
  reading; a mismatch fails with the shard's path).
- Training augmentation (emorec.augment) is applied frame by frame, each frame
  with its own draws, as the original per-frame pipeline did. Landmarks are
  moved with the crop. Given ``seed``, the order and the augmentation are
  reproducible: a window's draws are a function of its stream position.
- ``audio_norm="recording"`` standardises each recording's audio to zero
  mean and unit variance at read time (Nguyen et al.), with the statistics of
  the stored audio (:meth:`DatasetHandle.audio_stats
  <emorec.dataset.DatasetHandle.audio_stats>`), so one dataset serves both the
  raw-waveform models (``none``, Tzirakis' release) and the normalised ones.
- Feature sets (``ReadSpec.features``) come as ``features_<name>`` ``(B, T, D)``
  float32, z-scored per speaker or with the training partition's statistics
  (``feature_norm``, :mod:`emorec.feature_norm`) from the statistics the build
  stored; padding frames stay 0. A read may take feature sets alone
  (``modalities=()``). Stream-ordered mode does not read feature sets.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from emorec.augment import augment_faces
from emorec.dataset import DatasetHandle, open_dataset
from emorec.errors import ConfigError, DatasetError
from emorec.feature_norm import normalization
from emorec.media.audio import AUDIO_NORMS, normalization_scale
from emorec.schema import (
    CTX_RECORDING_ID,
    CTX_START_FRAME,
    FEATURE_KEY_PREFIX,
    FL_AUDIO,
    FL_FACE,
    FL_FACE_FOUND,
    FL_LANDMARKS,
    FL_VALID,
    FRAME_SAMPLES,
    MODALITIES,
    NUM_LANDMARKS,
    feature_key,
    parse_window_tensors,
)
from emorec.tfdata_options import without_autotune_thread

logger = logging.getLogger(__name__)

_MAX_INTERLEAVE = 16
# Per-frame keys of the internal window element (before decoding).
_FRAME_KEYS = (FL_VALID, FL_AUDIO, FL_FACE, FL_FACE_FOUND, FL_LANDMARKS, "labels")


def _frame_keys(window) -> list[str]:
    """The per-frame keys of a window dict: the fixed ones present, and its feature sets."""
    return [k for k in window if k in _FRAME_KEYS or k.startswith(FEATURE_KEY_PREFIX)]


@dataclass(frozen=True)
class _Plan:
    """What one partition of one dataset directory holds and what is read from it."""

    data_dir: Path
    partition: str
    paths: tuple[str, ...]
    recording_ids: tuple[str, ...]
    frames: tuple[int, ...]
    windows: tuple[int, ...]
    modalities: tuple[str, ...]
    has_labels: bool
    face_size: int
    window_frames: int
    hop_frames: int
    # Per shard (recording) audio mean and standard deviation; None = audio read as stored.
    audio_stats: tuple[tuple[float, float], ...] | None = None
    # (feature set, dimension) read, in order; and per set the (means, scales) of each shard.
    feature_dims: tuple[tuple[str, int], ...] = ()
    feature_stats: tuple[tuple[str, np.ndarray, np.ndarray], ...] = ()

    @property
    def audio(self) -> bool:
        return "audio" in self.modalities

    @property
    def video(self) -> bool:
        return "video" in self.modalities


def _plan(data: DatasetHandle, partition: str, modalities: Sequence[str] | None,
          audio_norm: str = "none", features: Sequence[str] = (), feature_norm: str = "none") -> _Plan:
    shards = data.shards(partition)
    if not shards:
        raise DatasetError(f"{data.path}: dataset has no recordings in partition {partition!r}")
    # An empty tuple reads no modality (feature sets alone, or only the counts); None = all stored.
    wanted = () if modalities is not None and not tuple(modalities) else data.require_modalities(
        modalities, "the reader")
    dims = data.require_features(tuple(features), "the reader")
    norms = normalization(data, partition, tuple(dims), feature_norm)
    paths = []
    for shard in shards:
        path = data.path / shard.path
        if not path.is_file():
            raise DatasetError(f"{path}: shard listed in {data.path / 'manifest.json'} is missing")
        paths.append(str(path))
    return _Plan(
        data_dir=data.path,
        partition=partition,
        paths=tuple(paths),
        recording_ids=tuple(s.recording_id for s in shards),
        frames=tuple(int(s.frames) for s in shards),
        windows=tuple(int(s.windows) for s in shards),
        modalities=tuple(m for m in MODALITIES if m in wanted),
        has_labels=data.has_labels(partition),
        face_size=data.face_size,
        window_frames=data.window_frames,
        hop_frames=data.hop_frames,
        audio_stats=_audio_stats(data, partition, shards, wanted, audio_norm),
        feature_dims=tuple(dims.items()),
        feature_stats=tuple((name, *norms[name]) for name in dims if name in norms),
    )


def _audio_stats(data: DatasetHandle, partition: str, shards, modalities, audio_norm: str):
    """Per shard ``(mean, scale)`` for read-time standardisation, or None."""
    if audio_norm not in AUDIO_NORMS:
        raise ConfigError(f"audio_norm must be one of {', '.join(AUDIO_NORMS)}, got {audio_norm!r}")
    if audio_norm == "none" or "audio" not in modalities:
        return None
    stats = audio_statistics(data, partition)
    return tuple((stats[s.recording_id][0], normalization_scale(stats[s.recording_id][1])) for s in shards)


def audio_statistics(data: DatasetHandle, partition: str) -> dict[str, tuple[float, float]]:
    """``{recording_id: (mean, std)}`` of the stored audio of a partition's recordings.

    Read from the manifest (the build stores them); for a dataset built before
    that, computed once from the shards and kept on the handle.

    Args:
        data: the open dataset.
        partition: the partition.

    Returns:
        ``{recording id: (mean, std)}`` over every stored sample of each recording.

    Raises:
        DatasetError: a shard that cannot be read (only when computing).
    """
    stats = {s.recording_id: (s.audio_mean, s.audio_std) for s in data.shards(partition)}
    if all(m is not None and v is not None for m, v in stats.values()):
        return stats
    cache = data.cache.setdefault("audio_statistics", {})
    if partition not in cache:
        from emorec.media.audio import Moments

        logger.info("computing the audio statistics of partition %s (a dataset built before emorec stored them)",
                    partition)
        cache[partition] = {}
        for rid, arrays in read_recordings(data, partition, ["audio"]):
            moments = Moments()
            moments.add(arrays["audio"])
            cache[partition][rid] = (float(moments.mean), float(moments.std))
    return cache[partition]


TARGETS = ("all", "last")


@dataclasses.dataclass(frozen=True)
class ReadSpec:
    """How :func:`make_dataset` reads a partition.

    ``training`` draws windows as :mod:`emorec.sampling` says (window mode:
    ``window_frames`` every ``hop_frames`` (default: the window), batches
    ``skip …`` of epoch ``epoch``, ``steps`` of them, default one pass) or shuffles the recording order (stream mode, repeated when
    ``repeat``); ``augment`` applies the face augmentation and defaults to
    ``training``. ``window_frames`` None = the stored window; it may exceed the
    stored window only in stream mode. ``drop_remainder`` None drops the last
    short batch only when training (stream mode always gives full batches).
    ``target`` and ``audio_norm``: see the module docstring. ``features``:
    the feature sets read, normalised as ``feature_norm`` says
    (:mod:`emorec.feature_norm`). ``deterministic`` None means True when a
    ``seed`` is given, tf.data's default otherwise.
    """

    batch_size: int
    modalities: tuple[str, ...] | None = None
    training: bool = False
    augment: bool | None = None
    window_frames: int | None = None
    stream_ordered: bool = False
    seed: int | None = None
    hop_frames: int | None = None
    epoch: int = 0
    steps: int | None = None
    skip: int = 0
    repeat: bool = False
    drop_remainder: bool | None = None
    target: str = "all"
    audio_norm: str = "none"
    features: tuple[str, ...] = ()
    feature_norm: str = "none"
    num_parallel_calls: int = tf.data.AUTOTUNE
    deterministic: bool | None = None

    def replace(self, **changes) -> ReadSpec:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)


def _sub_seed(seed: int | None, k: int) -> int | None:
    """Independent-looking seeds for the pipeline's random stages, derived from one seed."""
    return None if seed is None else (int(seed) * 1_000_003 + 7919 * (k + 1)) % (2**31 - 1)


def _black_jpeg(face_size: int) -> tf.Tensor:
    return tf.io.encode_jpeg(tf.zeros([face_size, face_size, 3], tf.uint8))


# --- parsing and re-windowing (undecoded windows) --------------------------------------


def _parse_fn(plan: _Plan):
    """serialized window -> internal dict with static shapes (JPEGs still encoded)."""
    t = plan.window_frames

    def parse(serialized):
        raw = parse_window_tensors(serialized, plan.audio, plan.video, plan.has_labels, dict(plan.feature_dims))
        out = {
            "recording_id": raw[CTX_RECORDING_ID],
            "start_frame": raw[CTX_START_FRAME],
            FL_VALID: tf.ensure_shape(raw[FL_VALID], [t]),
        }
        if plan.audio:
            out[FL_AUDIO] = tf.ensure_shape(raw[FL_AUDIO], [t, FRAME_SAMPLES])
        if plan.video:
            out[FL_FACE] = tf.ensure_shape(raw[FL_FACE], [t])
            out[FL_FACE_FOUND] = tf.ensure_shape(raw[FL_FACE_FOUND], [t])
            out[FL_LANDMARKS] = tf.ensure_shape(raw[FL_LANDMARKS], [t, NUM_LANDMARKS, 2])
        if plan.has_labels:
            out["labels"] = tf.ensure_shape(raw["labels"], [t, 2])
        else:
            out["labels"] = tf.zeros([t, 2], tf.float32)
        for name, dim in plan.feature_dims:
            out[feature_key(name)] = tf.ensure_shape(raw[feature_key(name)], [t, dim])
        return out

    return parse


def _pad_frames(window: dict, length, black) -> dict:
    """Pad every per-frame tensor of a window (leading axis) to ``length`` with padding frames."""
    out = dict(window)
    for key in _frame_keys(window):
        value = window[key]
        missing = tf.cast(length, tf.int32) - tf.shape(value)[0]
        if key == FL_FACE:
            out[key] = tf.concat([value, tf.fill([missing], black)], axis=0)
        else:
            pads = [[0, missing]] + [[0, 0]] * (value.shape.rank - 1)
            out[key] = tf.pad(value, pads)
        if isinstance(length, int):
            out[key].set_shape([length] + value.shape.as_list()[1:])
    return out


def _split_fn(plan: _Plan, frames: int):
    """One stored window -> a batch of ``ceil(W / T)`` consecutive T-frame sub-windows."""
    stored = plan.window_frames
    count = math.ceil(stored / frames)
    black = _black_jpeg(plan.face_size)

    def split(window):
        padded = _pad_frames(window, count * frames, black)
        out = {
            "recording_id": tf.fill([count], window["recording_id"]),
            "start_frame": window["start_frame"] + frames * tf.range(count, dtype=tf.int64),
        }
        for key in _frame_keys(padded):
            value = padded[key]
            out[key] = tf.reshape(value, [count, frames] + value.shape.as_list()[1:])
        return out

    return split


def _has_real_frame(window) -> tf.Tensor:
    return tf.reduce_any(window[FL_VALID] > 0)


def _new_frames(plan: _Plan, window: dict, covered, path) -> tuple[dict, tf.Tensor]:
    """The valid frames of a window that no earlier window covered, and the new coverage end.

    Returns the per-frame tensors plus ``frame`` (indices in the recording) and
    per-frame ``recording_id`` (so that chunks can be re-batched along the frame
    axis). A window starting after the covered frames (a gap) fails with the shard path.
    """
    index = window["start_frame"] + tf.range(plan.window_frames, dtype=tf.int64)
    valid = window[FL_VALID] > 0
    no_gap = tf.debugging.Assert(
        window["start_frame"] <= covered,
        [path, ": frames missing before the window starting at frame", window["start_frame"]],
    )
    with tf.control_dependencies([no_gap]):
        keep = tf.logical_and(valid, index >= covered)
    new_covered = tf.maximum(covered, tf.reduce_max(tf.where(valid, index + 1, tf.zeros_like(index))))
    kept = tf.boolean_mask(index, keep)
    out = {"recording_id": tf.fill(tf.shape(kept), window["recording_id"]), "frame": kept}
    for key in _frame_keys(window):
        out[key] = tf.boolean_mask(window[key], keep)
    return out, new_covered


def _recording_frames(plan: _Plan, path) -> tf.data.Dataset:
    """A recording's valid frames in time order, stitched by start_frame, one chunk per stored window.

    Overlapping hops give every frame once; frame indices are under ``frame``.
    """

    def stitch(covered, window):
        out, covered = _new_frames(plan, window, covered, path)
        return covered, out

    return tf.data.TFRecordDataset(path).map(_parse_fn(plan)).scan(tf.constant(0, tf.int64), stitch)


# --- decoding and augmentation ----------------------------------------------------------


def _decode_faces(faces, face_size: int):
    """JPEG strings of any shape ``(...)`` -> uint8 faces ``(..., S, S, 3)``."""
    flat = tf.reshape(faces, [-1])
    spec = tf.TensorSpec([face_size, face_size, 3], tf.uint8)
    images = tf.map_fn(
        lambda jpeg: tf.ensure_shape(tf.io.decode_jpeg(jpeg, channels=3), spec.shape),
        flat,
        fn_output_signature=spec,
    )
    return tf.reshape(images, tf.concat([tf.shape(faces), [face_size, face_size, 3]], axis=0))


def _target(mask, target: str):
    """Frames scored: the mask itself, or only each row's last real frame (``(..., T)``)."""
    if target == "all":
        return mask
    last = tf.cast(tf.reduce_sum(mask, axis=-1), tf.int32) - 1
    return tf.one_hot(last, tf.shape(mask)[-1], dtype=mask.dtype)  # all zeros for an empty row


def _finish_fn(plan: _Plan, augment: bool, reset_all: bool, target: str = "all"):
    """Internal element (a window or a stacked batch) + augmentation seed -> output dict."""
    size = plan.face_size

    def finish(window, seed):
        mask = tf.cast(window[FL_VALID], tf.float32)
        out = {
            "labels": window["labels"],
            "mask": mask,
            "target": _target(mask, target),
            "recording_id": window["recording_id"],
            "start_frame": window["start_frame"],
            "reset": (
                tf.ones_like(window["start_frame"], tf.bool) if reset_all else window["reset"]
            ),
        }
        if plan.audio:
            out["audio"] = window[FL_AUDIO]
        if plan.video:
            faces = tf.cast(_decode_faces(window[FL_FACE], size), tf.float32) / 255.0
            landmarks = window[FL_LANDMARKS]
            if augment:
                lead = tf.shape(window[FL_FACE])
                flat_faces, flat_marks = augment_faces(
                    tf.reshape(faces, [-1, size, size, 3]),
                    tf.reshape(landmarks, [-1, NUM_LANDMARKS, 2]),
                    seed,
                    size,
                )
                faces = tf.reshape(flat_faces, tf.shape(faces))
                landmarks = tf.reshape(flat_marks, tf.concat([lead, [NUM_LANDMARKS, 2]], 0))
            out["video"] = faces
            out["landmarks"] = landmarks
            out["face_found"] = tf.cast(window[FL_FACE_FOUND], tf.float32)
        for name, _ in plan.feature_dims:
            out[feature_key(name)] = window[feature_key(name)]
        return out

    return finish


def _with_seeds(ds: tf.data.Dataset, seed: int | None) -> tf.data.Dataset:
    """Pair each element with a fresh stateless seed; new draws on every pass over the data."""
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip(ds, seeds)


def _normalizes(plan: _Plan) -> bool:
    return plan.audio_stats is not None or bool(plan.feature_stats)


def _normalize_fn(plan: _Plan):
    """Element with ``shard`` -> its audio and feature sets standardised with that recording's statistics.

    Padding frames stay 0.
    """
    audio = None
    if plan.audio_stats is not None:
        audio = (tf.constant([m for m, _ in plan.audio_stats], tf.float32),
                 tf.constant([s for _, s in plan.audio_stats], tf.float32))
    features = [(feature_key(name), tf.constant(means), tf.constant(scales))
                for name, means, scales in plan.feature_stats]

    def normalize(window):
        valid = tf.cast(window[FL_VALID], tf.float32)[..., None]
        out = dict(window)
        if audio is not None:
            centred = window[FL_AUDIO] - tf.gather(audio[0], window["shard"])
            out[FL_AUDIO] = centred / tf.gather(audio[1], window["shard"]) * valid
        for key, means, scales in features:
            centred = window[key] - tf.gather(means, window["shard"])
            out[key] = centred / tf.gather(scales, window["shard"]) * valid
        return out

    return normalize


def _tagged_records(path, shard):
    return tf.data.TFRecordDataset(path).map(lambda record: (record, shard))


def _with_shard(parse):
    def parse_tagged(record, shard):
        return {**parse(record), "shard": shard}

    return parse_tagged


def _window_dataset(plan, *, batch_size, frames, augment, repeat, drop_remainder, target, num_parallel_calls,
                    deterministic) -> tf.data.Dataset:
    """Every stored window (or sub-window) once, in shard order (evaluation and validation)."""
    files = tf.data.Dataset.from_tensor_slices((list(plan.paths), tf.range(len(plan.paths), dtype=tf.int64)))
    ds = files.interleave(_tagged_records, cycle_length=1, num_parallel_calls=num_parallel_calls,
                          deterministic=True)
    ds = ds.map(_with_shard(_parse_fn(plan)), num_parallel_calls=num_parallel_calls, deterministic=deterministic)
    if _normalizes(plan):
        ds = ds.map(_normalize_fn(plan), num_parallel_calls=num_parallel_calls, deterministic=deterministic)
    if frames < plan.window_frames:
        ds = ds.map(_split_fn(plan, frames)).unbatch().filter(_has_real_frame)
    if repeat:
        ds = ds.repeat()
    ds = _with_seeds(ds, None)
    ds = ds.map(_finish_fn(plan, augment, reset_all=True, target=target),
                num_parallel_calls=num_parallel_calls, deterministic=deterministic)
    return ds.batch(batch_size, drop_remainder=drop_remainder)


def training_examples(plan: _Plan, frames: int, hop: int | None = None):
    """The partition's training windows (:class:`emorec.sampling.Examples`) of ``frames`` every ``hop``.

    Args:
        plan: the partition's read plan (frame and stored window counts, stored window and hop).
        frames: frames per training window.
        hop: frames between training windows (None: ``frames``).

    Returns:
        The :class:`~emorec.sampling.Examples` of :func:`emorec.sampling.enumerate_examples`.

    Raises:
        DatasetError: windows the stored ones cannot give, or a shard whose window count does
            not match its frames (naming the dataset).
    """
    from emorec.sampling import enumerate_examples

    try:
        return enumerate_examples(plan.frames, plan.windows, plan.window_frames, plan.hop_frames, frames, hop)
    except DatasetError as exc:
        raise DatasetError(f"{plan.data_dir}: {exc}") from None


def count_examples(data, partition: str, frames: int, hop: int | None = None) -> int:
    """How many ``frames``-frame training windows every ``hop`` frames a partition gives.

    Args:
        data: the dataset directory or an open dataset.
        partition: the partition.
        frames: frames per training window.
        hop: frames between training windows (None: ``frames``).

    Returns:
        The number of training windows.

    Raises:
        DatasetError: no readable dataset, no recordings in ``partition``, a missing shard, or
            windows the stored ones cannot give.
    """
    data = open_dataset(data)
    return len(training_examples(_plan(data, partition, ()), frames, hop))


def _sampled_dataset(plan, *, batch_size, frames, hop, augment, seed, epoch, steps, skip, target,
                     num_parallel_calls, deterministic) -> tf.data.Dataset:
    """Training batches ``skip …`` of epoch ``epoch``, drawn as :mod:`emorec.sampling` says."""
    from emorec.sampling import epoch_examples, record_offsets, steps_in_epoch

    examples = training_examples(plan, frames, hop)
    n = len(examples)
    steps = steps_in_epoch(n, batch_size, steps)
    if steps < 1:
        raise DatasetError(
            f"{plan.data_dir}: partition {plan.partition} holds {n} training windows of {frames} frames, "
            f"fewer than a batch of {batch_size}; pass --batch-size {max(1, n)} or fewer"
        )
    ids, positions = epoch_examples(n, int(seed or 0), batch_size, steps, epoch, skip)
    offsets, lengths, sizes = [], [], []
    for k, path in enumerate(plan.paths):
        offset, length = record_offsets(path)
        if len(offset) != plan.windows[k]:
            raise DatasetError(f"{path}: holds {len(offset)} windows, the manifest says {plan.windows[k]}")
        offsets.append(offset)
        lengths.append(length)
        sizes.append(os.path.getsize(path))
    shard = examples.shard[ids]
    where = {}
    for name, records in (("a", examples.first[ids]), ("b", examples.second[ids])):
        offset = np.array([offsets[s][r] for s, r in zip(shard, records)], np.int64)
        length = np.array([lengths[s][r] for s, r in zip(shard, records)], np.int64)
        where[name] = (offset, length, np.asarray(sizes, np.int64)[shard] - offset - length)
    table = (np.asarray(plan.paths)[shard], *where["a"], *where["b"], shard,
             (examples.second[ids] != examples.first[ids]), examples.offset[ids], examples.start_frame[ids],
             positions)

    def read(path, a_offset, a_length, a_footer, b_offset, b_length, b_footer, shard, two, offset, start, position):
        def record(offset_, length_, footer_):
            return tf.data.FixedLengthRecordDataset(path, record_bytes=length_, header_bytes=offset_,
                                                    footer_bytes=footer_)

        return tf.data.Dataset.zip(record(a_offset, a_length, a_footer), record(b_offset, b_length, b_footer),
                                   tf.data.Dataset.from_tensors((shard, two, offset, start, position)))

    ds = tf.data.Dataset.from_tensor_slices(table).interleave(
        read, cycle_length=_MAX_INTERLEAVE, block_length=1, num_parallel_calls=num_parallel_calls,
        deterministic=True)
    parse = _parse_fn(plan)

    def example(first, second, meta):
        shard, two, offset, start, position = meta
        a, b = parse(first), parse(second)
        # The example's frames: [offset, offset + T) of the first stored window followed by the second
        # (whose frames count only when the example really straddles two).
        window = {"recording_id": a["recording_id"], "start_frame": start, "shard": shard}
        for key in _frame_keys(a):
            tail = b[key]
            if key == FL_VALID:
                tail = tail * tf.cast(two, tail.dtype)
            window[key] = tf.concat([a[key], tail], axis=0)[offset:offset + frames]
            window[key].set_shape([frames] + a[key].shape.as_list()[1:])
        # Augmentation draws are a function of (seed, stream position): resumed runs redraw them exactly.
        return window, tf.stack([tf.constant(int(seed or 0), tf.int64), position])

    ds = ds.map(example, num_parallel_calls=num_parallel_calls, deterministic=True)
    if _normalizes(plan):
        normalize = _normalize_fn(plan)
        ds = ds.map(lambda window, draw: (normalize(window), draw), num_parallel_calls=num_parallel_calls,
                    deterministic=True)
    ds = ds.map(_finish_fn(plan, augment, reset_all=True, target=target), num_parallel_calls=num_parallel_calls,
                deterministic=deterministic)
    return ds.batch(batch_size, drop_remainder=True)


def _lane_rows(plan: _Plan, frames: int, paths, rids, windows, valid_frames, norm=None) -> tf.data.Dataset:
    """One lane: its recordings' shards read back to back, cut into T-frame rows.

    Each recording's frames are padded (valid 0) to a multiple of T after its
    last stored window (counted with the manifest's ``windows``), so that
    re-batching the frame stream by T never puts two recordings in one row.
    ``norm`` = the lane's recordings' audio ``(means, stds)`` to standardise with.
    """
    black = _black_jpeg(plan.face_size)
    zero = tf.constant(0, tf.int64)

    def stitch(state, window):
        rec, seen, covered, emitted = state
        known = tf.debugging.Assert(
            rec < tf.size(rids, out_type=tf.int64),
            [window["recording_id"], ": more windows than the manifest lists"],
        )
        with tf.control_dependencies([known]):
            path, rid = paths[rec], rids[rec]
        same = tf.debugging.Assert(
            tf.equal(window["recording_id"], rid),
            [path, ": window count differs from the manifest; found a window of", window["recording_id"]],
        )
        with tf.control_dependencies([same]):
            chunk, covered = _new_frames(plan, window, covered, path)
        if norm is not None:
            chunk = {**chunk, FL_AUDIO: (chunk[FL_AUDIO] - norm[0][rec]) / norm[1][rec]}
        seen += 1
        last = tf.equal(seen, windows[rec])
        total = emitted + tf.size(chunk["frame"], out_type=tf.int64)
        complete = tf.debugging.Assert(
            tf.logical_and(
                total <= valid_frames[rec],
                tf.logical_or(tf.logical_not(last), tf.equal(total, valid_frames[rec])),
            ),
            [path, ": valid frame count differs from the manifest's", valid_frames[rec], total],
        )
        with tf.control_dependencies([complete]):
            pad = tf.where(last, -total % frames, zero)
        length = tf.size(chunk["frame"], out_type=tf.int64) + pad
        out = _pad_frames({k: chunk[k] for k in _frame_keys(chunk)}, length, black)
        out["frame"] = tf.pad(chunk["frame"], [[0, pad]], constant_values=-1)
        out["recording_id"] = tf.concat([chunk["recording_id"], tf.fill([pad], rid)], 0)
        state = tf.cond(
            last, lambda: (rec + 1, zero, zero, zero), lambda: (rec, seen, covered, total)
        )
        return state, out

    def to_row(chunk):
        row = {k: chunk[k] for k in _frame_keys(chunk)}
        for value in row.values():
            value.set_shape([frames] + value.shape.as_list()[1:])
        row["recording_id"] = chunk["recording_id"][0]
        row["start_frame"] = chunk["frame"][0]
        row["reset"] = tf.equal(chunk["frame"][0], 0)
        return row

    return (
        tf.data.TFRecordDataset(paths)
        .map(_parse_fn(plan))
        .scan((zero, zero, zero, zero), stitch)
        .rebatch(frames)
        .map(to_row)
    )


def _pad_row(plan: _Plan, frames: int) -> dict:
    row = {
        "recording_id": tf.constant(b""),
        "start_frame": tf.constant(-1, tf.int64),
        "reset": tf.constant(False),
        FL_VALID: tf.zeros([frames], tf.int64),
        "labels": tf.zeros([frames, 2], tf.float32),
    }
    if plan.audio:
        row[FL_AUDIO] = tf.zeros([frames, FRAME_SAMPLES], tf.float32)
    if plan.video:
        row[FL_FACE] = tf.fill([frames], _black_jpeg(plan.face_size))
        row[FL_FACE_FOUND] = tf.zeros([frames], tf.int64)
        row[FL_LANDMARKS] = tf.zeros([frames, NUM_LANDMARKS, 2], tf.float32)
    return row


def stream_layout(rows_per_recording, order, batch_size: int):
    """Lane of each recording (in ``order``) and each lane's end, greedy: next recording -> lane ending first.

    Args:
        rows_per_recording: rows (windows) of each recording, in recording order.
        order: the recordings' indices in the order they are placed.
        batch_size: the number of lanes.

    Returns:
        ``(lane_of, ends)``: int64 ``(len(order),)`` lane of each placed recording, and int64
        ``(batch_size,)`` rows in each lane.

    >>> lanes, ends = stream_layout([3, 1, 2], tf.constant([0, 1, 2]), 2)
    >>> lanes.numpy().tolist(), ends.numpy().tolist()
    ([0, 1, 1], [3, 3])
    """
    counts = tf.gather(tf.constant(rows_per_recording, tf.int64), order)
    lanes = tf.range(batch_size, dtype=tf.int64)

    def place(state, count):
        lane_end, _ = state
        lane = tf.argmin(lane_end * batch_size + lanes)  # ties -> lowest lane, deterministically
        return lane_end + tf.one_hot(lane, batch_size, dtype=tf.int64) * count, lane

    ends, lane_of = tf.scan(
        place, counts, initializer=(tf.zeros([batch_size], tf.int64), tf.constant(0, tf.int64))
    )
    return lane_of, ends[-1]


def _stream_dataset(plan, *, batch_size, frames, training, augment, seed, repeat, num_parallel_calls,
                    deterministic) -> tf.data.Dataset:
    rows_per_recording = [math.ceil(n / frames) for n in plan.frames]
    paths = tf.constant(list(plan.paths))
    rids = tf.constant(list(plan.recording_ids))
    windows = tf.constant(plan.windows, tf.int64)
    valid_frames = tf.constant(plan.frames, tf.int64)
    pad = tf.data.Dataset.from_tensors(_pad_row(plan, frames)).repeat()
    count = len(plan.paths)
    norm = None
    if plan.audio_stats is not None:
        norm = (tf.constant([m for m, _ in plan.audio_stats], tf.float32),
                tf.constant([s for _, s in plan.audio_stats], tf.float32))

    def epoch(order_seed):
        if training:
            order = tf.random.experimental.stateless_shuffle(
                tf.range(count, dtype=tf.int64), seed=tf.stack([order_seed, tf.constant(0, tf.int64)])
            )
        else:
            order = tf.range(count, dtype=tf.int64)
        lane_of, lane_end = stream_layout(rows_per_recording, order, batch_size)
        steps = tf.reduce_max(lane_end)

        def lane_rows(lane):
            mine = tf.boolean_mask(order, tf.equal(lane_of, lane))
            rows = _lane_rows(
                plan, frames, tf.gather(paths, mine), tf.gather(rids, mine),
                tf.gather(windows, mine), tf.gather(valid_frames, mine),
                None if norm is None else (tf.gather(norm[0], mine), tf.gather(norm[1], mine)),
            )
            return rows.concatenate(pad).take(steps)

        # Every lane has exactly `steps` rows, so a round robin over the lanes
        # (one row each) followed by batch(batch_size) puts lane r in row r.
        lanes = tf.data.Dataset.range(batch_size).interleave(
            lane_rows, cycle_length=batch_size, block_length=1
        )
        return lanes.batch(batch_size)

    if training:
        seeds = tf.data.Dataset.random(seed=_sub_seed(seed, 3), rerandomize_each_iteration=True)
        seeds = seeds if repeat else seeds.take(1)
        ds = seeds.flat_map(epoch)
    else:
        # A fixed layout: build the lanes once, outside any tf.data function.
        ds = epoch(tf.constant(0, tf.int64))
        ds = ds.repeat() if repeat else ds
    ds = _with_seeds(ds, _sub_seed(seed, 2))
    return ds.map(
        _finish_fn(plan, augment, reset_all=False),
        num_parallel_calls=num_parallel_calls,
        deterministic=deterministic,
    )


def make_dataset(data: str | os.PathLike | DatasetHandle, partition: str, spec: ReadSpec) -> tf.data.Dataset:
    """Batches of windows of one partition as dicts of tensors (see the module docstring).

    Args:
        data: the dataset (a handle, or its directory).
        partition: ``train``, ``dev`` or ``test``.
        spec: how to read it (:class:`ReadSpec`).

    Returns:
        A ``tf.data.Dataset`` of dict batches (keys in docs/ARCHITECTURE.md).

    Raises:
        ConfigError, DatasetError: a partition without recordings, a missing shard, settings that do not fit
            the stored windows.
    """
    data = open_dataset(data)
    batch_size, training, seed = spec.batch_size, spec.training, spec.seed
    stream_ordered, augment, deterministic = spec.stream_ordered, spec.augment, spec.deterministic
    if spec.target not in TARGETS:
        raise ConfigError(f"target must be one of {', '.join(TARGETS)}, got {spec.target!r}")
    plan = _plan(data, partition, spec.modalities, spec.audio_norm, spec.features, spec.feature_norm)
    if not (plan.modalities or plan.feature_dims):
        raise ConfigError(f"{plan.data_dir}: nothing to read (no modality and no feature set requested)")
    if stream_ordered and plan.feature_dims:
        raise ConfigError(f"{plan.data_dir}: feature sets are read as windows, not stream-ordered")
    if batch_size < 1:
        raise ConfigError(f"{plan.data_dir}: batch_size must be at least 1, got {batch_size}")
    frames = plan.window_frames if spec.window_frames is None else int(spec.window_frames)
    if frames < 1:
        raise ConfigError(f"{plan.data_dir}: window_frames must be at least 1, got {frames}")
    if frames > plan.window_frames and not stream_ordered:
        raise ConfigError(
            f"{plan.data_dir}: stored windows have {plan.window_frames} frames, cannot read "
            f"{frames}-frame windows from them; rebuild with a longer window or use stream_ordered"
        )
    if plan.hop_frames > plan.window_frames and stream_ordered:
        raise ConfigError(
            f"{plan.data_dir}: hop ({plan.hop_frames} frames) exceeds the window "
            f"({plan.window_frames}); recordings have gaps and cannot be streamed"
        )
    if stream_ordered and spec.target != "all":
        raise ConfigError(f"{plan.data_dir}: stream-ordered rows are scored on every frame (target all)")
    if deterministic is None and seed is not None:
        deterministic = True
    if augment is None:
        augment = training
    common = dict(batch_size=batch_size, frames=frames, augment=augment,
                  num_parallel_calls=spec.num_parallel_calls, deterministic=deterministic)
    if stream_ordered:
        order_seed = epoch_seed(seed, spec.epoch) if (training and seed is not None) else seed
        ds = _stream_dataset(plan, training=training, seed=order_seed, repeat=spec.repeat or bool(spec.steps),
                             **common)
        if spec.steps:
            ds = ds.take(spec.steps)
        if spec.skip:
            ds = ds.skip(spec.skip)
    elif training:
        ds = _sampled_dataset(plan, seed=seed, hop=spec.hop_frames, epoch=spec.epoch, steps=spec.steps,
                              skip=spec.skip, target=spec.target, **common)
    else:
        drop_remainder = bool(spec.drop_remainder)
        ds = _window_dataset(plan, repeat=spec.repeat, drop_remainder=drop_remainder, target=spec.target,
                             **common)
    return without_autotune_thread(ds.prefetch(tf.data.AUTOTUNE))


def epoch_seed(seed: int, epoch: int) -> int:
    """Stream mode's order seed of epoch ``epoch`` (0-based): a fixed function of the run seed and the epoch.

    Args:
        seed: the run's seed.
        epoch: the epoch, 0-based.

    Returns:
        A seed in ``[0, 2**31 - 1)``.

    >>> epoch_seed(3, 1) == epoch_seed(3, 1) != epoch_seed(3, 2)
    True
    """
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 1) % (2**31 - 1)


def read_recordings(
    data: str | os.PathLike | DatasetHandle, partition: str, modalities: Sequence[str] | None = None,
    audio_norm: str = "none", features: Sequence[str] = (), feature_norm: str = "none",
) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """Yield ``(recording_id, arrays)`` per recording with all its valid frames stitched back.

    Arrays: ``audio (N, 640)`` float32, ``video (N, S, S, 3)`` uint8,
    ``landmarks (N, 5, 2)``, ``face_found (N,)`` and ``mask (N,)`` float32,
    ``features_<name> (N, D)`` float32 for each of ``features`` (normalised as
    ``feature_norm`` says), and ``labels (N, 2)`` if the partition is
    labelled. ``modalities=()`` reads no modality (feature sets alone).
    Recordings come in recording-id order; a shard whose frames do not match
    the manifest raises DatasetError naming it.

    Args:
        data: the dataset directory or an open dataset.
        partition: the partition to read.
        modalities: the modalities to read (None: every stored one; ``()``: none).
        audio_norm: read-time audio standardisation (one of :data:`AUDIO_NORMS`).
        features: the feature sets to read.
        feature_norm: how feature sets are normalised (see :mod:`emorec.feature_norm`).

    Yields:
        ``(recording id, arrays)`` as described above.

    Raises:
        DatasetError: no recordings in ``partition``, modalities or feature sets the dataset
            lacks, or a missing, unreadable or mismatching shard.
        ConfigError: an unknown ``audio_norm`` or ``feature_norm``.
    """
    plan = _plan(open_dataset(data), partition, modalities, audio_norm, features, feature_norm)
    for k, (rid, path, expected) in enumerate(zip(plan.recording_ids, plan.paths, plan.frames)):
        parts: dict[str, list[np.ndarray]] = {}
        chunks = without_autotune_thread(_recording_frames(plan, path))
        if plan.video:
            chunks = chunks.map(
                lambda c: {**c, FL_FACE: _decode_faces(c[FL_FACE], plan.face_size)}
            )
        try:
            for chunk in chunks.as_numpy_iterator():
                for key, value in chunk.items():
                    if key != "recording_id":
                        parts.setdefault(key, []).append(value)
        except tf.errors.OpError as exc:
            raise DatasetError(f"{path}: cannot read shard ({exc.message})") from exc
        if not parts:
            raise DatasetError(f"{path}: shard holds no windows")
        stitched = {k: np.concatenate(v) for k, v in parts.items()}
        index = stitched.pop("frame", np.zeros(0, np.int64))
        if not np.array_equal(index, np.arange(expected)):
            raise DatasetError(
                f"{path}: holds {len(index)} valid frames, manifest says {expected} (frames 0..N-1 expected)"
            )
        arrays = {"mask": stitched.pop(FL_VALID).astype(np.float32)}
        if plan.audio:
            arrays["audio"] = stitched[FL_AUDIO]
            if plan.audio_stats is not None:
                mean, std = plan.audio_stats[k]
                arrays["audio"] = ((arrays["audio"] - mean) / std).astype(np.float32)
        if plan.video:
            arrays["video"] = stitched[FL_FACE]
            arrays["landmarks"] = stitched[FL_LANDMARKS]
            arrays["face_found"] = stitched[FL_FACE_FOUND].astype(np.float32)
        norms = {name: (means[k], scales[k]) for name, means, scales in plan.feature_stats}
        for name, _ in plan.feature_dims:
            values = stitched[feature_key(name)]
            if name in norms:
                values = (values - norms[name][0]) / norms[name][1]
            arrays[feature_key(name)] = values.astype(np.float32)
        if plan.has_labels:
            arrays["labels"] = stitched["labels"]
        yield rid, arrays
