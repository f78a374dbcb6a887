"""tf.data pipelines for the branches of Pini et al. (EmotiW 2017), read from a clip dataset.

Four datasets, each yielding dicts of named tensors with ``label (B,)`` int32
(the class index, -1 for an unlabelled clip) and ``clip_id (B,)`` string:

- :func:`frame_dataset` (CNN / FaceNet branch): single faces with their clip's
  label, ``face (B, S, S, 3)`` float32 in [0, 1] (S = 160), ``face_found (B,)``,
  ``frame (B,)``. Training uses only frames where a face was found
  (``require_face`` defaults to ``training``): the paper trains on every
  extracted face. Evaluation gives every frame of every clip, so that
  averaging a clip's frame predictions covers every clip.
- :func:`slice_dataset` (C3D branch): 16-frame slices resized to 112 x 112,
  ``slice (B, 16, 112, 112, 3)`` float32 in [0, 1], ``face_found (B, 16)``,
  ``start (B,)``. Evaluation: consecutive slices from frame 0 every 16
  frames, plus one ending at the clip's last frame when 16 does not divide
  the length (every frame is in a slice; a 50-frame clip gives starts 0, 16,
  32, 34). Training: the same number of slices per clip, ``ceil(N / 16)``,
  each at a uniformly random start. A clip shorter than 16 frames gives one
  slice stretched over it: frame ``floor(k N / 16)`` for ``k = 0 .. 15``.
- :func:`audio_dataset` (SoundNet branch): 1 s of sound, ``audio (B, 22050)``
  float32 in [-256, 256], ``audio_mask (B,)`` (0 for a clip without sound,
  whose audio is zeros) and ``audio_start (B,)``. Evaluation takes the middle
  second (start ``max(M - L, 0) // 2`` of ``M`` samples), training a
  uniformly random second, as §3.4 and §4.2 say. Sound shorter than 1 s is
  zero-padded at its end. Scaling ``"fixed"`` (default) multiplies the
  decoded full-scale [-1, 1] waveform by 256, as SoundNet's TensorFlow port
  feeds its network; ``"peak"`` scales each clip so its largest absolute
  sample is 256, the paper's "scaled to be in the range [-256, 256]" read
  literally.
- :func:`fusion_dataset` (fusion network, one row per clip): ``faces
  (B, 48, S, S, 3)`` with ``frame_index (B, 48)`` and ``face_found (B, 48)``,
  ``slices (B, 32, 16, 112, 112, 3)`` with ``slice_start (B, 32)``, ``audio
  (B, 22050)`` and ``audio_mask (B,)``, ``num_frames (B,)``. Frame ``i`` of
  48 is ``floor((i + u) N / 48)`` and slice start ``j`` of 32 is
  ``floor((j + u) (R + 1) / 32)`` with ``R = max(N - 16, 0)``: the clip cut
  into equal segments, one sample per segment, ``u = 0.5`` (the segment's
  middle) at evaluation and uniform in [0, 1) per segment in training. Clips
  shorter than 48 frames (or 32 + 15) repeat frames (starts). The images
  are large (the slices alone are 77 MB per clip in float32): use small
  batches as the paper did, or ``include`` to leave out what a frozen
  branch does not need.

Training augmentation (``augment`` defaults to ``training``) is
:mod:`emorec.clips.augment`'s random flip, crop and zoom: one draw per face
(frame and fusion datasets) and one per slice, shared by its 16 frames so the
motion is not distorted. Audio is never augmented. Given ``seed``, shuffles,
random slices and augmentation are reproducible; every pass over the data
(epoch) draws anew. ``deterministic=None`` means True when a seed is given.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from emorec.clips.augment import crop_zoom_flip, draw_crop_params, identity_params
from emorec.clips.folds import ClipSelection, as_selection
from emorec.clips.manifest import ClipManifest, read_clip_manifest
from emorec.clips.schema import (
    CTX_AUDIO,
    CTX_CLIP_ID,
    CTX_HAS_AUDIO,
    CTX_LABEL,
    FL_FACE,
    FL_FACE_FOUND,
    ClipRecord,
    decode_clip,
    parse_clip_tensors,
)
from emorec.errors import ConfigError
from emorec.schema import PARTITIONS, SchemaError
from emorec.tfdata_options import without_autotune_thread

SLICE_FRAMES = 16
SLICE_SIZE = 112  # C3D's input side
FUSION_FRAMES = 48
FUSION_SLICES = 32
AUDIO_SECONDS = 1.0
SOUNDNET_RANGE = 256.0
AUDIO_SCALES = ("fixed", "peak", "none")
FUSION_PARTS = ("faces", "slices", "audio")
_MAX_INTERLEAVE = 16


@dataclasses.dataclass(frozen=True)
class _ClipPlan:
    """What a pipeline reads: the shards holding a partition's (or a selection's) clips."""

    data_dir: Path
    partition: str
    paths: tuple[str, ...]
    classes: tuple[str, ...]
    face_size: int
    sample_rate: int
    num_clips: int
    clip_ids: tuple[str, ...] | None = None  # read only these clips of the shards (a selection)


def _manifest(data_dir) -> ClipManifest:
    try:
        return read_clip_manifest(data_dir)
    except (FileNotFoundError, SchemaError) as exc:
        raise ConfigError(str(exc)) from exc


def _plan(data_dir, partition: str | ClipSelection) -> _ClipPlan:
    data_dir = Path(data_dir)
    manifest = _manifest(data_dir)
    if not isinstance(partition, ClipSelection) and partition not in PARTITIONS:
        raise ConfigError(f"{data_dir}: unknown partition {partition!r} (expected one of {', '.join(PARTITIONS)})")
    selection = as_selection(partition)
    wanted = selection.clip_ids
    shards = [s for p in selection.partitions for s in manifest.shards_for(p)
              if s.clip_ids and (wanted is None or not wanted.isdisjoint(s.clip_ids))]
    if not shards:
        raise ConfigError(f"{data_dir}: clip dataset has no clips in partition {selection.name!r}")
    paths = []
    for shard in shards:
        path = data_dir / shard.path
        if not path.is_file():
            raise ConfigError(f"{path}: shard listed in {data_dir / 'clips_manifest.json'} is missing")
        paths.append(str(path))
    chosen = [c for s in shards for c in s.clip_ids if wanted is None or c in wanted]
    return _ClipPlan(
        data_dir=data_dir,
        partition=selection.name,
        paths=tuple(paths),
        classes=tuple(manifest.classes),
        face_size=int(manifest.options["face_size"]),
        sample_rate=int(manifest.options["sample_rate"]),
        num_clips=len(chosen),
        clip_ids=None if wanted is None else tuple(sorted(chosen)),
    )


def clip_classes(data_dir) -> list[str]:
    """The dataset's class names, in label-index order.

    Args:
        data_dir: the clip dataset directory.

    Returns:
        The class names of its manifest.

    Raises:
        ConfigError: no readable clip manifest in ``data_dir``.
    """
    return list(_manifest(data_dir).classes)


def class_counts(data_dir, partition: str = "train") -> np.ndarray:
    """Labelled clips per class ``(K,)`` int64 in one partition (e.g. for weighted losses).

    Args:
        data_dir: the clip dataset directory.
        partition: the partition to count.

    Returns:
        int64 ``(K,)`` counts in class order; unlabelled clips are not counted.

    Raises:
        ConfigError: no readable clip manifest in ``data_dir``.
    """
    return np.asarray(_manifest(data_dir).class_counts(partition), np.int64)


def iter_clip_records(data_dir, partition: str | ClipSelection) -> Iterator[ClipRecord]:
    """Yield the partition's (or selection's) clips as :class:`ClipRecord` (NumPy, JPEGs encoded), in stored order.

    Args:
        data_dir: the clip dataset directory.
        partition: a partition name, or a :class:`ClipSelection` (partitions and clip ids).

    Yields:
        The decoded records of the selected clips.

    Raises:
        ConfigError: no readable manifest, an unknown partition, no clips selected, or a
            missing shard file.
    """
    plan = _plan(data_dir, partition)
    keep = None if plan.clip_ids is None else set(plan.clip_ids)
    for path in plan.paths:
        for serialized in tf.data.TFRecordDataset(path).as_numpy_iterator():
            record = decode_clip(serialized)
            if keep is None or record.clip_id in keep:
                yield record


# --- index sampling (pure functions) -----------------------------------------------------


def eval_slice_starts(num_frames, slice_frames: int = SLICE_FRAMES):
    """Starts of the evaluation slices: every ``slice_frames`` from 0, plus one ending at the last frame.

    Args:
        num_frames: frames in the clip (scalar tensor or int).
        slice_frames: frames per slice.

    Returns:
        int32 ``(S,)`` tensor of start frames; ``[0]`` for a clip shorter than a slice.

    >>> eval_slice_starts(tf.constant(50)).numpy().tolist()
    [0, 16, 32, 34]
    >>> eval_slice_starts(tf.constant(10)).numpy().tolist()
    [0]
    """
    n = tf.cast(num_frames, tf.int32)
    last = tf.maximum(n - slice_frames, 0)
    regular = tf.range(0, last + 1, slice_frames)
    tail = tf.cond(regular[-1] < last, lambda: tf.reshape(last, [1]), lambda: tf.zeros([0], tf.int32))
    return tf.concat([regular, tail], 0)


def random_slice_starts(num_frames, seed, slice_frames: int = SLICE_FRAMES):
    """``ceil(N / slice_frames)`` (at least 1) training slice starts, uniform in ``[0, max(N - L, 0)]``.

    Args:
        num_frames: frames in the clip ``N`` (scalar tensor or int).
        seed: the stateless random seed, shape ``(2,)``.
        slice_frames: frames per slice ``L``.

    Returns:
        int32 ``(ceil(N / L),)`` tensor (length at least 1), the same for the same seed.

    >>> random_slice_starts(tf.constant(50), tf.constant([1, 2])).shape.as_list()
    [4]
    """
    n = tf.cast(num_frames, tf.int32)
    count = tf.maximum((n + slice_frames - 1) // slice_frames, 1)
    return tf.random.stateless_uniform(
        [count], seed=seed, minval=0, maxval=tf.maximum(n - slice_frames, 0) + 1, dtype=tf.int32
    )


def slice_indices(starts, num_frames, slice_frames: int = SLICE_FRAMES):
    """Frame indices ``(K, L)`` of slices at ``starts``; a clip shorter than L is stretched over L.

    Args:
        starts: ``(K,)`` slice start frames.
        num_frames: frames in the clip ``N``.
        slice_frames: frames per slice ``L``.

    Returns:
        int32 ``(K, L)``: ``start + 0 .. L-1``, or when ``N < L`` the indices ``floor(j N / L)``
        for every slice.

    >>> slice_indices(tf.constant([2]), tf.constant(20), 4).numpy().tolist()
    [[2, 3, 4, 5]]
    >>> slice_indices(tf.constant([0]), tf.constant(3), 4).numpy().tolist()
    [[0, 0, 1, 2]]
    """
    n = tf.cast(num_frames, tf.int32)
    steps = tf.range(slice_frames, dtype=tf.int32)
    regular = tf.cast(starts, tf.int32)[:, None] + steps[None, :]
    stretched = tf.broadcast_to((steps * n // slice_frames)[None, :], tf.shape(regular))
    return tf.where(n >= slice_frames, regular, stretched)


def spread_indices(num_items, count: int, offsets=None):
    """``count`` indices over ``0 .. num_items - 1``, one per equal segment: ``floor((i + u_i) N / count)``.

    ``offsets`` ``u (count,)`` in [0, 1) place each index in its segment
    (default 0.5, the middle); ``N < count`` repeats indices.

    Args:
        num_items: ``N``, the number of items to pick from (scalar tensor or int).
        count: how many indices to return.
        offsets: ``(count,)`` positions in [0, 1) within the segments, or None for 0.5.

    Returns:
        int32 ``(count,)`` indices, non-decreasing, at most ``N - 1``.

    >>> spread_indices(tf.constant(4), 8).numpy().tolist()
    [0, 0, 1, 1, 2, 2, 3, 3]
    >>> spread_indices(tf.constant(100), 4).numpy().tolist()
    [12, 37, 62, 87]
    """
    n = tf.cast(num_items, tf.float32)
    u = tf.fill([count], 0.5) if offsets is None else tf.cast(offsets, tf.float32)
    position = (tf.range(count, dtype=tf.float32) + u) * n / count
    return tf.minimum(tf.cast(tf.floor(position), tf.int32), tf.cast(num_items, tf.int32) - 1)


def audio_window(audio, length: int, start):
    """``audio[start : start + length]``, zero-padded at the end to ``length`` samples.

    Args:
        audio: ``(samples,)`` waveform tensor.
        length: samples wanted.
        start: first sample.

    Returns:
        ``(length,)`` tensor of ``audio``'s dtype.

    >>> audio_window(tf.constant([1.0, 2.0, 3.0]), 5, 1).numpy().tolist()
    [2.0, 3.0, 0.0, 0.0, 0.0]
    """
    piece = audio[start : start + length]
    return tf.pad(piece, [[0, length - tf.shape(piece)[0]]])


def scale_audio(audio, mode: str, peak=None):
    """Scale full-scale audio to SoundNet's [-256, 256]: ``"fixed"`` (x 256) or ``"peak"`` (largest |x| -> 256).

    ``peak`` is the largest absolute sample of the whole clip (default: of ``audio``).
    ``"none"`` leaves the decoded [-1, 1] waveform as it is, for models that scale it
    themselves (:class:`emorec.models.soundnet.WaveformScale`).

    Args:
        audio: waveform tensor in [-1, 1].
        mode: one of :data:`AUDIO_SCALES` (``fixed``, ``peak``, ``none``).
        peak: the clip's largest absolute sample for ``peak`` (None: that of ``audio``).

    Returns:
        The scaled tensor (``fixed`` clipped to [-256, 256]; ``peak`` all zeros for silence).

    Raises:
        ConfigError: an unknown ``mode``.

    >>> scale_audio(tf.constant([0.5, -0.25]), "fixed").numpy().tolist()
    [128.0, -64.0]
    >>> scale_audio(tf.constant([0.5, -0.25]), "peak").numpy().tolist()
    [256.0, -128.0]
    """
    if mode not in AUDIO_SCALES:
        raise ConfigError(f"unknown audio scaling {mode!r} (expected one of {', '.join(AUDIO_SCALES)})")
    if mode == "none":
        return audio
    if mode == "fixed":
        return tf.clip_by_value(audio * SOUNDNET_RANGE, -SOUNDNET_RANGE, SOUNDNET_RANGE)
    peak = tf.reduce_max(tf.abs(audio)) if peak is None else peak
    return tf.math.divide_no_nan(audio * SOUNDNET_RANGE, tf.cast(peak, tf.float32))


# --- reading clips ---------------------------------------------------------------------------


def _sub_seed(seed: int | None, k: int) -> int | None:
    """Independent-looking seeds for the pipeline's random stages, derived from one seed."""
    return None if seed is None else (int(seed) * 1_000_003 + 7919 * (k + 1)) % (2**31 - 1)


