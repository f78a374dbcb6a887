"""Clip preparation and the clip shard build: records, manifest, bad inputs, resuming."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest
from clip_samples import CLASSES, CentreDetector, sample_clips
from log_capture import capture_logs

from emorec.clips.build import (
    ClipBuildOptions,
    build_clip_dataset,
    plan_shards,
    prepare_clip,
    summarize_clip_dataset,
)
from emorec.clips.data import iter_clip_records
from emorec.clips.manifest import CLIP_MANIFEST_NAME, read_clip_manifest
from emorec.clips.schema import CLIP_SAMPLE_RATE, NO_LABEL
from emorec.clips.source import ClipSource
from emorec.errors import ConfigError, MediaError
from emorec.media.audio import read_audio
from emorec.media.video import iter_video_frames

SMALL_SHARDS = ClipBuildOptions(clips_per_shard=2)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return sample_clips(tmp_path_factory.mktemp("clips"))


@pytest.fixture(scope="module")
def built(sources, tmp_path_factory):
    """The sample clips built with the real MTCNN tracker."""
    out = tmp_path_factory.mktemp("ds") / "clips"
    manifest = build_clip_dataset(sources, out, SMALL_SHARDS, "test", progress=False)
    records = {r.clip_id: r for p in ("train", "dev") for r in iter_clip_records(out, p)}
    return out, manifest, records


def test_manifest_lists_shards_clips_and_what_was_found(built, sources):
    out, manifest, _ = built
    assert manifest.classes == list(CLASSES)
    assert sorted(manifest.shards) == ["dev/dev-00000.tfrecord", "train/train-00000.tfrecord",
                                       "train/train-00001.tfrecord"]
    # Clips go into shards in id order, clips_per_shard at a time.
    assert manifest.shards["train/train-00000.tfrecord"].clip_ids == ["faceless", "happy"]
    assert manifest.shards["train/train-00001.tfrecord"].clip_ids == ["mute", "short"]
    summary = manifest.partition_summary()
    assert summary["train"] == {
        "clips": 4, "shards": 2, "labelled": 4,
        "class_counts": {"Angry": 2, "Happy": 1, "Surprise": 1},
        "frames": sum(manifest.clips[c].frames for c in ("happy", "mute", "short", "faceless")),
        "faces_found": sum(manifest.clips[c].frames for c in ("happy", "mute", "short")),
        "clips_without_face": 1, "clips_without_audio": 1, "short_clips": 1, "skipped": 0,
    }
    assert manifest.class_counts("dev") == [0, 1, 0]
    on_disk = read_clip_manifest(out)
    assert on_disk.to_json() == manifest.to_json()
    text = summarize_clip_dataset(manifest)
    assert "faceless: no face found in any of its 26 frames" in text
    assert "mute: " in text and "has no sound track; kept with audio_mask 0" in text
    assert "short: 10 frames, fewer than the 16 of a C3D slice" in text


def test_records_hold_every_frame_face_and_the_sound(built, sources):
    _, manifest, records = built
    source = {s.clip_id: s for s in sources}
    happy = records["happy"]
    frames = [f for _, f in iter_video_frames(source["happy"].video)]
    assert happy.num_frames == len(frames) == manifest.clips["happy"].frames
    assert happy.faces_found == len(frames)  # MTCNN finds the drawn face in every frame
    np.testing.assert_allclose(happy.times, np.arange(len(frames)) / 25.0, atol=1e-6)
    assert (happy.label, happy.label_name, happy.subject_id, happy.fps) == (1, "Happy", "subj_train", 25.0)
    # The crop is the face: eyes in its upper half, mouth in its lower half, all inside.
    eyes, mouth = happy.landmarks[:, :2], happy.landmarks[:, 3:]
    assert eyes[..., 1].max() < 80 < mouth[..., 1].min()
    assert happy.landmarks.min() > 0 and happy.landmarks.max() < 160
    crop = cv2.imdecode(np.frombuffer(happy.faces[0], np.uint8), cv2.IMREAD_COLOR)
    assert crop.shape == (160, 160, 3)
    # Sound: the clip's track at 22 050 Hz, stored whole.
    np.testing.assert_array_equal(happy.audio, read_audio(source["happy"].video, CLIP_SAMPLE_RATE))
    assert len(happy.audio) == pytest.approx(len(frames) / 25 * CLIP_SAMPLE_RATE, abs=2)


def test_clips_without_face_sound_or_length_are_kept_and_marked(built, sources):
    _, manifest, records = built
    faceless = records["faceless"]
    assert faceless.faces_found == 0 and not faceless.face_found.any()
    assert not faceless.landmarks.any()
    # Its frames hold the centred square of the frame.
    frame = next(f for _, f in iter_video_frames({s.clip_id: s for s in sources}["faceless"].video))
    centre = cv2.resize(frame[:, 24:168], (160, 160), interpolation=cv2.INTER_LINEAR)
    crop = cv2.imdecode(np.frombuffer(faceless.faces[0], np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    assert np.abs(crop.astype(int) - centre).mean() < 2
    assert records["mute"].audio is None and manifest.clips["mute"].audio_samples == 0
    assert records["mute"].faces_found == records["mute"].num_frames
    assert records["short"].num_frames == 10 and manifest.clips["short"].report


def test_rerun_skips_complete_shards_and_rebuilds_damaged_ones(sources, tmp_path):
    out = tmp_path / "ds"
    kwargs = dict(detector=CentreDetector(), progress=False)
    first = build_clip_dataset(sources, out, SMALL_SHARDS, "test", **kwargs)
    stamps = {p: (out / p).stat().st_mtime_ns for p in first.shards}
    damaged = "train/train-00001.tfrecord"
    with open(out / damaged, "ab") as handle:
        handle.write(b"junk")
    with capture_logs("emorec.clips.build") as lines:
        again = build_clip_dataset(sources, out, SMALL_SHARDS, "test", **kwargs)
    assert sorted(lines) == ["skip dev/dev-00000.tfrecord (complete)", "skip train/train-00000.tfrecord (complete)"]
    assert (out / "train/train-00000.tfrecord").stat().st_mtime_ns == stamps["train/train-00000.tfrecord"]
    assert again.shards[damaged].sha256 == first.shards[damaged].sha256  # rebuilt, same bytes
    # A clip that left the source takes its shard with it.
    fewer = [s for s in sources if s.partition == "train"]
    with capture_logs("emorec.clips.build") as lines:
        third = build_clip_dataset(fewer, out, SMALL_SHARDS, "test", **kwargs)
    assert "removed dev/dev-00000.tfrecord: no longer part of the source" in lines
    assert not (out / "dev").joinpath("dev-00000.tfrecord").exists() and "devclip" not in third.clips


def test_other_options_foreign_folders_and_force(sources, tmp_path):
    out = tmp_path / "ds"
    kwargs = dict(detector=CentreDetector(), progress=False)
    build_clip_dataset(sources[:1], out, SMALL_SHARDS, "test", **kwargs)
    with pytest.raises(ConfigError, match=r"clips_manifest.json: the dataset was built with other options "
                                          r"\(clips_per_shard: 2 -> 32\)"):
        build_clip_dataset(sources[:1], out, ClipBuildOptions(), "test", **kwargs)
    manifest = build_clip_dataset(sources[:1], out, ClipBuildOptions(), "test", force=True, **kwargs)
    assert manifest.options["clips_per_shard"] == 32
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match=r"mine: exists, is not empty and is not a clip dataset"):
        build_clip_dataset(sources[:1], foreign, SMALL_SHARDS, "test", **kwargs)
    with pytest.raises(ConfigError, match=r"clip build options: clips_per_shard must be at least 1"):
        ClipBuildOptions(clips_per_shard=0)


def test_corrupt_and_truncated_videos(sources, tmp_path):
    good = sources[0]
    data = good.video.read_bytes()
    corrupt = tmp_path / "corrupt.avi"
    corrupt.write_bytes(b"RIFF\0\0\0\0AVI LIST" + bytes(range(256)) * 4)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])  # mid-frame: the last frame's data is incomplete
    with av.open(str(good.video)) as container:
        tenth = [p.pos for p in container.demux(video=0) if p.size][10]
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(data[:tenth])  # after 10 whole frames

    def clip(path, clip_id):
        return ClipSource(clip_id, "train", path, CLASSES, 0)

    detector = CentreDetector()
    with pytest.raises(MediaError, match=r"corrupt.avi: has neither an audio nor a video stream"):
        prepare_clip(clip(corrupt, "c"), detector=detector)
    with pytest.raises(MediaError, match=r"truncated.avi: truncated video: the container declares 23 frames, "
                                         r"only 10 could be decoded"):
        prepare_clip(clip(truncated, "t"), detector=detector)
    with pytest.raises(MediaError, match=r"cut.avi: (corrupt video stream|truncated video)"):
        prepare_clip(clip(cut, "x"), detector=detector)
    with pytest.raises(MediaError, match=r"gone.avi: no such video file \(clip g\)"):
        prepare_clip(clip(tmp_path / "gone.avi", "g"), detector=detector)
    # The build stops at the bad clip, naming it; with skip_bad it records it and goes on.
    out = tmp_path / "ds"
    bad = [good, clip(truncated, "t")]
    with pytest.raises(MediaError, match=r"truncated.avi: truncated video"):
        build_clip_dataset(bad, out, SMALL_SHARDS, "test", detector=detector, progress=False)
    assert not (out / CLIP_MANIFEST_NAME).exists()  # nothing finished, nothing listed
    manifest = build_clip_dataset(bad, out, SMALL_SHARDS, "test", detector=detector, progress=False,
                                  skip_bad=True)
    shard = manifest.shards["train/train-00000.tfrecord"]
    assert shard.clip_ids == [good.clip_id] and "truncated video" in shard.skipped["t"]
    assert manifest.partition_summary()["train"]["skipped"] == 1
    assert "skipped t: " in summarize_clip_dataset(manifest)


def test_unlabelled_clips_and_shard_plan(sources, tmp_path):
    test_clip = ClipSource("unseen", "test", sources[0].video, CLASSES, None)
    prepared = prepare_clip(test_clip, detector=CentreDetector())
    assert prepared.record.label == NO_LABEL and prepared.record.label_name == ""
    plans = plan_shards(sources + [test_clip], 3)
    assert [(p.path, [s.clip_id for s in p.sources]) for p in plans] == [
        ("train/train-00000.tfrecord", ["faceless", "happy", "mute"]),
        ("train/train-00001.tfrecord", ["short"]),
        ("dev/dev-00000.tfrecord", ["devclip"]),
        ("test/test-00000.tfrecord", ["unseen"]),
    ]


def test_demo_clip_dataset_is_built_once_into_the_cache(tmp_path):
    from emorec.demo.clip_cache import ensure_demo_clip_dataset
    from emorec.demo.clips import ClipSpec

    spec = ClipSpec(classes=("Happy", "Sad"), train_per_class=2, val_per_class=1, train_subjects=2,
                    val_subjects=1, min_seconds=0.8, max_seconds=0.9)
    with capture_logs("emorec.demo.clip_cache") as lines:
        out = ensure_demo_clip_dataset(cache_dir=tmp_path, spec=spec, jobs=1, progress=False)
    assert out.parent == tmp_path and lines[0].startswith(f"demo clips: building {out} (not built yet)")
    manifest = read_clip_manifest(out)
    summary = manifest.partition_summary()
    assert (summary["train"]["clips"], summary["dev"]["clips"]) == (4, 2)
    assert summary["train"]["faces_found"] == summary["train"]["frames"]  # MTCNN finds every drawn face
    assert manifest.classes == ["Happy", "Sad"] and manifest.options["source"] == "demo_clips"
    assert {c.subject_id for c in manifest.clips_for("train")} == {"demo_train_1", "demo_train_2"}
    with capture_logs("emorec.demo.clip_cache") as lines:
        assert ensure_demo_clip_dataset(cache_dir=tmp_path, spec=spec, progress=False) == out
    assert lines == [f"demo clips: using {out}"]


def test_demo_clip_spec_from_the_environment(monkeypatch):
    from emorec.demo.clip_cache import DEMO_CLIP_SPEC_ENV, demo_clip_spec_from_env
    from emorec.demo.clips import ClipSpec

    monkeypatch.delenv(DEMO_CLIP_SPEC_ENV, raising=False)
    assert demo_clip_spec_from_env() is None
    monkeypatch.setenv(DEMO_CLIP_SPEC_ENV, '{"classes": ["Happy", "Sad"], "train_per_class": 2}')
    assert demo_clip_spec_from_env() == ClipSpec(classes=("Happy", "Sad"), train_per_class=2)
    monkeypatch.setenv(DEMO_CLIP_SPEC_ENV, '{"frames": 3}')
    with pytest.raises(ConfigError, match=r"\$EMOREC_DEMO_CLIP_SPEC: not a JSON object of ClipSpec fields"):
        demo_clip_spec_from_env()
