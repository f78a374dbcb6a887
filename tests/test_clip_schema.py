"""The clip record schema: encode -> decode (NumPy) and -> parse (tf) give back what went in."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tensorflow as tf

from emorec.clips.schema import (
    CLIP_SAMPLE_RATE,
    NO_LABEL,
    ClipRecord,
    decode_clip,
    encode_clip,
    parse_clip_tensors,
)
from emorec.schema import SchemaError


def jpeg(seed: int, size: int = 16) -> bytes:
    image = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def make_record(frames: int = 5, samples: int | None = 300, label: int = 2) -> ClipRecord:
    rng = np.random.default_rng(frames)
    return ClipRecord(
        clip_id="train_000046280",
        partition="train",
        label=label,
        label_name="Fear" if label >= 0 else "",
        subject_id="s7",
        fps=29.97,
        faces=[jpeg(k) for k in range(frames)],
        face_found=np.array([1, 0, 1, 1, 0][:frames] + [1] * max(0, frames - 5)),
        landmarks=rng.uniform(0, 16, (frames, 5, 2)).astype(np.float32),
        times=(np.arange(frames) / 29.97).astype(np.float32),
        audio=None if samples is None else rng.uniform(-1, 1, samples).astype(np.float32),
        face_size=16,
    )


def assert_same(a: ClipRecord, b: ClipRecord) -> None:
    for name in ("clip_id", "partition", "label", "label_name", "subject_id", "face_size", "sample_rate"):
        assert getattr(a, name) == getattr(b, name), name
    assert b.fps == pytest.approx(a.fps, rel=1e-6)
    assert a.faces == b.faces
    np.testing.assert_array_equal(a.face_found, b.face_found)
    np.testing.assert_array_equal(a.landmarks, b.landmarks)
    np.testing.assert_array_equal(a.times, b.times)
    if a.audio is None:
        assert b.audio is None
    else:
        np.testing.assert_array_equal(a.audio, b.audio)


@pytest.mark.parametrize("samples,label", [(300, 2), (None, 2), (0, NO_LABEL)])
def test_numpy_round_trip(samples, label):
    record = make_record(samples=samples, label=label)
    data = encode_clip(record)
    back = decode_clip(data)
    assert_same(record, back)
    assert back.num_frames == 5 and back.faces_found == 3
    assert encode_clip(back) == data  # deterministic bytes


def test_tf_parse_matches_the_record():
    record = make_record(frames=7)
    parsed = parse_clip_tensors(tf.constant(encode_clip(record)))
    assert parsed["clip_id"].numpy() == b"train_000046280"
    assert parsed["label"].numpy() == 2 and parsed["label_name"].numpy() == b"Fear"
    assert parsed["num_frames"].numpy() == 7 and parsed["faces_found"].numpy() == 5
    assert parsed["has_audio"].numpy() == 1 and parsed["num_samples"].numpy() == 300
    assert parsed["sample_rate"].numpy() == CLIP_SAMPLE_RATE
    np.testing.assert_array_equal(parsed["audio"].numpy(), record.audio)
    assert parsed["face"].numpy().tolist() == record.faces
    np.testing.assert_array_equal(parsed["face_found"].numpy(), record.face_found)
    np.testing.assert_array_equal(parsed["landmarks"].numpy(), record.landmarks)
    np.testing.assert_array_equal(parsed["time"].numpy(), record.times)
    no_audio = parse_clip_tensors(tf.constant(encode_clip(make_record(samples=None))))
    assert no_audio["has_audio"].numpy() == 0 and no_audio["audio"].shape == (0,)


def test_records_that_break_the_schema_are_refused():
    bad = make_record()
    bad.times = bad.times[:-1]
    with pytest.raises(SchemaError, match=r"clip train_000046280: times has shape \(4,\), expected \(5,\)"):
        encode_clip(bad)
    bad = make_record()
    bad.label_name = ""
    with pytest.raises(SchemaError, match=r"label 2 and label name '' disagree"):
        encode_clip(bad)
    bad = make_record()
    bad.audio = np.array([0.0, np.nan], np.float32)
    with pytest.raises(SchemaError, match=r"audio contains NaN"):
        encode_clip(bad)
    bad = make_record()
    bad.partition = "val"
    with pytest.raises(SchemaError, match=r"unknown partition 'val'"):
        encode_clip(bad)


def test_other_schema_versions_are_refused():
    example = tf.train.SequenceExample.FromString(encode_clip(make_record()))
    example.context.feature["clip_schema_version"].int64_list.value[0] = 99
    with pytest.raises(SchemaError, match=r"clip schema version 99, emorec reads 1"):
        decode_clip(example.SerializeToString())