def _with_seeds(ds: tf.data.Dataset, seed: int | None) -> tf.data.Dataset:
    """Pair each element with a fresh stateless seed ``(2,)``; new draws on every pass."""
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip(ds, seeds)


def _parse(serialized) -> dict:
    raw = parse_clip_tensors(serialized)
    return {
        "clip_id": raw[CTX_CLIP_ID],
        "label": tf.cast(raw[CTX_LABEL], tf.int32),
        "face": raw[FL_FACE],
        "face_found": tf.cast(raw[FL_FACE_FOUND], tf.float32),
        "audio": raw[CTX_AUDIO],
        "audio_mask": tf.cast(raw[CTX_HAS_AUDIO], tf.float32),
    }


def _clips(plan: _ClipPlan, training: bool, clip_buffer: int, seed, parallel, deterministic):
    """The partition's parsed clips: in stored order, or shard- and clip-shuffled for training."""
    files = tf.data.Dataset.from_tensor_slices(list(plan.paths))
    if training:
        files = files.shuffle(len(plan.paths), seed=_sub_seed(seed, 0), reshuffle_each_iteration=True)
        ds = files.interleave(
            tf.data.TFRecordDataset, cycle_length=min(len(plan.paths), _MAX_INTERLEAVE), block_length=1,
            num_parallel_calls=parallel, deterministic=deterministic,
        )
    else:
        ds = files.flat_map(tf.data.TFRecordDataset)
    ds = ds.map(_parse, num_parallel_calls=parallel, deterministic=deterministic)
    if plan.clip_ids is not None:
        keep = tf.constant(plan.clip_ids)
        ds = ds.filter(lambda clip: tf.reduce_any(tf.equal(clip["clip_id"], keep)))
    if training:
        ds = ds.shuffle(clip_buffer, seed=_sub_seed(seed, 1), reshuffle_each_iteration=True)
    return ds


