"""The clip TFRecord schema: one ``tf.train.SequenceExample`` per video clip (Pini et al.).

Clip classification (EmotiW / AFEW) keeps every clip whole, whatever its
length: the context describes the clip and carries its sound once, the
feature lists carry one entry per decoded video frame at the clip's own frame
rate (no 40 ms grid, nothing dropped, nothing padded).

Context:

- ``clip_schema_version`` int, ``clip_id``, ``partition``, ``subject_id`` bytes
  (``subject_id`` empty where unknown);
- ``label`` int (index into the dataset's classes, :data:`NO_LABEL` = -1 when
  unlabelled) and ``label_name`` bytes (empty when unlabelled);
- ``fps`` float (the video's nominal rate), ``num_frames`` int,
  ``face_size`` int (side of the stored crops), ``faces_found`` int (frames
  whose ``face_found`` is 1);
- ``has_audio`` int (0: the file has no sound track; ``audio`` is then empty
  and every pipeline gives zeros with an audio mask of 0), ``sample_rate`` int
  (22 050 Hz), ``num_samples`` int and ``audio``: the whole mono track as
  little-endian float32 bytes, as decoded (full-scale [-1, 1]), not scaled.

Per frame:

- ``face``: JPEG of the square face crop, ``face_size`` pixels (160 by default);
- ``face_found`` int: 1 where the tracker had a face for this frame;
- ``landmarks`` float ``(5 x 2)``: MTCNN's landmarks in crop pixels (zeros
  where the clip has no face at all);
- ``time`` float: the frame's presentation time in seconds.

Frames with ``face_found = 0`` hold the crop of the nearest frame's face box
(the tracker's rule), or, in a clip without any face, the centred square of
the frame; see :mod:`emorec.clips.build`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from emorec.schema import NUM_LANDMARKS, PARTITIONS, SchemaError

CLIP_SCHEMA_VERSION = 1
CLIP_SAMPLE_RATE = 22_050  # SoundNet's rate
CLIP_FACE_SIZE = 160  # FaceNet's input; the C3D branch resizes to 112
NO_LABEL = -1

CTX_CLIP_SCHEMA_VERSION = "clip_schema_version"
CTX_CLIP_ID = "clip_id"
CTX_PARTITION = "partition"
CTX_SUBJECT_ID = "subject_id"
CTX_LABEL = "label"
CTX_LABEL_NAME = "label_name"
CTX_FPS = "fps"
CTX_NUM_FRAMES = "num_frames"
CTX_FACE_SIZE = "face_size"
CTX_FACES_FOUND = "faces_found"
CTX_HAS_AUDIO = "has_audio"
CTX_SAMPLE_RATE = "sample_rate"
CTX_NUM_SAMPLES = "num_samples"
CTX_AUDIO = "audio"

FL_FACE = "face"
FL_FACE_FOUND = "face_found"
FL_LANDMARKS = "landmarks"
FL_TIME = "time"


@dataclasses.dataclass
class ClipRecord:
    """One clip as NumPy arrays, ready to serialize.

    ``faces`` is a list of ``N`` JPEG byte strings, ``face_found (N,)`` int,
    ``landmarks (N, 5, 2)`` float32 crop pixels, ``times (N,)`` float32
    seconds, ``audio (M,)`` float32 mono at ``sample_rate`` or None when the
    file has no sound track. ``label`` is :data:`NO_LABEL` when unlabelled.
    """

    clip_id: str
    partition: str
    label: int
    label_name: str
    subject_id: str
    fps: float
    faces: list[bytes]
    face_found: np.ndarray
    landmarks: np.ndarray
    times: np.ndarray
    audio: np.ndarray | None = None
    face_size: int = CLIP_FACE_SIZE
    sample_rate: int = CLIP_SAMPLE_RATE

    @property
    def num_frames(self) -> int:
        """Video frames in the clip."""
        return len(self.faces)

    @property
    def faces_found(self) -> int:
        """Frames whose face was found."""
        return int(np.sum(np.asarray(self.face_found) > 0))

    def check(self) -> None:
        """Raise :class:`SchemaError` if shapes or values break the schema."""
        n = self.num_frames
        where = f"clip {self.clip_id}"
        if n == 0:
            raise SchemaError(f"{where}: a clip needs at least one frame")
        if self.partition not in PARTITIONS:
            raise SchemaError(f"{where}: unknown partition {self.partition!r}")
        if (self.label == NO_LABEL) != (self.label_name == ""):
            raise SchemaError(f"{where}: label {self.label} and label name {self.label_name!r} disagree")
        if self.label < NO_LABEL:
            raise SchemaError(f"{where}: label {self.label} is negative")
        for name, arr, shape in (
            ("face_found", self.face_found, (n,)),
            ("landmarks", self.landmarks, (n, NUM_LANDMARKS, 2)),
            ("times", self.times, (n,)),
        ):
            if np.shape(arr) != shape:
                raise SchemaError(f"{where}: {name} has shape {np.shape(arr)}, expected {shape}")
        if self.audio is not None:
            if np.ndim(self.audio) != 1:
                raise SchemaError(f"{where}: audio must be mono (M,), got shape {np.shape(self.audio)}")
            if not np.all(np.isfinite(self.audio)):
                raise SchemaError(f"{where}: audio contains NaN or inf")
        if not self.fps > 0 or self.face_size < 1 or self.sample_rate < 1:
            raise SchemaError(
                f"{where}: fps {self.fps}, face size {self.face_size} and sample rate "
                f"{self.sample_rate} must be positive"
            )


def _feature(kind: str, values):
    import tensorflow as tf

    if kind == "float":
        return tf.train.Feature(float_list=tf.train.FloatList(value=np.asarray(values, np.float32).ravel()))
    if kind == "int":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=np.asarray(values, np.int64).ravel()))
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def encode_clip(record: ClipRecord) -> bytes:
    """Serialize a clip to a ``tf.train.SequenceExample`` byte string (deterministic bytes).

    Args:
        record: the clip; checked first.

    Returns:
        The serialized SequenceExample.

    Raises:
        SchemaError: the record breaks the schema.
    """
    import tensorflow as tf

    record.check()
    audio = np.zeros(0, "<f4") if record.audio is None else np.asarray(record.audio, "<f4")
    context = {
        CTX_CLIP_SCHEMA_VERSION: _feature("int", [CLIP_SCHEMA_VERSION]),
        CTX_CLIP_ID: _feature("bytes", [record.clip_id.encode()]),
        CTX_PARTITION: _feature("bytes", [record.partition.encode()]),
        CTX_SUBJECT_ID: _feature("bytes", [record.subject_id.encode()]),
        CTX_LABEL: _feature("int", [record.label]),
        CTX_LABEL_NAME: _feature("bytes", [record.label_name.encode()]),
        CTX_FPS: _feature("float", [record.fps]),
        CTX_NUM_FRAMES: _feature("int", [record.num_frames]),
        CTX_FACE_SIZE: _feature("int", [record.face_size]),
        CTX_FACES_FOUND: _feature("int", [record.faces_found]),
        CTX_HAS_AUDIO: _feature("int", [record.audio is not None]),
        CTX_SAMPLE_RATE: _feature("int", [record.sample_rate]),
        CTX_NUM_SAMPLES: _feature("int", [len(audio)]),
        CTX_AUDIO: _feature("bytes", [audio.tobytes()]),
    }
    landmarks = np.asarray(record.landmarks, np.float32)
    lists = {
        FL_FACE: [_feature("bytes", [jpeg]) for jpeg in record.faces],
        FL_FACE_FOUND: [_feature("int", [v]) for v in np.asarray(record.face_found)],
        FL_LANDMARKS: [_feature("float", points) for points in landmarks],
        FL_TIME: [_feature("float", [t]) for t in np.asarray(record.times)],
    }
    example = tf.train.SequenceExample(
        context=tf.train.Features(feature=context),
        feature_lists=tf.train.FeatureLists(
            feature_list={k: tf.train.FeatureList(feature=v) for k, v in lists.items()}
        ),
    )
    # Sorted map entries: a shard's checksum does not depend on the process that wrote it.
    return example.SerializeToString(deterministic=True)


def decode_clip(serialized: bytes) -> ClipRecord:
    """Parse a serialized clip back into NumPy arrays (for tools and tests; JPEGs stay encoded).

    Args:
        serialized: bytes written by :func:`encode_clip`.

    Returns:
        The clip record.

    Raises:
        SchemaError: another schema version, or inconsistent contents.
    """
    import tensorflow as tf

    example = tf.train.SequenceExample.FromString(serialized)
    ctx = example.context.feature
    version = (
        ctx[CTX_CLIP_SCHEMA_VERSION].int64_list.value[0] if CTX_CLIP_SCHEMA_VERSION in ctx else None
    )
    if version != CLIP_SCHEMA_VERSION:
        raise SchemaError(f"record has clip schema version {version}, emorec reads {CLIP_SCHEMA_VERSION}")
    lists = example.feature_lists.feature_list

    def one(name, kind):
        feature = ctx[name]
        if kind == "int":
            return int(feature.int64_list.value[0])
        if kind == "float":
            return float(feature.float_list.value[0])
        return feature.bytes_list.value[0]

    audio = np.frombuffer(one(CTX_AUDIO, "bytes"), "<f4").astype(np.float32)
    record = ClipRecord(
        clip_id=one(CTX_CLIP_ID, "bytes").decode(),
        partition=one(CTX_PARTITION, "bytes").decode(),
        label=one(CTX_LABEL, "int"),
        label_name=one(CTX_LABEL_NAME, "bytes").decode(),
        subject_id=one(CTX_SUBJECT_ID, "bytes").decode(),
        fps=one(CTX_FPS, "float"),
        faces=[f.bytes_list.value[0] for f in lists[FL_FACE].feature],
        face_found=np.array([f.int64_list.value[0] for f in lists[FL_FACE_FOUND].feature], np.int64),
        landmarks=np.array(
            [list(f.float_list.value) for f in lists[FL_LANDMARKS].feature], np.float32
        ).reshape(-1, NUM_LANDMARKS, 2),
        times=np.array([f.float_list.value[0] for f in lists[FL_TIME].feature], np.float32),
        audio=audio if one(CTX_HAS_AUDIO, "int") else None,
        face_size=one(CTX_FACE_SIZE, "int"),
        sample_rate=one(CTX_SAMPLE_RATE, "int"),
    )
    where = f"clip {record.clip_id}"
    if one(CTX_NUM_FRAMES, "int") != record.num_frames:
        raise SchemaError(f"{where}: context says {one(CTX_NUM_FRAMES, 'int')} frames, lists hold {record.num_frames}")
    if one(CTX_NUM_SAMPLES, "int") != len(audio):
        raise SchemaError(f"{where}: context says {one(CTX_NUM_SAMPLES, 'int')} samples, audio holds {len(audio)}")
    if one(CTX_FACES_FOUND, "int") != record.faces_found:
        raise SchemaError(f"{where}: context says {one(CTX_FACES_FOUND, 'int')} faces found, lists hold {record.faces_found}")
    record.check()
    return record


def clip_parse_spec() -> tuple[dict, dict]:
    """``(context_spec, sequence_spec)`` for ``tf.io.parse_single_sequence_example``.

    Returns:
        Dicts of ``tf.io.FixedLenFeature`` (every context entry, the audio as raw bytes) and of
        ``tf.io.FixedLenSequenceFeature`` (``face``, ``face_found``, ``landmarks``, ``time``).
    """
    import tensorflow as tf

    context = {
        CTX_CLIP_SCHEMA_VERSION: tf.io.FixedLenFeature([], tf.int64),
        CTX_CLIP_ID: tf.io.FixedLenFeature([], tf.string),
        CTX_PARTITION: tf.io.FixedLenFeature([], tf.string),
        CTX_SUBJECT_ID: tf.io.FixedLenFeature([], tf.string),
        CTX_LABEL: tf.io.FixedLenFeature([], tf.int64),
        CTX_LABEL_NAME: tf.io.FixedLenFeature([], tf.string),
        CTX_FPS: tf.io.FixedLenFeature([], tf.float32),
        CTX_NUM_FRAMES: tf.io.FixedLenFeature([], tf.int64),
        CTX_FACE_SIZE: tf.io.FixedLenFeature([], tf.int64),
        CTX_FACES_FOUND: tf.io.FixedLenFeature([], tf.int64),
        CTX_HAS_AUDIO: tf.io.FixedLenFeature([], tf.int64),
        CTX_SAMPLE_RATE: tf.io.FixedLenFeature([], tf.int64),
        CTX_NUM_SAMPLES: tf.io.FixedLenFeature([], tf.int64),
        CTX_AUDIO: tf.io.FixedLenFeature([], tf.string),
    }
    sequence = {
        FL_FACE: tf.io.FixedLenSequenceFeature([], tf.string),
        FL_FACE_FOUND: tf.io.FixedLenSequenceFeature([], tf.int64),
        FL_LANDMARKS: tf.io.FixedLenSequenceFeature([NUM_LANDMARKS * 2], tf.float32),
        FL_TIME: tf.io.FixedLenSequenceFeature([], tf.float32),
    }
    return context, sequence


def parse_clip_tensors(serialized) -> dict:
    """Parse one serialized clip inside a tf.data graph into a flat dict of tensors.

    Keys: the context names above (``audio`` decoded to ``(M,)`` float32) and
    ``face (N,)`` JPEG strings, ``face_found (N,)`` int64, ``landmarks
    (N, 5, 2)`` float32, ``time (N,)`` float32. JPEGs are not decoded here, so
    that callers decode only the frames they use.

    Args:
        serialized: a scalar string tensor, one clip record.

    Returns:
        The dict of tensors described above.
    """
    import tensorflow as tf

    context_spec, sequence_spec = clip_parse_spec()
    context, sequence = tf.io.parse_single_sequence_example(
        serialized, context_features=context_spec, sequence_features=sequence_spec
    )
    out = dict(context)
    out[CTX_AUDIO] = tf.io.decode_raw(context[CTX_AUDIO], tf.float32, little_endian=True)
    out[FL_FACE] = sequence[FL_FACE]
    out[FL_FACE_FOUND] = sequence[FL_FACE_FOUND]
    out[FL_LANDMARKS] = tf.reshape(sequence[FL_LANDMARKS], [-1, NUM_LANDMARKS, 2])
    out[FL_TIME] = sequence[FL_TIME]
    return out
