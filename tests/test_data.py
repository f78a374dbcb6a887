"""The tf.data pipeline against datasets written by dataset_factory with known contents."""


import numpy as np
import pytest
import tensorflow as tf
from dataset_factory import make_dataset_dir
from read_spec import make_dataset

from emorec.data import (
    read_recordings,
    stream_layout,
)
from emorec.dataset import DatasetHandle
from emorec.errors import EmorecError
from emorec.schema import FRAME_SAMPLES, NUM_LANDMARKS

FACE = 16
LENGTHS = [23, 31, 7]


@pytest.fixture(scope="module")
def av_dataset(tmp_path_factory):
    """3 train (23, 31, 7 frames), 2 dev, 1 unlabelled test recording; 10-frame windows."""
    return make_dataset_dir(
        tmp_path_factory.mktemp("av"), recordings={"train": 3, "dev": 2, "test": 1},
        frames=LENGTHS, window_frames=10, face_size=FACE, labelled=("train", "dev"),
    )


def _batches(ds):
    return [{k: v.numpy() for k, v in b.items()} for b in ds]


def _rows(batches):
    """Flatten batches into a list of per-row dicts."""
    rows = []
    for b in batches:
        for r in range(len(b["recording_id"])):
            rows.append({k: v[r] for k, v in b.items()})
    return rows


def _check_row_against_truth(row, truth, video_tol=None, stored=None):
    """A row is a contiguous run of one recording's frames, padding after its end.

    ``stored``: the stored window (hop == window) the row was cut from, whose end also ends it.
    """
    rec = truth[row["recording_id"].decode()]
    start, t = int(row["start_frame"]), len(row["mask"])
    n = len(rec["labels"]) if "labels" in rec else len(rec.get("audio", rec.get("video")))
    real = max(0, min(t, n - start))
    if stored is not None:
        real = min(real, stored - start % stored)
    np.testing.assert_array_equal(row["mask"], np.r_[np.ones(real), np.zeros(t - real)])
    if "audio" in row:
        np.testing.assert_array_equal(row["audio"][:real], rec["audio"][start:start + real])
        assert not row["audio"][real:].any()
    if "labels" in rec:
        np.testing.assert_array_equal(row["labels"][:real], rec["labels"][start:start + real])
    assert not row["labels"][real:].any()
    if "video" in row and video_tol is not None:
        pixels = np.round(row["video"][:real] * 255).astype(np.uint8)
        np.testing.assert_array_equal(pixels, rec["video_jpeg"][start:start + real])
        diff = np.abs(pixels.astype(int) - rec["video"][start:start + real].astype(int))
        assert diff.mean() < video_tol
        np.testing.assert_array_equal(row["landmarks"][:real], rec["landmarks"][start:start + real])
        np.testing.assert_array_equal(row["face_found"][:real], rec["face_found"][start:start + real])
        assert not row["video"][real:].any() and not row["face_found"][real:].any()
    return real


def test_batch_keys_shapes_and_dtypes(av_dataset):
    data_dir, _ = av_dataset
    batch = next(iter(make_dataset(data_dir, "train", batch_size=2)))
    expected = {
        "audio": ((2, 10, FRAME_SAMPLES), tf.float32),
        "video": ((2, 10, FACE, FACE, 3), tf.float32),
        "landmarks": ((2, 10, NUM_LANDMARKS, 2), tf.float32),
        "face_found": ((2, 10), tf.float32),
        "labels": ((2, 10, 2), tf.float32),
        "mask": ((2, 10), tf.float32),
        "target": ((2, 10), tf.float32),
        "recording_id": ((2,), tf.string),
        "start_frame": ((2,), tf.int64),
        "reset": ((2,), tf.bool),
    }
    assert set(batch) == set(expected)
    for key, (shape, dtype) in expected.items():
        assert tuple(batch[key].shape) == shape and batch[key].dtype == dtype, key
    assert batch["reset"].numpy().all()  # window mode: every row stands alone


def test_round_trip_evaluation_mode(av_dataset):
    data_dir, truth = av_dataset
    rows = _rows(_batches(make_dataset(data_dir, "train", batch_size=4)))
    keys = sorted((r["recording_id"].decode(), int(r["start_frame"])) for r in rows)
    assert keys == sorted((f"train_{i + 1}", s) for i, n in enumerate(LENGTHS)
                          for s in range(0, n, 10))
    covered = sum(_check_row_against_truth(r, truth, video_tol=2.0) for r in rows)
    assert covered == sum(LENGTHS)
    assert all(r["video"].min() >= 0 and r["video"].max() <= 1 for r in rows)


