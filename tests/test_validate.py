"""The dataset validator: a clean dataset passes, each kind of fault is named precisely."""

import json

import numpy as np
import pytest
import tensorflow as tf
from dataset_factory import make_dataset_dir

from emorec.cli import main as cli_main
from emorec.corpus.validate import validate_dataset
from emorec.manifest import file_sha256, read_manifest, write_manifest
from emorec.schema import CTX_SCHEMA_VERSION, WindowRecord, decode_window, encode_window


def main(argv):
    """``emorec validate`` with ``argv``; returns the exit status."""
    return cli_main(["validate", *argv])


@pytest.fixture
def dataset(tmp_path):
    """train_1, train_2 (labelled) and dev_1, 23 frames each in windows of 10 (3 windows)."""
    data_dir, _ = make_dataset_dir(tmp_path, recordings={"train": 2, "dev": 1}, frames=23, window_frames=10)
    return data_dir


def rewrite(data_dir, recording_id, edit, serialize=encode_window):
    """Decode a shard's windows, let ``edit(index, window)`` change them, write it back + fix the manifest."""
    manifest = read_manifest(data_dir)
    shard = manifest.shards[recording_id]
    path = data_dir / shard.path
    windows = [decode_window(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]
    with tf.io.TFRecordWriter(str(path)) as writer:
        for index, window in enumerate(windows):
            edit(index, window)
            writer.write(serialize(window))
    shard.bytes, shard.sha256 = path.stat().st_size, file_sha256(path)
    write_manifest(data_dir, manifest)
    return path


def only_error(data_dir):
    result = validate_dataset(data_dir)
    assert len(result.errors) == 1, result.errors
    return result.errors[0]


def test_clean_dataset(dataset, capsys):
    result = validate_dataset(dataset)
    assert result.ok and result.warnings == []
    assert (result.shards, result.windows, result.frames) == (3, 9, 69)
    assert main([str(dataset), "--no-progress"]) == 0
    assert "OK" in capsys.readouterr().out


def test_overlapping_windows_are_clean(tmp_path):
    data_dir, _ = make_dataset_dir(tmp_path, recordings={"train": 1}, frames=23, window_frames=10,
                                   hop_frames=4, modalities=("audio",))
    result = validate_dataset(data_dir)
    assert result.ok and result.windows == 5  # starts 0, 4, 8, 12, 16 (12 + 10 < 23)


def test_missing_shard(dataset, capsys):
    (dataset / "dev" / "dev_1.tfrecord").unlink()
    assert only_error(dataset) == f"{dataset / 'dev' / 'dev_1.tfrecord'}: shard listed in the manifest is missing"
    assert main([str(dataset), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.out and "shard listed in the manifest is missing" in captured.err


def test_checksum_mismatch(dataset):
    path = dataset / "train" / "train_2.tfrecord"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # inside the last record's payload checksum area
    path.write_bytes(bytes(data))
    errors = validate_dataset(dataset).errors
    assert errors[0] == f"{path}: SHA-256 differs from the manifest's"
    assert any("window 2: unreadable record" in e for e in errors)


def test_window_count_differs_from_manifest(dataset):
    manifest = read_manifest(dataset)
    manifest.shards["train_1"].windows = 4
    write_manifest(dataset, manifest)
    error = only_error(dataset)
    assert error.endswith("train_1.tfrecord: 3 windows, the manifest says 4 and 23 frames need 3")


def test_manifest_frames_disagree_with_the_masks(dataset):
    manifest = read_manifest(dataset)
    manifest.shards["dev_1"].frames = 25
    write_manifest(dataset, manifest)
    errors = validate_dataset(dataset).errors
    assert any("window 2 (start_frame 20): validity mask has 3 real frames" in e
               and "expected the first 5 (recording of 25 frames)" in e for e in errors)


def test_start_frames_break_the_hop(dataset):
    def edit(index, window):
        if index == 1:
            window.start_frame = 9
    rewrite(dataset, "train_1", edit)
    errors = validate_dataset(dataset).errors
    assert any(e.endswith("train_1.tfrecord: window 1: start_frame 9, expected 10 "
                          "(windows start every 10 frames)") for e in errors)


def test_nan_in_audio(dataset):
    def edit(index, window):
        if index == 1:
            window.audio[4, 100] = np.nan
    path = rewrite(dataset, "train_2", edit)
    assert only_error(dataset) == f"{path}: window 1 (start_frame 10): NaN or inf in the audio of frame 14"


def test_nan_in_labels(dataset, monkeypatch):
    def edit(index, window):
        if index == 0:
            window.labels[2, 0] = np.nan
    # encode_window refuses NaN labels; skip its check to write the faulty record anyway.
    monkeypatch.setattr(WindowRecord, "check", lambda self: None)
    path = rewrite(dataset, "train_1", edit)
    monkeypatch.undo()
    assert only_error(dataset) == f"{path}: window 0: cannot decode (train_1: labels contain NaN or inf)"


def test_labels_out_of_range_only_warn(dataset):
    def edit(index, window):
        if index == 2:
            window.labels[1] = [1.5, 0.0]
    path = rewrite(dataset, "train_1", edit)
    result = validate_dataset(dataset)
    assert result.ok
    assert result.warnings == [
        f"{path}: window 2 (start_frame 20): 1 label value(s) outside [-1, 1], first at frame 21: [1.5, 0.0]"
    ]


def test_bad_face_jpegs(dataset):
    def edit(index, window):
        if index == 0:
            window.faces[3] = b"not a jpeg"
        if index == 1:
            window.faces[0] = tf.io.encode_jpeg(np.zeros((8, 8, 3), np.uint8)).numpy()
    path = rewrite(dataset, "dev_1", edit)
    errors = validate_dataset(dataset).errors
    assert errors == [
        f"{path}: window 0 (start_frame 0): face of frame 3 does not decode to (16, 16, 3) (got None)",
        f"{path}: window 1 (start_frame 10): face of frame 10 does not decode to (16, 16, 3) "
        "(got (8, 8, 3))",
    ]


def test_record_of_another_schema_version(dataset):
    def serialize(window):
        example = tf.train.SequenceExample.FromString(encode_window(window))
        example.context.feature[CTX_SCHEMA_VERSION].int64_list.value[0] = 2
        return example.SerializeToString()
    path = rewrite(dataset, "dev_1", lambda i, w: None, serialize)
    errors = validate_dataset(dataset).errors
    assert errors[0] == f"{path}: window 0: cannot decode (record has schema version 2, emorec reads 1)"
    assert len(errors) == 3


def test_record_of_another_recording(dataset):
    def edit(index, window):
        window.partition = "test"
    path = rewrite(dataset, "train_2", edit)
    errors = validate_dataset(dataset).errors
    assert errors[0] == f"{path}: window 0 (start_frame 0): partition is 'test', the manifest says 'train'"


def test_stray_files_warn(dataset):
    (dataset / "train" / "old.tfrecord").write_bytes(b"")
    (dataset / "dev" / ".dev_2.tfrecord.x1.tmp").write_bytes(b"")
    result = validate_dataset(dataset)
    assert result.ok
    assert sorted(w.split(": ", 1)[1] for w in result.warnings) == [
        "not listed in the manifest (not part of the dataset)",
        "temporary file left by a killed build (a rebuild removes it)",
    ]


def test_unreadable_manifest(dataset, tmp_path, capsys):
    assert main([str(tmp_path / "nowhere"), "--no-progress"]) == 2
    assert "no dataset manifest here" in capsys.readouterr().err
    doc = json.loads((dataset / "manifest.json").read_text())
    doc["schema_version"] = 7
    (dataset / "manifest.json").write_text(json.dumps(doc))
    assert main([str(dataset), "--no-progress"]) == 2
    assert "dataset has schema version 7" in capsys.readouterr().err
