"""The clip branches' tf.data pipelines: shapes, dtypes, value ranges and sampling against NumPy references."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from clip_samples import CLASSES, CentreDetector, sample_clips

from emorec.clips import data as clip_data
from emorec.clips.augment import ZOOM_RANGE, crop_zoom_flip, draw_crop_params, identity_params
from emorec.clips.build import ClipBuildOptions, build_clip_dataset
from emorec.errors import ConfigError

L = 22_050  # one second at the clips' sample rate


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """The sample clips (happy, mute, short, faceless in train; devclip in dev), and their records."""
    sources = sample_clips(tmp_path_factory.mktemp("clips"))
    out = tmp_path_factory.mktemp("ds") / "clips"
    build_clip_dataset(sources, out, ClipBuildOptions(clips_per_shard=2), "test",
                       detector=CentreDetector(), progress=False)
    records = {r.clip_id: r for p in ("train", "dev") for r in clip_data.iter_clip_records(out, p)}
    return out, records


def faces_of(record) -> np.ndarray:
    """The stored faces, decoded by TensorFlow as the pipelines do."""
    return np.stack([tf.io.decode_jpeg(j, channels=3).numpy() for j in record.faces])


def collect(ds) -> dict:
    parts: dict = {}
    for batch in ds:
        for key, value in batch.items():
            parts.setdefault(key, []).append(value.numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def test_frame_dataset_evaluation_gives_every_frame_as_stored(dataset):
    out, records = dataset
    got = collect(clip_data.frame_dataset(out, "train", batch_size=16))
    assert got["face"].shape[1:] == (160, 160, 3) and got["face"].dtype == np.float32
    assert got["label"].dtype == np.int32 and got["frame"].dtype == np.int32
    ids = [c.decode() for c in got["clip_id"]]
    train = [r for r in records.values() if r.partition == "train"]
    assert len(ids) == sum(r.num_frames for r in train)  # faceless frames included
    for clip_id in ("happy", "faceless"):
        rows = [i for i, c in enumerate(ids) if c == clip_id]
        record = records[clip_id]
        np.testing.assert_array_equal(got["frame"][rows], np.arange(record.num_frames))
        np.testing.assert_array_equal(got["label"][rows], record.label)
        np.testing.assert_array_equal(got["face_found"][rows], record.face_found)
        # No augmentation: the decoded JPEG / 255.
        np.testing.assert_allclose(got["face"][rows], faces_of(record) / 255.0, atol=1e-6)


def test_frame_dataset_training_uses_found_faces_and_is_reproducible(dataset):
    out, _ = dataset

    def first_epoch(seed):
        ds = clip_data.frame_dataset(out, "train", batch_size=8, training=True, seed=seed)
        return collect(ds)

    a, b, c = first_epoch(1), first_epoch(1), first_epoch(2)
    assert b"faceless" not in set(a["clip_id"]) and (a["face_found"] == 1).all()
    np.testing.assert_array_equal(a["face"], b["face"])
    np.testing.assert_array_equal(a["clip_id"], b["clip_id"])
    assert not np.array_equal(a["face"], c["face"])
    assert 0.0 <= a["face"].min() and a["face"].max() <= 1.0
    assert len(a["label"]) % 8 == 0  # the last short batch is dropped in training


def test_slice_dataset_evaluation_slices_and_short_clips(dataset):
    out, records = dataset
    got = collect(clip_data.slice_dataset(out, "train", batch_size=3))
    assert got["slice"].shape[1:] == (16, 112, 112, 3) and got["face_found"].shape[1:] == (16,)
    ids = [c.decode() for c in got["clip_id"]]
    for clip_id, record in records.items():
        if record.partition != "train":
            continue
        n = record.num_frames
        starts = list(range(0, max(n - 16, 0) + 1, 16))
        if n > 16 and starts[-1] != n - 16:
            starts.append(n - 16)
        rows = [i for i, c in enumerate(ids) if c == clip_id]
        assert got["start"][rows].tolist() == starts, clip_id
    # The 10-frame clip is stretched over 16 frames: frame floor(k * 10 / 16).
    row = ids.index("short")
    index = np.arange(16) * 10 // 16
    faces = faces_of(records["short"])[index].astype(np.float32)
    expected = tf.image.crop_and_resize(faces, tf.tile([[0.0, 0.0, 1.0, 1.0]], [16, 1]), tf.range(16),
                                        [112, 112]).numpy() / 255.0
    np.testing.assert_allclose(got["slice"][row], expected, atol=1e-4)


def test_slice_dataset_training_draws_starts_in_range(dataset):
    out, records = dataset
    got = collect(clip_data.slice_dataset(out, "train", batch_size=1, training=True, seed=3))
    ids = [c.decode() for c in got["clip_id"]]
    for clip_id in set(ids):
        n = records[clip_id].num_frames
        starts = got["start"][[i for i, c in enumerate(ids) if c == clip_id]]
        assert len(starts) == max(1, -(-n // 16))
        assert starts.min() >= 0 and starts.max() <= max(n - 16, 0)
    assert 0.0 <= got["slice"].min() and got["slice"].max() <= 1.0


def test_audio_dataset_middle_second_scaling_and_masks(dataset):
    out, records = dataset
    got = collect(clip_data.audio_dataset(out, "train", batch_size=2))
    assert got["audio"].shape == (4, L) and got["audio"].dtype == np.float32
    for i, clip_id in enumerate(c.decode() for c in got["clip_id"]):
        record = records[clip_id]
        if record.audio is None:
            assert got["audio_mask"][i] == 0 and not got["audio"][i].any()
            continue
        assert got["audio_mask"][i] == 1
        start = max(len(record.audio) - L, 0) // 2
        assert got["audio_start"][i] == start
        window = np.zeros(L, np.float32)
        piece = record.audio[start : start + L]
        window[: len(piece)] = piece
        np.testing.assert_allclose(got["audio"][i], np.clip(window * 256, -256, 256), rtol=1e-6)
    short = [c.decode() for c in got["clip_id"]].index("short")
    assert not got["audio"][short][len(records["short"].audio):].any()  # padded at the end
    peak = collect(clip_data.audio_dataset(out, "train", batch_size=4, scale="peak"))
    row = [c.decode() for c in peak["clip_id"]].index("short")  # all of its sound is in the window
    assert np.abs(peak["audio"][row]).max() == pytest.approx(256.0)
    assert np.abs(peak["audio"]).max() <= 256.0 + 1e-3


def test_audio_dataset_training_takes_random_seconds(dataset):
    out, records = dataset
    spare = len(records["faceless"].audio) - L  # the one sample clip longer than a second
    assert spare > 0
    starts = set()
    ds = clip_data.audio_dataset(out, "train", batch_size=4, training=True, seed=0, repeat=True)
    for batch in ds.take(10):
        rows = batch["clip_id"].numpy() == b"faceless"
        starts.update(batch["audio_start"].numpy()[rows].tolist())
    assert len(starts) > 5 and min(starts) >= 0 and max(starts) <= spare


def test_fusion_dataset_samples_frames_and_slices_over_the_clip(dataset):
    out, records = dataset
    got = collect(clip_data.fusion_dataset(out, "train", batch_size=2, face_size=32, slice_size=16))
    assert got["faces"].shape == (4, 48, 32, 32, 3) and got["slices"].shape == (4, 32, 16, 16, 16, 3)
    assert got["audio"].shape == (4, L) and got["frame_index"].dtype == np.int32
    for i, clip_id in enumerate(c.decode() for c in got["clip_id"]):
        record = records[clip_id]
        n = record.num_frames
        assert got["num_frames"][i] == n
        np.testing.assert_array_equal(got["frame_index"][i], np.floor((np.arange(48) + 0.5) * n / 48))
        spare = max(n - 16, 0) + 1
        np.testing.assert_array_equal(got["slice_start"][i], np.floor((np.arange(32) + 0.5) * spare / 32))
        np.testing.assert_array_equal(got["face_found"][i], record.face_found[got["frame_index"][i]])
        faces = faces_of(record)[got["frame_index"][i]].astype(np.float32)
        resized = tf.image.crop_and_resize(faces, tf.tile([[0.0, 0.0, 1.0, 1.0]], [48, 1]), tf.range(48),
                                           [32, 32]).numpy() / 255.0
        np.testing.assert_allclose(got["faces"][i], resized, atol=1e-4)
        assert got["audio_mask"][i] == (record.audio is not None)


def test_fusion_dataset_default_sizes_training_and_parts(dataset):
    out, records = dataset
    batch = next(iter(clip_data.fusion_dataset(out, "dev", batch_size=1, training=True, seed=5)))
    assert batch["faces"].shape == (1, 48, 160, 160, 3) and batch["slices"].shape == (1, 32, 16, 112, 112, 3)
    n = records["devclip"].num_frames
    index = batch["frame_index"].numpy()[0]
    # One random frame per segment [i N / 48, (i + 1) N / 48).
    assert np.all(index >= np.floor(np.arange(48) * n / 48)) and np.all(index <= np.ceil((np.arange(48) + 1) * n / 48))
    only_audio = next(iter(clip_data.fusion_dataset(out, "dev", batch_size=1, include=("audio",))))
    assert "faces" not in only_audio and "slices" not in only_audio and only_audio["audio"].shape == (1, L)
    assert set(only_audio) >= {"frame_index", "slice_start", "face_found", "label", "clip_id", "num_frames"}


def test_augmentation_is_crop_zoom_flip():
    image = tf.reshape(tf.range(8 * 8 * 3, dtype=tf.float32), [1, 8, 8, 3])
    np.testing.assert_array_equal(crop_zoom_flip(image, identity_params(1), 8).numpy(), image.numpy())
    params = draw_crop_params(tf.constant([4, 2]), 1000)
    side = params["boxes"][:, 2] - params["boxes"][:, 0]
    np.testing.assert_allclose(side, params["boxes"][:, 3] - params["boxes"][:, 1], atol=1e-6)
    assert side.numpy().min() >= 1 / ZOOM_RANGE[1] - 1e-6 and side.numpy().max() <= 1.0
    assert params["boxes"].numpy().min() >= 0 and params["boxes"].numpy().max() <= 1 + 1e-6
    assert 0.4 < params["flip"].numpy().mean() < 0.6
    flipped = crop_zoom_flip(image, {"boxes": tf.constant([[0.0, 0.0, 1.0, 1.0]]), "flip": tf.constant([True])}, 8)
    np.testing.assert_array_equal(flipped.numpy(), image.numpy()[:, :, ::-1])
    # The box [0, 0.5] x [0, 0.5] samples pixel positions 0 .. 3.5 (in steps of 0.5) on each axis;
    # channel 0 of the image is 24 y + 3 x, which bilinear sampling reproduces exactly.
    quarter = crop_zoom_flip(image, {"boxes": tf.constant([[0.0, 0.0, 0.5, 0.5]]), "flip": tf.constant([False])}, 8)
    y, x = np.meshgrid(np.arange(8) * 0.5, np.arange(8) * 0.5, indexing="ij")
    np.testing.assert_allclose(quarter.numpy()[0, :, :, 0], 24 * y + 3 * x, rtol=1e-6)


def test_manifest_helpers_and_errors(dataset, tmp_path):
    out, _ = dataset
    assert clip_data.clip_classes(out) == list(CLASSES)
    np.testing.assert_array_equal(clip_data.class_counts(out, "train"), [2, 1, 1])
    with pytest.raises(ConfigError, match=r"no clip dataset manifest here"):
        clip_data.frame_dataset(tmp_path, "train", batch_size=1)
    with pytest.raises(ConfigError, match=r"clip dataset has no clips in partition 'test'"):
        clip_data.audio_dataset(out, "test", batch_size=1)
    with pytest.raises(ConfigError, match=r"unknown audio scaling 'loud'"):
        clip_data.audio_dataset(out, "train", batch_size=1, scale="loud")
    with pytest.raises(ConfigError, match=r"unknown fusion parts \['video'\]"):
        clip_data.fusion_dataset(out, "train", batch_size=1, include=("video",))
    with pytest.raises(ConfigError, match=r"batch_size must be at least 1"):
        clip_data.slice_dataset(out, "train", batch_size=0)