def _keys(batches):
    return [(r["recording_id"].decode(), int(r["start_frame"])) for r in _rows(batches)]


def test_training_draws_whole_windows_reproducibly(av_dataset):
    data_dir, truth = av_dataset
    # 3 + 4 + 1 = 8 windows, batch 2: one pass is one epoch of 4 batches.
    read = lambda epoch: _batches(make_dataset(  # noqa: E731
        data_dir, "train", batch_size=2, training=True, seed=3, epoch=epoch, modalities=["audio"]))
    first, second = read(0), read(1)
    assert _keys(first) == _keys(read(0))  # a function of (seed, epoch)
    assert _keys(first) != _keys(second)
    every = sorted((f"train_{i + 1}", s) for i, n in enumerate(LENGTHS) for s in range(0, n, 10))
    for epoch in (first, second):
        assert sorted(_keys(epoch)) == every
        for row in _rows(epoch):
            _check_row_against_truth(row, truth)


def test_every_window_is_visited_equally_often_over_a_run(av_dataset):
    from collections import Counter

    data_dir, _ = av_dataset
    # 8 windows, batch 3, 5 steps: an epoch is 15 windows, not a whole number of passes.
    visits = Counter()
    for epoch in range(8):
        batches = _batches(make_dataset(data_dir, "train", batch_size=3, training=True, seed=1, epoch=epoch,
                                        steps=5, modalities=["audio"]))
        assert [len(b["mask"]) for b in batches] == [3] * 5
        visits.update(_keys(batches))
    # 8 epochs x 15 = 120 windows = 15 passes: every window exactly 15 times.
    assert len(visits) == 8 and set(visits.values()) == {15}
    # "One pass" epochs (steps None) carry the remainder over: after 3 epochs of 2 batches of 3
    # (18 windows), every window was seen 2 or 3 times.
    visits = Counter()
    for epoch in range(3):
        visits.update(_keys(_batches(make_dataset(data_dir, "train", batch_size=3, training=True, seed=1,
                                                  epoch=epoch, modalities=["audio"]))))
    assert sum(visits.values()) == 18 and set(visits.values()) <= {2, 3} and len(visits) == 8


def test_skipping_batches_gives_the_rest_of_the_same_epoch(av_dataset):
    data_dir, _ = av_dataset
    kwargs = dict(batch_size=2, training=True, seed=5, epoch=3, steps=6, modalities=["audio"])
    full = _batches(make_dataset(data_dir, "train", **kwargs))
    tail = _batches(make_dataset(data_dir, "train", skip=4, **kwargs))
    assert len(tail) == 2
    for a, b in zip(full[4:], tail):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_target_marks_every_frame_or_the_last_real_one(av_dataset):
    data_dir, _ = av_dataset
    every = _batches(make_dataset(data_dir, "dev", batch_size=8, modalities=["audio"]))[0]
    np.testing.assert_array_equal(every["target"], every["mask"])
    last = _batches(make_dataset(data_dir, "dev", batch_size=8, modalities=["audio"], target="last"))[0]
    for mask, target in zip(last["mask"], last["target"]):
        real = int(mask.sum())
        assert target.sum() == 1 and target[real - 1] == 1


def test_audio_standardised_per_recording_at_read_time(av_dataset):
    data_dir, truth = av_dataset
    for row in _rows(_batches(make_dataset(data_dir, "train", batch_size=2, modalities=["audio"],
                                           audio_norm="recording"))):
        rid, start, real = row["recording_id"].decode(), int(row["start_frame"]), int(row["mask"].sum())
        audio = truth[rid]["audio"]
        want = (audio[start:start + real] - audio.mean()) / audio.std()
        np.testing.assert_allclose(row["audio"][:real], want, rtol=1e-4, atol=1e-4)
        assert not row["audio"][real:].any()  # padding stays zero
    for _, arrays in read_recordings(data_dir, "train", ["audio"], audio_norm="recording"):
        assert abs(arrays["audio"].mean()) < 1e-5 and arrays["audio"].std() == pytest.approx(1.0, rel=1e-4)


