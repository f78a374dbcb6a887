"""The emorec TFRecord schema: the one place that knows how a window is stored.

One ``tf.train.SequenceExample`` holds one window of consecutive 40 ms frames of
one recording. The context carries where the window comes from; the feature
lists carry one entry per frame. Audio-only and video-only datasets leave the
other modality's lists out, and unlabelled partitions (RECOLA's test set) leave
the label lists out and say so with ``has_labels = 0``.

Frame ``i`` of a recording covers the audio samples ``[640 i, 640 (i + 1))``,
i.e. the time span ``[0.04 i, 0.04 (i + 1))``; its face is the video frame
nearest to ``0.04 i``. Which label time is paired with it is a build option
(see :data:`LABEL_ALIGNMENTS`) recorded in the dataset manifest.

Padding frames (after the end of a recording, to fill its last window) have
``valid = 0``, zero audio, a black face, ``face_found = 0`` and zero labels.

Feature sets (Chen & Jin's ``feature_lstm`` inputs): a dataset may also hold
named sets of per-frame float features, each stored as the feature list
``feature/<name>`` (``D`` floats per frame; zeros on padding frames) and read
back under the batch key ``features_<name>``. Their names and dimensions are
listed in ``manifest.json`` (``feature_sets``), so records without them read
exactly as before; a dataset may hold feature sets with or without audio and
faces.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

import numpy as np

from emorec.errors import DatasetError

SCHEMA_VERSION = 1

SAMPLE_RATE = 16_000
FRAME_PERIOD = 0.04
FRAME_SAMPLES = 640  # SAMPLE_RATE * FRAME_PERIOD
NUM_LANDMARKS = 5
DEFAULT_FACE_SIZE = 96

PARTITIONS = ("train", "dev", "test")
MODALITIES = ("audio", "video")

# "end": the original code pairs frame [0.04 i, 0.04 (i + 1)) with the label at
# its end time 0.04 (i + 1). "start": End2You pairs it with the label at 0.04 i.
LABEL_ALIGNMENTS = ("end", "start")
DEFAULT_LABEL_ALIGNMENT = "end"

# "none": the raw waveform, as Tzirakis et al.'s release fed it; "recording": zero mean and unit
# variance per recording, as Nguyen et al. (and the Tzirakis paper text) describe.
AUDIO_NORMS = ("none", "recording")
DEFAULT_AUDIO_NORM = "none"

# Context feature names.
CTX_SCHEMA_VERSION = "schema_version"
CTX_RECORDING_ID = "recording_id"
CTX_SUBJECT_ID = "subject_id"
CTX_PARTITION = "partition"
CTX_START_FRAME = "start_frame"
CTX_NUM_FRAMES = "num_frames"
CTX_NUM_VALID = "num_valid"
CTX_SAMPLE_RATE = "sample_rate"
CTX_FRAME_PERIOD = "frame_period"
CTX_FACE_SIZE = "face_size"
CTX_HAS_AUDIO = "has_audio"
CTX_HAS_VIDEO = "has_video"
CTX_HAS_LABELS = "has_labels"

# Per-frame feature list names.
FL_AUDIO = "audio"
FL_FACE = "face"
FL_FACE_FOUND = "face_found"
FL_LANDMARKS = "landmarks"
FL_AROUSAL = "arousal"
FL_VALENCE = "valence"
FL_VALID = "valid"


class SchemaError(DatasetError):
    """A record or manifest that does not follow this schema version."""


# Feature set NAME is the per-frame list "feature/NAME" and the batch key "features_NAME".
FL_FEATURE_PREFIX = "feature/"
FEATURE_KEY_PREFIX = "features_"
_FEATURE_SET_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def check_feature_set_name(name: str) -> str:
    """``name`` if it can name a feature set (a letter, then letters, digits and ``_``).

    Args:
        name: the candidate name.

    Returns:
        ``name`` unchanged.

    Raises:
        SchemaError: any other name.

    >>> check_feature_set_name("audio_lld")
    'audio_lld'
    """
    if not (isinstance(name, str) and _FEATURE_SET_NAME.fullmatch(name)):
        raise SchemaError(
            f"feature set name {name!r}: must start with a letter and hold only letters, digits and _"
        )
    return name


def feature_list_name(name: str) -> str:
    """The record's per-frame list holding feature set ``name``.

    Args:
        name: a feature set name.

    Returns:
        :data:`FL_FEATURE_PREFIX` followed by ``name``.

    >>> feature_list_name("ECG")
    'feature/ECG'
    """
    return FL_FEATURE_PREFIX + name


def feature_key(name: str) -> str:
    """The batch key (and model input name) of feature set ``name``.

    Args:
        name: a feature set name.

    Returns:
        :data:`FEATURE_KEY_PREFIX` followed by ``name``.

    >>> feature_key("audio_lld")
    'features_audio_lld'
    """
    return FEATURE_KEY_PREFIX + name


def feature_set_of(key: str) -> str | None:
    """The feature set a batch key or model input name stands for, or None for any other key.

    Args:
        key: a batch key or model input name.

    Returns:
        ``key`` less :data:`FEATURE_KEY_PREFIX` when it starts with it, else None.

    >>> feature_set_of("features_ECG"), feature_set_of("audio")
    ('ECG', None)
    """
    return key[len(FEATURE_KEY_PREFIX):] if key.startswith(FEATURE_KEY_PREFIX) else None


@dataclasses.dataclass
class WindowRecord:
    """One window of ``T`` frames as NumPy arrays, ready to serialize.

    ``audio`` is ``(T, 640)`` float32, ``faces`` a list of ``T`` JPEG byte
    strings, ``face_found`` ``(T,)`` int, ``landmarks`` ``(T, 5, 2)`` float32
    in crop pixel coordinates, ``labels`` ``(T, 2)`` float32 as
    ``[arousal, valence]``, ``valid`` ``(T,)`` int (1 = real frame, 0 = padding),
    ``features`` ``{name: (T, D) float32}`` (zeros on padding frames).
    A modality that is absent is ``None``.
    """

    recording_id: str
    subject_id: str
    partition: str
    start_frame: int
    valid: np.ndarray
    audio: np.ndarray | None = None
    faces: list[bytes] | None = None
    face_found: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    labels: np.ndarray | None = None
    features: dict[str, np.ndarray] | None = None
    face_size: int = DEFAULT_FACE_SIZE
    sample_rate: int = SAMPLE_RATE
    frame_period: float = FRAME_PERIOD

    @property
    def num_frames(self) -> int:
        """Number of frames in the window, padding included."""
        return int(len(self.valid))

    def check(self) -> None:
        """Raise :class:`SchemaError` if shapes or values break the schema."""
        t = self.num_frames
        if t == 0:
            raise SchemaError(f"{self.recording_id}: a window needs at least one frame")
        if self.partition not in PARTITIONS:
            raise SchemaError(
                f"{self.recording_id}: unknown partition {self.partition!r} "
                f"(expected one of {', '.join(PARTITIONS)})"
            )
        if self.audio is None and self.faces is None and not self.features:
            raise SchemaError(f"{self.recording_id}: a window needs audio, video or feature sets")
        if self.audio is not None and self.audio.shape != (t, FRAME_SAMPLES):
            raise SchemaError(
                f"{self.recording_id}: audio has shape {self.audio.shape}, "
                f"expected ({t}, {FRAME_SAMPLES})"
            )
        if self.faces is not None:
            for name, arr, shape in (
                ("face_found", self.face_found, (t,)),
                ("landmarks", self.landmarks, (t, NUM_LANDMARKS, 2)),
            ):
                if arr is None or np.shape(arr) != shape:
                    raise SchemaError(
                        f"{self.recording_id}: {name} has shape {np.shape(arr)}, expected {shape}"
                    )
            if len(self.faces) != t:
                raise SchemaError(
                    f"{self.recording_id}: {len(self.faces)} faces for a {t}-frame window"
                )
        if self.labels is not None:
            if self.labels.shape != (t, 2):
                raise SchemaError(
                    f"{self.recording_id}: labels have shape {self.labels.shape}, expected ({t}, 2)"
                )
            if not np.all(np.isfinite(self.labels)):
                raise SchemaError(f"{self.recording_id}: labels contain NaN or inf")
        for name, values in (self.features or {}).items():
            check_feature_set_name(name)
            if np.ndim(values) != 2 or np.shape(values)[0] != t or np.shape(values)[1] < 1:
                raise SchemaError(
                    f"{self.recording_id}: feature set {name} has shape {np.shape(values)}, expected ({t}, D)"
                )
            if not np.all(np.isfinite(values)):
                raise SchemaError(f"{self.recording_id}: feature set {name} contains NaN or inf")


def _floats(values) -> object:
    import tensorflow as tf

    return tf.train.Feature(float_list=tf.train.FloatList(value=np.asarray(values, dtype=np.float32).ravel()))


def _ints(values) -> object:
    import tensorflow as tf

    return tf.train.Feature(int64_list=tf.train.Int64List(value=np.asarray(values, dtype=np.int64).ravel()))


def _bytes(values) -> object:
    import tensorflow as tf

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def encode_window(window: WindowRecord) -> bytes:
    """Serialize a window to a ``tf.train.SequenceExample`` byte string.

    Args:
        window: the window to store; checked first (:meth:`WindowRecord.check`).

    Returns:
        The serialized example (deterministic bytes): the context (schema version, ids,
        partition, start frame, frame counts, sample rate, frame period, face size, modality
        flags) and one feature list per frame-wise array present.

    Raises:
        SchemaError: the window breaks the schema.

    >>> ecg = {"ECG": np.ones((2, 3))}
    >>> w = WindowRecord("r1", "s1", "train", 4, np.array([1, 0]), features=ecg)
    >>> back = decode_window(encode_window(w))
    >>> back.start_frame, back.valid.tolist(), back.features["ECG"].shape, back.audio
    (4, [1, 0], (2, 3), None)
    """
    import tensorflow as tf

    window.check()
    context = {
        CTX_SCHEMA_VERSION: _ints([SCHEMA_VERSION]),
        CTX_RECORDING_ID: _bytes([window.recording_id.encode()]),
        CTX_SUBJECT_ID: _bytes([window.subject_id.encode()]),
        CTX_PARTITION: _bytes([window.partition.encode()]),
        CTX_START_FRAME: _ints([window.start_frame]),
        CTX_NUM_FRAMES: _ints([window.num_frames]),
        CTX_NUM_VALID: _ints([int(np.sum(window.valid))]),
        CTX_SAMPLE_RATE: _ints([window.sample_rate]),
        CTX_FRAME_PERIOD: _floats([window.frame_period]),
        CTX_FACE_SIZE: _ints([window.face_size]),
        CTX_HAS_AUDIO: _ints([window.audio is not None]),
        CTX_HAS_VIDEO: _ints([window.faces is not None]),
        CTX_HAS_LABELS: _ints([window.labels is not None]),
    }
    lists: dict[str, list] = {FL_VALID: [_ints([v]) for v in window.valid]}
    if window.audio is not None:
        audio = np.asarray(window.audio, dtype=np.float32)
        lists[FL_AUDIO] = [_floats(frame) for frame in audio]
    if window.faces is not None:
        lists[FL_FACE] = [_bytes([jpeg]) for jpeg in window.faces]
        lists[FL_FACE_FOUND] = [_ints([v]) for v in window.face_found]
        landmarks = np.asarray(window.landmarks, dtype=np.float32)
        lists[FL_LANDMARKS] = [_floats(points) for points in landmarks]
    if window.labels is not None:
        labels = np.asarray(window.labels, dtype=np.float32)
        lists[FL_AROUSAL] = [_floats([v]) for v in labels[:, 0]]
        lists[FL_VALENCE] = [_floats([v]) for v in labels[:, 1]]
    for name, values in (window.features or {}).items():
        lists[feature_list_name(name)] = [_floats(row) for row in np.asarray(values, dtype=np.float32)]
    example = tf.train.SequenceExample(
        context=tf.train.Features(feature=context),
        feature_lists=tf.train.FeatureLists(
            feature_list={k: tf.train.FeatureList(feature=v) for k, v in lists.items()}
        ),
    )
    # Protobuf writes map entries in a per-process order; sorted output keeps a shard's
    # checksum independent of which process (--jobs) built it.
    return example.SerializeToString(deterministic=True)


def decode_window(serialized: bytes) -> WindowRecord:
    """Parse a serialized window back into NumPy arrays (for tools and tests).

    Args:
        serialized: bytes written by :func:`encode_window`.

    Returns:
        The window, float32 arrays and int64 ``valid``/``face_found``; absent modalities None.

    Raises:
        SchemaError: another schema version, a frame count that disagrees with the context, or
            arrays that break the schema.
    """
    import tensorflow as tf

    example = tf.train.SequenceExample.FromString(serialized)
    ctx = example.context.feature
    version = ctx[CTX_SCHEMA_VERSION].int64_list.value[0] if CTX_SCHEMA_VERSION in ctx else None
    if version != SCHEMA_VERSION:
        raise SchemaError(f"record has schema version {version}, emorec reads {SCHEMA_VERSION}")
    lists = example.feature_lists.feature_list

    def ints(name):
        return np.array([f.int64_list.value[0] for f in lists[name].feature], dtype=np.int64)

    def floats(name, width):
        return np.array(
            [list(f.float_list.value) for f in lists[name].feature], dtype=np.float32
        ).reshape(-1, width)

    has_audio = bool(ctx[CTX_HAS_AUDIO].int64_list.value[0])
    has_video = bool(ctx[CTX_HAS_VIDEO].int64_list.value[0])
    has_labels = bool(ctx[CTX_HAS_LABELS].int64_list.value[0])
    window = WindowRecord(
        recording_id=ctx[CTX_RECORDING_ID].bytes_list.value[0].decode(),
        subject_id=ctx[CTX_SUBJECT_ID].bytes_list.value[0].decode(),
        partition=ctx[CTX_PARTITION].bytes_list.value[0].decode(),
        start_frame=int(ctx[CTX_START_FRAME].int64_list.value[0]),
        valid=ints(FL_VALID),
        face_size=int(ctx[CTX_FACE_SIZE].int64_list.value[0]),
        sample_rate=int(ctx[CTX_SAMPLE_RATE].int64_list.value[0]),
        frame_period=float(ctx[CTX_FRAME_PERIOD].float_list.value[0]),
    )
    if has_audio:
        window.audio = floats(FL_AUDIO, FRAME_SAMPLES)
    if has_video:
        window.faces = [f.bytes_list.value[0] for f in lists[FL_FACE].feature]
        window.face_found = ints(FL_FACE_FOUND)
        window.landmarks = floats(FL_LANDMARKS, NUM_LANDMARKS * 2).reshape(-1, NUM_LANDMARKS, 2)
    if has_labels:
        window.labels = np.stack(
            [floats(FL_AROUSAL, 1)[:, 0], floats(FL_VALENCE, 1)[:, 0]], axis=1
        )
    feature_lists = sorted(k for k in lists if k.startswith(FL_FEATURE_PREFIX))
    if feature_lists:
        window.features = {
            key[len(FL_FEATURE_PREFIX):]: floats(key, len(lists[key].feature[0].float_list.value))
            for key in feature_lists
        }
    num_frames = int(ctx[CTX_NUM_FRAMES].int64_list.value[0])
    if window.num_frames != num_frames:
        raise SchemaError(
            f"{window.recording_id}@{window.start_frame}: context says {num_frames} frames, "
            f"valid list has {window.num_frames}"
        )
    window.check()
    return window


def parse_spec(
    has_audio: bool, has_video: bool, has_labels: bool, features: Mapping[str, int] | None = None
) -> tuple[dict, dict]:
    """Return ``(context_spec, sequence_spec)`` for ``tf.io.parse_single_sequence_example``.

    ``features`` maps the feature sets to read to their dimensions.

    Args:
        has_audio: read the ``audio`` list.
        has_video: read the ``face``, ``face_found`` and ``landmarks`` lists.
        has_labels: read the ``arousal`` and ``valence`` lists.
        features: ``{feature set: dimension}`` to read, or None for none.

    Returns:
        ``(context_spec, sequence_spec)``: dicts of ``tf.io.FixedLenFeature`` (the context
        entries other than sample rate, frame period and modality flags) and
        ``tf.io.FixedLenSequenceFeature``.
    """
    import tensorflow as tf

    context = {
        CTX_SCHEMA_VERSION: tf.io.FixedLenFeature([], tf.int64),
        CTX_RECORDING_ID: tf.io.FixedLenFeature([], tf.string),
        CTX_SUBJECT_ID: tf.io.FixedLenFeature([], tf.string),
        CTX_PARTITION: tf.io.FixedLenFeature([], tf.string),
        CTX_START_FRAME: tf.io.FixedLenFeature([], tf.int64),
        CTX_NUM_FRAMES: tf.io.FixedLenFeature([], tf.int64),
        CTX_NUM_VALID: tf.io.FixedLenFeature([], tf.int64),
        CTX_FACE_SIZE: tf.io.FixedLenFeature([], tf.int64),
    }
    sequence = {FL_VALID: tf.io.FixedLenSequenceFeature([], tf.int64)}
    if has_audio:
        sequence[FL_AUDIO] = tf.io.FixedLenSequenceFeature([FRAME_SAMPLES], tf.float32)
    if has_video:
        sequence[FL_FACE] = tf.io.FixedLenSequenceFeature([], tf.string)
        sequence[FL_FACE_FOUND] = tf.io.FixedLenSequenceFeature([], tf.int64)
        sequence[FL_LANDMARKS] = tf.io.FixedLenSequenceFeature([NUM_LANDMARKS * 2], tf.float32)
    if has_labels:
        sequence[FL_AROUSAL] = tf.io.FixedLenSequenceFeature([], tf.float32)
        sequence[FL_VALENCE] = tf.io.FixedLenSequenceFeature([], tf.float32)
    for name, dim in (features or {}).items():
        sequence[feature_list_name(name)] = tf.io.FixedLenSequenceFeature([int(dim)], tf.float32)
    return context, sequence


def parse_window_tensors(
    serialized, has_audio: bool, has_video: bool, has_labels: bool, features: Mapping[str, int] | None = None
) -> dict:
    """Parse one serialized window inside a tf.data graph into a flat dict of tensors.

    Keys: the context names above, ``valid`` ``(T,)`` int64, and where present
    ``audio`` ``(T, 640)``, ``face`` ``(T,)`` JPEG strings, ``face_found``
    ``(T,)``, ``landmarks`` ``(T, 5, 2)``, ``labels`` ``(T, 2)`` and
    ``features_<name>`` ``(T, D)`` for each of ``features`` (``{name: D}``).
    JPEGs are not decoded here so that callers can decode only what they use.

    Args:
        serialized: a scalar string tensor, one record.
        has_audio: the records hold audio (and it is wanted).
        has_video: the records hold faces and landmarks (and they are wanted).
        has_labels: the records hold labels (and they are wanted).
        features: ``{feature set: dimension}`` to read, or None for none.

    Returns:
        The dict of tensors described above.
    """
    import tensorflow as tf

    context_spec, sequence_spec = parse_spec(has_audio, has_video, has_labels, features)
    context, sequence = tf.io.parse_single_sequence_example(
        serialized, context_features=context_spec, sequence_features=sequence_spec
    )
    out = dict(context)
    out[FL_VALID] = sequence[FL_VALID]
    if has_audio:
        out[FL_AUDIO] = sequence[FL_AUDIO]
    if has_video:
        out[FL_FACE] = sequence[FL_FACE]
        out[FL_FACE_FOUND] = sequence[FL_FACE_FOUND]
        out[FL_LANDMARKS] = tf.reshape(sequence[FL_LANDMARKS], [-1, NUM_LANDMARKS, 2])
    if has_labels:
        out["labels"] = tf.stack([sequence[FL_AROUSAL], sequence[FL_VALENCE]], axis=-1)
    for name in features or {}:
        out[feature_key(name)] = sequence[feature_list_name(name)]
    return out