def _decode_faces(jpegs, size: int):
    """JPEG strings ``(N,)`` -> uint8 ``(N, size, size, 3)``."""
    spec = tf.TensorSpec([size, size, 3], tf.uint8)
    return tf.map_fn(
        lambda jpeg: tf.ensure_shape(tf.io.decode_jpeg(jpeg, channels=3), spec.shape),
        jpegs,
        fn_output_signature=spec,
    )


def _crop_params(augment: bool, seed, count):
    return draw_crop_params(seed, count) if augment else identity_params(count)


def _check(plan: _ClipPlan, batch_size: int, buffers: Sequence[int]) -> None:
    if batch_size < 1:
        raise ConfigError(f"{plan.data_dir}: batch_size must be at least 1, got {batch_size}")
    if min(buffers) < 1:
        raise ConfigError(f"{plan.data_dir}: shuffle buffers must be at least 1, got {list(buffers)}")


def _finish(ds, batch_size, drop_remainder, training):
    drop = training if drop_remainder is None else drop_remainder
    return without_autotune_thread(ds.batch(batch_size, drop_remainder=drop).prefetch(tf.data.AUTOTUNE))


# --- (a) single faces -----------------------------------------------------------------------


def frame_dataset(
    data_dir: str | os.PathLike,
    partition: str | ClipSelection,
    *,
    batch_size: int,
    training: bool = False,
    augment: bool | None = None,
    require_face: bool | None = None,
    image_size: int | None = None,
    shuffle_buffer: int = 2048,
    clip_buffer: int = 64,
    seed: int | None = None,
    repeat: bool = False,
    drop_remainder: bool | None = None,
    num_parallel_calls: int = tf.data.AUTOTUNE,
    deterministic: bool | None = None,
) -> tf.data.Dataset:
    """Single face crops with their clip's label, for the frame (FaceNet) branch.

    Args:
        data_dir: a clip dataset directory.
        partition: ``train``, ``dev`` or ``test``, or a :class:`~emorec.clips.folds.ClipSelection`.
        batch_size: faces per batch.
        training: shuffle clips and frames.
        augment: random flip, crop and zoom (default ``training``).
        require_face: drop frames without a found face (default ``training``).
        image_size: output side (default the stored 160).
        shuffle_buffer: frames in the frame shuffle buffer.
        clip_buffer: clips in the clip shuffle buffer.
        seed: makes shuffles and augmentation reproducible.
        repeat: repeat forever.
        drop_remainder: drop a last short batch (default ``training``).
        num_parallel_calls: parallelism of the maps.
        deterministic: element order of parallel maps (default True when seeded).

    Returns:
        Batches ``{face (B, S, S, 3) float32 in [0, 1], face_found (B,), frame (B,) int32,
        label (B,) int32, clip_id (B,) string}``.

    Raises:
        ConfigError: no clip dataset, unknown or empty partition, bad sizes.
    """
    plan = _plan(data_dir, partition)
    _check(plan, batch_size, [shuffle_buffer, clip_buffer])
    augment = training if augment is None else augment
    require_face = training if require_face is None else require_face
    deterministic = True if deterministic is None and seed is not None else deterministic
    size = int(image_size or plan.face_size)
    ds = _clips(plan, training, clip_buffer, seed, num_parallel_calls, deterministic)

    def frames(clip):
        n = tf.shape(clip["face"])[0]
        return tf.data.Dataset.from_tensor_slices({
            "face": clip["face"],
            "face_found": clip["face_found"],
            "frame": tf.range(n, dtype=tf.int32),
            "label": tf.fill([n], clip["label"]),
            "clip_id": tf.fill([n], clip["clip_id"]),
        })

    ds = ds.flat_map(frames)
    if require_face:
        ds = ds.filter(lambda f: f["face_found"] > 0)
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=_sub_seed(seed, 2), reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    def finish(frame, seed_pair):
        image = tf.ensure_shape(tf.io.decode_jpeg(frame["face"], channels=3), [plan.face_size, plan.face_size, 3])
        face = crop_zoom_flip(image[None], _crop_params(augment, seed_pair, 1), size)[0] / 255.0
        return {**frame, "face": face}

    ds = _with_seeds(ds, _sub_seed(seed, 3)).map(
        finish, num_parallel_calls=num_parallel_calls, deterministic=deterministic
    )
    return _finish(ds, batch_size, drop_remainder, training)