def test_training_augments_video_deterministically(av_dataset):
    data_dir, truth = av_dataset
    make = lambda seed: _rows(_batches(make_dataset(  # noqa: E731
        data_dir, "dev", batch_size=1, training=True, seed=seed)))
    a, b, c = make(1), make(1), make(2)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["video"], y["video"])
        np.testing.assert_array_equal(x["landmarks"], y["landmarks"])
    a_by_key = {(r["recording_id"], int(r["start_frame"])): r for r in a}
    differs = 0
    for row in c:
        other = a_by_key[(row["recording_id"], int(row["start_frame"]))]
        differs += not np.array_equal(row["video"], other["video"])
    assert differs == len(c)
    for row in a:
        assert row["video"].min() >= 0 and row["video"].max() <= 1
        rec = truth[row["recording_id"].decode()]
        start, real = int(row["start_frame"]), int(row["mask"].sum())
        plain = rec["video_jpeg"][start:start + real] / 255.0
        # Augmented, not plain scaling; each frame with its own draws.
        assert np.abs(row["video"][:real] - plain).mean() > 0.01
        per_frame_mean = row["video"][:real].mean(axis=(1, 2, 3)) - plain.mean(axis=(1, 2, 3))
        assert real < 3 or np.std(per_frame_mean) > 1e-3
        # The crop moves landmarks by at most the crop margin (resize 16 -> 18, scale 18/16).
        moved = row["landmarks"][:real] - rec["landmarks"][start:start + real] * 18 / 16
        assert moved.max() <= 0 and moved.min() >= -2


def test_training_without_augmentation_shuffles_plain_faces(av_dataset):
    data_dir, truth = av_dataset
    kwargs = dict(batch_size=2, training=True, augment=False, seed=3)
    rows = _rows(_batches(make_dataset(data_dir, "train", **kwargs)))
    plain_order = [(r["recording_id"], int(r["start_frame"])) for r in _rows(_batches(
        make_dataset(data_dir, "train", batch_size=2)))]
    assert [(r["recording_id"], int(r["start_frame"])) for r in rows] != plain_order
    # Faces are exactly the decoded JPEGs scaled to [0, 1]: no crop, saturation or brightness.
    assert sum(_check_row_against_truth(r, truth, video_tol=2.0) for r in rows) == sum(LENGTHS)


def test_rewindowing_covers_each_valid_frame_once(tmp_path):
    data_dir, truth = make_dataset_dir(
        tmp_path, recordings={"train": 2}, frames=[160, 150], window_frames=150,
        modalities=("audio",),
    )
    rows = _rows(_batches(make_dataset(data_dir, "train", batch_size=8, window_frames=5)))
    assert all(r["audio"].shape == (5, FRAME_SAMPLES) for r in rows)
    assert all(r["mask"].sum() > 0 for r in rows)  # all-padding sub-windows are dropped
    assert len(rows) == 32 + 30
    seen = {rid: np.zeros(len(t["audio"]), int) for rid, t in truth.items()}
    for row in rows:
        real = _check_row_against_truth(row, truth)
        seen[row["recording_id"].decode()][int(row["start_frame"]):][:real] += 1
    assert all((count == 1).all() for count in seen.values())


def test_rewindowing_with_a_remainder_pads_with_mask(av_dataset):
    data_dir, truth = av_dataset
    rows = _rows(_batches(make_dataset(data_dir, "train", batch_size=16, window_frames=4)))
    # Each 10-frame window -> sub-windows at +0, +4, +8; the last holds 2 frames + 2 padding.
    assert {int(r["start_frame"]) % 10 for r in rows} == {0, 4, 8}
    for row in rows:
        real = _check_row_against_truth(row, truth, stored=10)
        if int(row["start_frame"]) % 10 == 8:
            assert real <= 2
    assert sum(r["mask"].sum() for r in rows) == sum(LENGTHS)


def test_longer_windows_than_stored_need_stream_mode(av_dataset):
    data_dir, _ = av_dataset
    with pytest.raises(EmorecError, match="10 frames"):
        make_dataset(data_dir, "train", batch_size=2, window_frames=20)


def _lanes(batches):
    """Per lane, the sequence of (recording_id, start_frame, reset, real frames)."""
    lanes = [[] for _ in range(len(batches[0]["mask"]))]
    for b in batches:
        assert len(b["mask"]) == len(lanes)  # stream mode batches are always full
        for r, lane in enumerate(lanes):
            lane.append((b["recording_id"][r].decode(), int(b["start_frame"][r]),
                         bool(b["reset"][r]), int(b["mask"][r].sum())))
    return lanes


