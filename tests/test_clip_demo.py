"""The demo clip corpus: real AFEW-layout media, deterministic, with class-dependent faces and voices."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from emorec.corpus.adapters.afew import afew_sources
from emorec.corpus.adapters.clips_csv import read_clips_csv
from emorec.demo.clips import (
    CLIPS_CSV,
    CLIPS_CSV_COLUMNS,
    ClipSpec,
    draw_dynamics,
    plan_clips,
    write_demo_clips,
)
from emorec.errors import ConfigError
from emorec.media.audio import read_audio
from emorec.media.video import iter_video_frames, probe_media

TINY = ClipSpec(classes=("Angry", "Sad", "Surprise"), train_per_class=2, val_per_class=1, test_clips=1,
                train_subjects=2, val_subjects=1, test_subjects=1, min_seconds=0.8, max_seconds=1.2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_demo_clips(tmp_path_factory.mktemp("clips") / "demo", spec=TINY, seed=3, progress=False)


def rows(csv_path: Path) -> list[dict]:
    with open(csv_path, newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == CLIPS_CSV_COLUMNS
        return list(reader)


def test_afew_layout_of_real_media(corpus):
    root = corpus.parent
    table = rows(corpus)
    assert len(table) == 3 * 2 + 3 * 1 + 1
    assert sorted(p.name for p in root.iterdir()) == ["Test_AFEW", "Train_AFEW", "Val_AFEW", CLIPS_CSV]
    assert sorted(p.name for p in (root / "Train_AFEW").iterdir()) == ["Angry", "Sad", "Surprise"]
    for row in table:
        path = root / row["video"]
        parts = Path(row["video"]).parts
        if row["partition"] == "test":
            assert parts == ("Test_AFEW", f"{row['clip']}.avi") and row["label"] == ""
        else:
            folder = "Train_AFEW" if row["partition"] == "train" else "Val_AFEW"
            assert parts == (folder, row["label"], f"{row['clip']}.avi")
        info = probe_media(path)
        assert info.has_video and info.has_audio
        assert (info.width, info.height, info.fps) == (192, 144, 25.0)
        assert info.audio_rate == 44_100 and info.audio_channels == 1
        assert 0.8 - 1e-6 <= info.video_duration_s <= 1.2 + 1e-6
        assert info.audio_duration_s == pytest.approx(info.video_duration_s, abs=1e-3)
    # Each partition draws from its own subjects.
    subjects = {p: {r["subject"] for r in table if r["partition"] == p} for p in ("train", "dev", "test")}
    assert len(subjects["train"]) == 2 and not subjects["train"] & (subjects["dev"] | subjects["test"])


def test_both_adapters_read_it(corpus):
    by_csv = {s.clip_id: s for s in read_clips_csv(corpus, classes=TINY.classes)}
    by_afew = afew_sources(corpus.parent)
    assert len(by_afew) == len(by_csv) == 10
    for source in by_afew:
        twin = by_csv[source.clip_id.split("_", 1)[1]]
        assert (source.partition, source.label_name, source.video.resolve()) == (
            twin.partition, twin.label_name, twin.video.resolve())


def test_same_seed_same_bytes_any_jobs_other_seed_other_media(corpus, tmp_path):
    again = write_demo_clips(tmp_path / "again", spec=TINY, seed=3, progress=False, jobs=2)
    for row in rows(corpus):
        assert (corpus.parent / row["video"]).read_bytes() == (again.parent / row["video"]).read_bytes()
    assert again.read_bytes() == corpus.read_bytes()
    other = write_demo_clips(tmp_path / "other", spec=TINY, seed=4, progress=False)
    video = rows(corpus)[0]["video"]
    assert (other.parent / video).read_bytes() != (corpus.parent / video).read_bytes()


def test_voices_follow_the_class(corpus):
    """Angry speech is loud, sad speech quiet: measured from the written sound tracks."""
    level = {}
    for row in rows(corpus):
        if row["label"]:
            audio = read_audio(corpus.parent / row["video"], 22_050)
            level.setdefault(row["label"], []).append(10 * np.log10(np.mean(audio.astype(np.float64) ** 2)))
    assert min(level["Angry"]) > max(level["Sad"]) + 10


def test_frames_decode_at_the_clip_rate(corpus):
    row = rows(corpus)[0]
    decoded = list(iter_video_frames(corpus.parent / row["video"]))
    times = np.array([t for t, _ in decoded])
    np.testing.assert_allclose(times, np.arange(len(decoded)) / 25.0, atol=1e-9)
    assert decoded[0][1].shape == (144, 192, 3)


def test_dynamics_differ_by_class():
    rng = np.random.default_rng(0)
    t = np.linspace(0, 2.0, 51)
    surprise = draw_dynamics("Surprise", 2.0, rng)
    env = surprise.envelope(t)
    after = t >= surprise.onset + 0.08
    assert env[t < surprise.onset].max() == 0 and env[after].min() > 0.7  # a jump within 80 ms
    neutral = draw_dynamics("Neutral", 2.0, rng)
    assert neutral.envelope(t).max() == 0
    face = {label: draw_dynamics(label, 2.0, rng).face([1.9])[0] for label in TINY.classes + ("Happy", "Fear")}
    keys = ("eye_open", "brow_raise", "smile", "mouth_open", "brow_inner", "mouth_width", "sneer")
    f = {label: dict(zip(keys, values)) for label, values in face.items()}
    assert f["Happy"]["smile"] > 0.5 and f["Sad"]["smile"] < -0.5 and f["Sad"]["brow_inner"] > 0.5
    assert f["Angry"]["brow_raise"] < -0.6 and f["Angry"]["brow_inner"] < -0.5
    assert f["Fear"]["eye_open"] > 1.1 and f["Fear"]["mouth_width"] > 0.5
    assert f["Surprise"]["mouth_open"] > 0.5 and f["Surprise"]["brow_raise"] > 0.9


def test_spec_and_plan_checks(tmp_path):
    with pytest.raises(ConfigError, match=r"ClipSpec: classes must be distinct names"):
        ClipSpec(classes=("Contempt",))
    with pytest.raises(ConfigError, match=r"ClipSpec: need 0 < min_seconds <= max_seconds"):
        ClipSpec(min_seconds=2.0, max_seconds=1.0)
    with pytest.raises(ConfigError, match=r"ClipSpec: container must be one of avi, mp4"):
        ClipSpec(container="mov")
    clips = plan_clips(ClipSpec(), seed=0)
    assert len(clips) == 7 * 24 + 7 * 8
    assert len({c.clip_id for c in clips}) == len(clips)
    train = [c for c in clips if c.partition == "train"]
    # Every training subject shows every class twice.
    pairs = {(c.subject.subject_id, c.label) for c in train}
    assert len(pairs) == 12 * 7
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"file: the demo clip corpus needs a directory"):
        write_demo_clips(tmp_path / "file", spec=TINY, progress=False)


def test_write_avi_keeps_pcm_sound_exactly_and_mjpeg_frames_closely(tmp_path):
    from emorec.media.video import video_rate
    from emorec.media.write import float_to_int16, write_avi, write_mp4

    rate = 32_000
    sound = (0.4 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32)
    frames = [np.full((48, 64, 3), 10 * k, np.uint8) for k in range(25)]
    write_avi(tmp_path / "a.avi", frames, fps=25, audio=sound, audio_rate=rate)
    back = read_audio(tmp_path / "a.avi", rate)
    np.testing.assert_array_equal(back, float_to_int16(sound) / np.float32(32768))
    decoded = [f for _, f in iter_video_frames(tmp_path / "a.avi")]
    assert len(decoded) == 25 and video_rate(tmp_path / "a.avi") == 25.0
    assert max(np.abs(d.astype(int) - f).max() for d, f in zip(decoded, frames)) <= 2
    with pytest.raises(ValueError, match=r"a.mp4: write_avi writes .avi files"):
        write_avi(tmp_path / "a.mp4", frames)
    with pytest.raises(ValueError, match=r"b.mp4: audio_codec must be one of aac, pcm_s16le"):
        write_mp4(tmp_path / "b.mp4", frames, audio=sound, audio_codec="flac")


def test_sneer_lifts_one_side_of_the_mouth():
    from emorec.demo.face import Expression, Pose, draw_face, palette_for
    from emorec.demo.spec import DemoSpec, make_subjects

    look = make_subjects(DemoSpec(subjects=(("train", 1),)), 0)[0].look
    pose = Pose(cx=100, cy=100, radius=60, roll=0)

    def draw(**extra):
        img = np.zeros((200, 200, 3), np.uint8)
        draw_face(img, pose, Expression(eye_open=0.7, brow_raise=0, smile=0, mouth_open=0, **extra),
                  palette_for(look))
        return img.astype(int)

    plain, right = draw(), draw(sneer=1.0)
    changed = np.abs(right - plain).sum(axis=2) > 0
    assert changed.any() and np.nonzero(changed)[1].min() >= 100 - 2  # only the image's right half (mouth corner and nose) changes
    left = draw(sneer=-1.0)
    assert np.nonzero(np.abs(left - plain).sum(axis=2) > 0)[1].max() <= 100 + 2
    assert np.array_equal(draw(sneer=0.0, brow_inner=0.0, mouth_width=0.0), plain)