# --- (b) 16-frame slices ------------------------------------------------------------------------


def slice_dataset(
    data_dir: str | os.PathLike,
    partition: str | ClipSelection,
    *,
    batch_size: int,
    slice_frames: int = SLICE_FRAMES,
    image_size: int = SLICE_SIZE,
    training: bool = False,
    augment: bool | None = None,
    shuffle_buffer: int = 256,
    clip_buffer: int = 64,
    seed: int | None = None,
    repeat: bool = False,
    drop_remainder: bool | None = None,
    num_parallel_calls: int = tf.data.AUTOTUNE,
    deterministic: bool | None = None,
) -> tf.data.Dataset:
    """Slices of consecutive faces with their clip's label, for the C3D branch (see the module docstring).

    Args:
        data_dir: a clip dataset directory.
        partition: ``train``, ``dev`` or ``test``, or a :class:`~emorec.clips.folds.ClipSelection`.
        batch_size: slices per batch.
        slice_frames: frames per slice (16).
        image_size: output side (112).
        training: random slice starts, shuffled clips and slices.
        augment: random flip, crop and zoom, one draw per slice (default ``training``).
        shuffle_buffer: slices in the slice shuffle buffer (held as JPEGs).
        clip_buffer: clips in the clip shuffle buffer.
        seed: makes shuffles, starts and augmentation reproducible.
        repeat: repeat forever.
        drop_remainder: drop a last short batch (default ``training``).
        num_parallel_calls: parallelism of the maps.
        deterministic: element order of parallel maps (default True when seeded).

    Returns:
        Batches ``{slice (B, L, s, s, 3) float32 in [0, 1], face_found (B, L), start (B,) int32,
        label (B,) int32, clip_id (B,) string}``.

    Raises:
        ConfigError: no clip dataset, unknown or empty partition, bad sizes.
    """
    plan = _plan(data_dir, partition)
    _check(plan, batch_size, [shuffle_buffer, clip_buffer, slice_frames])
    augment = training if augment is None else augment
    deterministic = True if deterministic is None and seed is not None else deterministic
    ds = _with_seeds(_clips(plan, training, clip_buffer, seed, num_parallel_calls, deterministic),
                     _sub_seed(seed, 4))

    def slices(clip, seed_pair):
        n = tf.shape(clip["face"])[0]
        if training:
            starts = random_slice_starts(n, seed_pair, slice_frames)
        else:
            starts = eval_slice_starts(n, slice_frames)
        index = slice_indices(starts, n, slice_frames)
        count = tf.shape(starts)[0]
        return tf.data.Dataset.from_tensor_slices({
            "slice": tf.gather(clip["face"], index),
            "face_found": tf.gather(clip["face_found"], index),
            "start": starts,
            "label": tf.fill([count], clip["label"]),
            "clip_id": tf.fill([count], clip["clip_id"]),
        })

    ds = ds.flat_map(slices)
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=_sub_seed(seed, 5), reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    def finish(item, seed_pair):
        images = _decode_faces(item["slice"], plan.face_size)
        one = _crop_params(augment, seed_pair, 1)
        params = {k: tf.repeat(v, slice_frames, axis=0) for k, v in one.items()}
        frames = crop_zoom_flip(images, params, image_size) / 255.0
        return {**item, "slice": tf.ensure_shape(frames, [slice_frames, image_size, image_size, 3])}

    ds = _with_seeds(ds, _sub_seed(seed, 6)).map(
        finish, num_parallel_calls=num_parallel_calls, deterministic=deterministic
    )
    return _finish(ds, batch_size, drop_remainder, training)