def _check_stream(batches, truth, t):
    seen = {rid: np.zeros(len(rec["labels"] if "labels" in rec else rec["audio"]), int)
            for rid, rec in truth.items()}
    for lane in _lanes(batches):
        previous = None
        for rid, start, reset, real in lane:
            if rid == "":
                assert real == 0 and start == -1 and not reset
                previous = "pad"
                continue
            assert previous != "pad"  # padding only at the end of a lane
            if previous is not None and previous[0] == rid:
                assert not reset and start == previous[1] + t
            else:
                assert reset and start == 0
            seen[rid][start:start + real] += 1
            previous = (rid, start)
    for row in _rows(batches):
        if row["recording_id"]:
            _check_row_against_truth(row, truth, video_tol=2.0 if "video" in row else None)
    return seen


def test_stream_mode_lanes_continue_recordings(av_dataset):
    data_dir, truth = av_dataset
    batches = _batches(make_dataset(data_dir, "train", batch_size=2, stream_ordered=True,
                                    window_frames=8))
    train = {k: v for k, v in truth.items() if k.startswith("train")}
    seen = _check_stream(batches, train, 8)
    assert all((count == 1).all() for count in seen.values())
    # Rows per recording 3, 4, 1: train_1 -> lane 0 (ends 3), train_2 -> lane 1 (ends 4),
    # train_3 -> lane 0 (ends 4); 4 steps.
    lanes = _lanes(batches)
    assert [x[0] for x in lanes[0]] == ["train_1"] * 3 + ["train_3"]
    assert [x[0] for x in lanes[1]] == ["train_2"] * 4


def test_stream_mode_pads_lanes_that_run_out(av_dataset):
    data_dir, truth = av_dataset
    batches = _batches(make_dataset(data_dir, "train", batch_size=4, stream_ordered=True,
                                    modalities=["audio"]))
    lanes = _lanes(batches)
    assert len(batches) == 4  # the longest recording: 31 frames = 4 rows of 10
    assert [x[0] for x in lanes[3]] == [""] * 4  # 3 recordings, 4 lanes
    train = {k: v for k, v in truth.items() if k.startswith("train")}
    assert all((c == 1).all() for c in _check_stream(batches, train, 10).values())


def test_stream_mode_stitches_overlapping_hops_and_longer_rows(tmp_path):
    data_dir, truth = make_dataset_dir(
        tmp_path, recordings={"train": 3}, frames=[23, 40, 12], window_frames=10, hop_frames=4,
        modalities=("audio",),
    )
    for t in (6, 25):
        batches = _batches(make_dataset(data_dir, "train", batch_size=2, stream_ordered=True,
                                        window_frames=t))
        seen = _check_stream(batches, truth, t)
        assert all((count == 1).all() for count in seen.values())


def test_stream_mode_training_reorders_recordings_per_epoch(tmp_path):
    data_dir, truth = make_dataset_dir(
        tmp_path, recordings={"train": 6}, frames=[5, 9, 14, 3, 11, 8], window_frames=5,
        modalities=("audio",),
    )
    kwargs = dict(batch_size=2, stream_ordered=True, training=True, seed=4)
    epochs = [_batches(make_dataset(data_dir, "train", epoch=e, **kwargs)) for e in range(2)]
    layouts = [[tuple(x[0] for x in lane) for lane in _lanes(e)] for e in epochs]
    assert layouts[0] != layouts[1]
    again = _batches(make_dataset(data_dir, "train", **kwargs))
    assert [tuple(x[0] for x in lane) for lane in _lanes(again)] == layouts[0]
    for epoch in epochs:
        assert all((c == 1).all() for c in _check_stream(epoch, truth, 5).values())


def test_stream_mode_repeat_runs_epochs_back_to_back(av_dataset):
    data_dir, _ = av_dataset
    ds = make_dataset(data_dir, "train", batch_size=2, stream_ordered=True, repeat=True,
                      modalities=["audio"])
    batches = _batches(ds.take(8))  # 4 steps per epoch
    assert [b["reset"].tolist() for b in batches[:4]] == [b["reset"].tolist() for b in batches[4:]]


def test_stream_layout_is_greedy_with_ties_to_the_lowest_lane():
    lane_of, ends = stream_layout([3, 4, 1, 2, 2], tf.constant([0, 1, 2, 3, 4], tf.int64), 3)
    # 3 -> lane 0 (3), 4 -> lane 1 (4), 1 -> lane 2 (1), 2 -> lane 2 (3), 2 -> lane 0 (5; tie 3/3)
    assert lane_of.numpy().tolist() == [0, 1, 2, 2, 0]
    assert ends.numpy().tolist() == [5, 4, 3]


def test_unlabelled_partition_gives_zero_labels(av_dataset):
    data_dir, truth = av_dataset
    handle = DatasetHandle.open(data_dir)
    assert handle.has_labels("dev") and not handle.has_labels("test")
    rows = _rows(_batches(make_dataset(data_dir, "test", batch_size=2)))
    assert all(not r["labels"].any() for r in rows)
    assert sum(r["mask"].sum() for r in rows) == LENGTHS[0]
    for row in rows:
        _check_row_against_truth(row, truth, video_tol=2.0)
    (rid, arrays), = read_recordings(data_dir, "test")
    assert rid == "test_1" and "labels" not in arrays
    summary = handle.summary()
    assert summary["partitions"]["test"]["has_labels"] is False
    assert summary["window_frames"] == 10 and summary["face_size"] == FACE


@pytest.mark.parametrize("stored", [("audio",), ("video",)])
def test_single_modality_datasets(tmp_path, stored):
    data_dir, truth = make_dataset_dir(tmp_path, recordings={"dev": 2}, frames=[12, 5],
                                       window_frames=6, modalities=stored, face_size=FACE)
    batch = _batches(make_dataset(data_dir, "dev", batch_size=8))[0]
    has_video = stored == ("video",)
    assert ("video" in batch) == has_video and ("audio" in batch) != has_video
    assert ("landmarks" in batch) == has_video and ("face_found" in batch) == has_video
    for row in _rows([batch]):
        _check_row_against_truth(row, truth, video_tol=2.0)
    other = "audio" if has_video else "video"
    with pytest.raises(EmorecError, match=str(data_dir)):
        make_dataset(data_dir, "dev", batch_size=2, modalities=[other])


def test_modality_subset_of_an_av_dataset(av_dataset):
    data_dir, _ = av_dataset
    batch = next(iter(make_dataset(data_dir, "dev", batch_size=2, modalities=["video"])))
    assert "audio" not in batch and batch["video"].shape == (2, 10, FACE, FACE, 3)


def test_read_recordings_equals_ground_truth(av_dataset):
    data_dir, truth = av_dataset
    got = dict(read_recordings(data_dir, "train"))
    assert sorted(got) == ["train_1", "train_2", "train_3"]
    for rid, arrays in got.items():
        rec = truth[rid]
        np.testing.assert_array_equal(arrays["audio"], rec["audio"])
        np.testing.assert_array_equal(arrays["labels"], rec["labels"])
        np.testing.assert_array_equal(arrays["video"], rec["video_jpeg"])
        assert arrays["video"].dtype == np.uint8
        np.testing.assert_array_equal(arrays["landmarks"], rec["landmarks"])
        np.testing.assert_array_equal(arrays["face_found"], rec["face_found"])
        np.testing.assert_array_equal(arrays["mask"], np.ones(len(rec["audio"])))


def test_read_recordings_with_overlapping_hops_and_a_subset(tmp_path):
    data_dir, truth = make_dataset_dir(
        tmp_path, recordings={"dev": 2}, frames=[37, 9], window_frames=10, hop_frames=3,
        face_size=FACE,
    )
    for rid, arrays in read_recordings(data_dir, "dev", modalities=["audio"]):
        assert set(arrays) == {"audio", "labels", "mask"}
        np.testing.assert_array_equal(arrays["audio"], truth[rid]["audio"])
        np.testing.assert_array_equal(arrays["labels"], truth[rid]["labels"])


def test_bad_inputs_raise_config_errors_naming_the_file(av_dataset, tmp_path):
    data_dir, _ = av_dataset
    with pytest.raises(EmorecError, match="manifest"):
        make_dataset(tmp_path / "nowhere", "train", batch_size=2)
    dev_only, _ = make_dataset_dir(tmp_path, recordings={"dev": 1}, frames=4, window_frames=4,
                                   modalities=("audio",))
    with pytest.raises(EmorecError, match="no recordings in partition 'train'"):
        make_dataset(dev_only, "train", batch_size=2)
    with pytest.raises(EmorecError, match="bad modalities"):
        make_dataset(data_dir, "train", batch_size=2, modalities=["text"])