# --- (c) one second of sound ----------------------------------------------------------------------


def _audio_part(clip, length: int, random_start: bool, scale: str, seed_pair):
    """The clip's audio window (scaled), its mask and start."""
    audio = clip["audio"]
    spare = tf.maximum(tf.shape(audio)[0] - length, 0)
    if random_start:
        start = tf.random.stateless_uniform([], seed=seed_pair, minval=0, maxval=spare + 1, dtype=tf.int32)
    else:
        start = spare // 2
    peak = tf.reduce_max(tf.concat([tf.abs(audio), [0.0]], 0))  # 0 for a clip without sound
    window = scale_audio(audio_window(audio, length, start), scale, peak)
    return tf.ensure_shape(window, [length]), start


def audio_dataset(
    data_dir: str | os.PathLike,
    partition: str | ClipSelection,
    *,
    batch_size: int,
    seconds: float = AUDIO_SECONDS,
    training: bool = False,
    random_start: bool | None = None,
    scale: str = "fixed",
    require_audio: bool = False,
    clip_buffer: int = 256,
    seed: int | None = None,
    repeat: bool = False,
    drop_remainder: bool | None = None,
    num_parallel_calls: int = tf.data.AUTOTUNE,
    deterministic: bool | None = None,
) -> tf.data.Dataset:
    """One window of each clip's sound, for the SoundNet branch (see the module docstring).

    Args:
        data_dir: a clip dataset directory.
        partition: ``train``, ``dev`` or ``test``, or a :class:`~emorec.clips.folds.ClipSelection`.
        batch_size: clips per batch.
        seconds: window length (1 s = 22 050 samples).
        training: shuffle clips.
        random_start: a random window instead of the middle one (default ``training``).
        scale: ``"fixed"`` (x 256), ``"peak"`` (per clip, largest |sample| -> 256) or ``"none"``.
        require_audio: leave out clips without a sound track (training on sound).
        clip_buffer: clips in the shuffle buffer.
        seed: makes shuffles and windows reproducible.
        repeat: repeat forever.
        drop_remainder: drop a last short batch (default ``training``).
        num_parallel_calls: parallelism of the maps.
        deterministic: element order of parallel maps (default True when seeded).

    Returns:
        Batches ``{audio (B, L) float32 in [-256, 256], audio_mask (B,), audio_start (B,) int32,
        label (B,) int32, clip_id (B,) string}``.

    Raises:
        ConfigError: no clip dataset, unknown or empty partition, bad sizes or scaling.
    """
    plan = _plan(data_dir, partition)
    _check(plan, batch_size, [clip_buffer])
    scale_audio(tf.zeros([1]), scale)  # validates the mode before building the graph
    length = int(round(seconds * plan.sample_rate))
    if length < 1:
        raise ConfigError(f"{plan.data_dir}: audio window of {seconds} s is empty")
    random_start = training if random_start is None else random_start
    deterministic = True if deterministic is None and seed is not None else deterministic
    ds = _clips(plan, training, clip_buffer, seed, num_parallel_calls, deterministic)
    if require_audio:
        ds = ds.filter(lambda clip: clip["audio_mask"] > 0)
    if repeat:
        ds = ds.repeat()

    def finish(clip, seed_pair):
        window, start = _audio_part(clip, length, random_start, scale, seed_pair)
        return {
            "audio": window,
            "audio_mask": clip["audio_mask"],
            "audio_start": start,
            "label": clip["label"],
            "clip_id": clip["clip_id"],
        }

    ds = _with_seeds(ds, _sub_seed(seed, 7)).map(
        finish, num_parallel_calls=num_parallel_calls, deterministic=deterministic
    )
    return _finish(ds, batch_size, drop_remainder, training)