def test_missing_shard_is_reported(tmp_path):
    data_dir, _ = make_dataset_dir(tmp_path, recordings={"dev": 2}, frames=4, window_frames=4,
                                   modalities=("audio",))
    (data_dir / "dev" / "dev_2.tfrecord").unlink()
    with pytest.raises(EmorecError, match="dev_2.tfrecord"):
        make_dataset(data_dir, "dev", batch_size=2)


def test_read_recordings_rejects_a_manifest_that_disagrees_with_the_shard(tmp_path):
    import json

    data_dir, _ = make_dataset_dir(tmp_path, recordings={"dev": 1}, frames=9, window_frames=4,
                                   modalities=("audio",))
    doc = json.loads((data_dir / "manifest.json").read_text())
    doc["shards"][0]["frames"] = 10
    (data_dir / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(EmorecError, match="dev_1.tfrecord: holds 9 valid frames, manifest says 10"):
        list(read_recordings(data_dir, "dev"))


def test_stream_mode_rejects_a_manifest_that_disagrees_with_the_shard(tmp_path):
    import json

    data_dir, _ = make_dataset_dir(tmp_path, recordings={"dev": 1}, frames=9, window_frames=4,
                                   modalities=("audio",))
    doc = json.loads((data_dir / "manifest.json").read_text())
    for wrong in (5, 15):  # too few frames listed (rows would be cut), too many
        doc["shards"][0]["frames"] = wrong
        (data_dir / "manifest.json").write_text(json.dumps(doc))
        with pytest.raises(tf.errors.InvalidArgumentError, match="dev_1.tfrecord"):
            _batches(make_dataset(data_dir, "dev", batch_size=1, stream_ordered=True))


def test_gaps_between_stored_windows_are_reported(tmp_path):
    data_dir, _ = make_dataset_dir(tmp_path, recordings={"dev": 1}, frames=14, window_frames=4,
                                   hop_frames=6, modalities=("audio",))
    with pytest.raises(EmorecError, match="cannot be streamed"):
        make_dataset(data_dir, "dev", batch_size=1, stream_ordered=True)
    with pytest.raises(EmorecError, match="dev_1.tfrecord.*frames missing"):
        list(read_recordings(data_dir, "dev"))


def test_sliding_training_windows_are_cut_across_stored_windows(av_dataset):
    # Stored: consecutive 10-frame windows. Read: 4-frame windows starting at every frame, each
    # the recording's frames [s, s + 4), straddling two stored windows where needed.
    data_dir, truth = av_dataset
    n = sum(length - 3 for length in LENGTHS)  # starts 0 .. N - 4 of each recording
    rows = _rows(_batches(make_dataset(data_dir, "train", batch_size=1, training=True, seed=2, window_frames=4,
                                       hop_frames=1, steps=n, target="last", modalities=["audio"])))
    starts = sorted((r["recording_id"].decode(), int(r["start_frame"])) for r in rows)
    assert starts == sorted((f"train_{i + 1}", s) for i, length in enumerate(LENGTHS) for s in range(length - 3))
    for row in rows:
        rec = truth[row["recording_id"].decode()]
        start = int(row["start_frame"])
        assert row["mask"].tolist() == [1.0] * 4 and row["target"].tolist() == [0.0, 0.0, 0.0, 1.0]
        np.testing.assert_array_equal(row["audio"], rec["audio"][start:start + 4])
        np.testing.assert_array_equal(row["labels"], rec["labels"][start:start + 4])


def test_training_windows_need_storage_they_fit_in(tmp_path):
    data_dir, _ = make_dataset_dir(tmp_path, recordings={"train": 1}, frames=20, window_frames=10, hop_frames=5,
                                   modalities=("audio",))
    with pytest.raises(EmorecError, match="cross the overlapping stored windows"):
        make_dataset(data_dir, "train", batch_size=1, training=True, seed=0, window_frames=8, hop_frames=3)
    with pytest.raises(EmorecError, match="cannot read 12-frame windows"):
        make_dataset(data_dir, "train", batch_size=1, training=True, seed=0, window_frames=12)