# --- (d) whole clips for the fusion network ------------------------------------------------------


def fusion_dataset(
    data_dir: str | os.PathLike,
    partition: str | ClipSelection,
    *,
    batch_size: int,
    num_frames: int = FUSION_FRAMES,
    num_slices: int = FUSION_SLICES,
    slice_frames: int = SLICE_FRAMES,
    face_size: int | None = None,
    slice_size: int = SLICE_SIZE,
    audio_seconds: float = AUDIO_SECONDS,
    audio_scale: str = "fixed",
    include: Sequence[str] = FUSION_PARTS,
    training: bool = False,
    augment: bool | None = None,
    clip_buffer: int = 16,
    seed: int | None = None,
    repeat: bool = False,
    drop_remainder: bool | None = None,
    num_parallel_calls: int = tf.data.AUTOTUNE,
    deterministic: bool | None = None,
) -> tf.data.Dataset:
    """Per clip: 48 faces, 32 slices and 1 s of sound, for the fusion network (see the module docstring).

    Args:
        data_dir: a clip dataset directory.
        partition: ``train``, ``dev`` or ``test``, or a :class:`~emorec.clips.folds.ClipSelection`.
        batch_size: clips per batch.
        num_frames: faces per clip (48).
        num_slices: slices per clip (32).
        slice_frames: frames per slice (16).
        face_size: side of the faces (default the stored 160).
        slice_size: side of the slices' frames (112).
        audio_seconds: sound window (1 s).
        audio_scale: ``"fixed"``, ``"peak"`` or ``"none"`` (see :func:`scale_audio`).
        include: which of ``faces``, ``slices``, ``audio`` to materialise; the
            indices (``frame_index``, ``slice_start``), ``face_found``, ``audio_mask``,
            ``num_frames``, ``label`` and ``clip_id`` are always there.
        training: random positions within segments, a random sound window, shuffled clips.
        augment: random flip, crop and zoom per face and per slice (default ``training``).
        clip_buffer: clips in the shuffle buffer.
        seed: makes shuffles, sampling and augmentation reproducible.
        repeat: repeat forever.
        drop_remainder: drop a last short batch (default ``training``).
        num_parallel_calls: parallelism of the maps.
        deterministic: element order of parallel maps (default True when seeded).

    Returns:
        Batches of ``faces (B, F, S, S, 3)``, ``face_found (B, F)``, ``frame_index (B, F)``,
        ``slices (B, K, L, s, s, 3)``, ``slice_start (B, K)``, ``audio (B, A)``,
        ``audio_mask (B,)``, ``num_frames (B,)``, ``label (B,)``, ``clip_id (B,)``.

    Raises:
        ConfigError: no clip dataset, unknown or empty partition, bad sizes, unknown ``include``.
    """
    plan = _plan(data_dir, partition)
    _check(plan, batch_size, [clip_buffer, num_frames, num_slices, slice_frames])
    unknown = [p for p in include if p not in FUSION_PARTS]
    if unknown:
        raise ConfigError(f"{plan.data_dir}: unknown fusion parts {unknown} (expected some of {', '.join(FUSION_PARTS)})")
    scale_audio(tf.zeros([1]), audio_scale)
    include = set(include)
    augment = training if augment is None else augment
    deterministic = True if deterministic is None and seed is not None else deterministic
    size = int(face_size or plan.face_size)
    length = int(round(audio_seconds * plan.sample_rate))
    ds = _clips(plan, training, clip_buffer, seed, num_parallel_calls, deterministic)
    if repeat:
        ds = ds.repeat()

    def finish(clip, seed_pair):
        seeds = tf.random.split(tf.cast(seed_pair, tf.int64), 5)
        n = tf.shape(clip["face"])[0]
        frame_offsets = tf.random.stateless_uniform([num_frames], seed=seeds[0]) if training else None
        slice_offsets = tf.random.stateless_uniform([num_slices], seed=seeds[1]) if training else None
        frame_index = spread_indices(n, num_frames, frame_offsets)
        slice_start = spread_indices(tf.maximum(n - slice_frames, 0) + 1, num_slices, slice_offsets)
        out = {
            "frame_index": frame_index,
            "face_found": tf.gather(clip["face_found"], frame_index),
            "slice_start": slice_start,
            "audio_mask": clip["audio_mask"],
            "num_frames": n,
            "label": clip["label"],
            "clip_id": clip["clip_id"],
        }
        if "faces" in include or "slices" in include:
            images = _decode_faces(clip["face"], plan.face_size)
        if "faces" in include:
            params = _crop_params(augment, seeds[2], num_frames)
            faces = crop_zoom_flip(images, params, size, frame_index) / 255.0
            out["faces"] = tf.ensure_shape(faces, [num_frames, size, size, 3])
        if "slices" in include:
            index = tf.reshape(slice_indices(slice_start, n, slice_frames), [-1])
            one = _crop_params(augment, seeds[3], num_slices)
            params = {k: tf.repeat(v, slice_frames, axis=0) for k, v in one.items()}
            frames = crop_zoom_flip(images, params, slice_size, index) / 255.0
            out["slices"] = tf.reshape(frames, [num_slices, slice_frames, slice_size, slice_size, 3])
        if "audio" in include:
            out["audio"], _ = _audio_part(clip, length, training, audio_scale, seeds[4])
        return out

    ds = _with_seeds(ds, _sub_seed(seed, 8)).map(
        finish, num_parallel_calls=num_parallel_calls, deterministic=deterministic
    )
    return _finish(ds, batch_size, drop_remainder, training)
