"""The TFRecord build end to end on real media: round trip, alignment, windows, resume, jobs."""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf
from media_samples import astronaut_face_video, speech_wav
from scipy.signal import resample_poly

from emorec.cli import main as cli_main
from emorec.corpus import build
from emorec.corpus.validate import validate_dataset
from emorec.errors import ConfigError
from emorec.manifest import file_sha256, read_manifest
from emorec.media.write import float_to_int16
from emorec.recording import BuildOptions
from emorec.schema import FRAME_PERIOD, FRAME_SAMPLES, decode_window

REPO = Path(__file__).resolve().parents[1]


def read_windows(data_dir, recording_id):
    """Decoded windows of one recording, in file order."""
    manifest = read_manifest(data_dir)
    path = Path(data_dir) / manifest.shards[recording_id].path
    return [decode_window(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]


def stitched(windows, key):
    """The valid frames of a recording's windows (hop = window) concatenated."""
    parts = []
    for w in windows:
        value = w.faces if key == "faces" else getattr(w, key)
        parts.append(value[: int(w.valid.sum())])
    if key == "faces":
        return [f for part in parts for f in part]
    return np.concatenate(parts)


def write_labels(path, times, arousal, valence):
    rows = [f"{t:.6f},{a:.6f},{v:.6f}" for t, a, v in zip(times, arousal, valence)]
    Path(path).write_text("time,arousal,valence\n" + "\n".join(rows) + "\n")


def write_csv(path, rows):
    lines = ["recording,partition,subject,audio,video,labels"]
    lines += [",".join(str(c) for c in row) for row in rows]
    Path(path).write_text("\n".join(lines) + "\n")
    return path


def run_build(*args):
    """Run the build CLI in-process; return its exit status."""
    return cli_main(["build", *map(str, args), "--no-progress"])


@pytest.fixture(scope="module")
def face_media(tmp_path_factory):
    """A 2 s astronaut mp4 (160 x 120, face from 0.4 s to 1.6 s, speech track) plus labels."""
    root = tmp_path_factory.mktemp("face_media")
    truth = astronaut_face_video(root / "talk.mp4", seconds=2.0, size=(160, 120),
                                 face_from=0.4, face_until=1.6)
    times = np.arange(51) * FRAME_PERIOD
    write_labels(root / "talk.csv", times, 0.5 * np.sin(times), 0.25 * times - 0.2)
    csv = write_csv(root / "recordings.csv", [["talk", "train", "alice", "", "talk.mp4", "talk.csv"]])
    return root, truth, csv


@pytest.fixture(scope="module")
def face_cache(tmp_path_factory):
    """One face cache for the module, so each video is detected once."""
    return tmp_path_factory.mktemp("faces")


def test_round_trip_real_media(face_media, face_cache, tmp_path):
    root, truth, csv = face_media
    out = tmp_path / "ds"
    assert run_build("manifest", csv, out, "--window", "0.4", "--face-size", "64",
                     "--cache-dir", face_cache) == 0
    result = validate_dataset(out)
    assert result.ok, result.errors
    manifest = read_manifest(out)
    shard = manifest.shards["talk"]
    assert (shard.partition, shard.subject_id, shard.frames, shard.windows) == ("train", "alice", 50, 5)
    assert shard.path == "train/talk.tfrecord" and shard.has_labels
    assert manifest.options["window_frames"] == 10 and manifest.options["modalities"] == ["audio", "video"]

    windows = read_windows(out, "talk")
    found = stitched(windows, "face_found")
    present = truth.grid_present.astype(int)
    # The face is there from frame 10 to frame 39 and the tracker finds exactly those.
    assert present.tolist() == [0] * 10 + [1] * 30 + [0] * 10
    np.testing.assert_array_equal(found, present)
    assert any("face found in 30 of 50 frames (60.0%)" in line for line in shard.report)

    # Landmarks in crop pixels: inside the crop, eyes above the mouth, eye distance as expected.
    landmarks = stitched(windows, "landmarks")[present == 1]
    assert np.all((landmarks >= 0) & (landmarks <= 64))
    assert np.all(landmarks[:, 0, 0] < landmarks[:, 1, 0])  # left eye left of right eye
    assert np.all(landmarks[:, :2, 1].max(axis=1) < landmarks[:, 3:, 1].min(axis=1))
    # Eyes 41 px apart in a face box 107 px tall: the crop (1.4 x the box) shows them 41/150 apart.
    eyes = np.linalg.norm(landmarks[:, 1] - landmarks[:, 0], axis=1)
    assert np.allclose(eyes, 64 * 41 / (107 * 1.4), rtol=0.2)
    faces = stitched(windows, "faces")
    crops = [cv2.imdecode(np.frombuffer(f, np.uint8), cv2.IMREAD_COLOR) for f in faces]
    assert all(c.shape == (64, 64, 3) for c in crops)
    # The astronaut's face is far from the grey background in colour: the crops differ.
    face_crop, background_crop = crops[25].astype(float), crops[2].astype(float)
    assert np.abs(face_crop - background_crop).mean() > 20

    # Audio: the mp4's AAC track, resampled; it follows the written speech closely.
    audio = stitched(windows, "audio").ravel()
    assert audio.shape == (50 * FRAME_SAMPLES,)
    corr = np.corrcoef(audio, truth.audio[: len(audio)])[0, 1]
    assert corr > 0.98

    labels = stitched(windows, "labels")
    t_end = (np.arange(50) + 1) * FRAME_PERIOD
    np.testing.assert_allclose(labels[:, 0], 0.5 * np.sin(t_end), atol=2e-6)
    np.testing.assert_allclose(labels[:, 1], 0.25 * t_end - 0.2, atol=2e-6)


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """7 s of espeak speech as a 44.1 kHz wav (175 frames once resampled)."""
    root = tmp_path_factory.mktemp("speech")
    samples = speech_wav(root / "speech.wav", rate=44_100, seconds=7.0)
    return root, samples


def test_wav_audio_is_the_source_resampled(speech, tmp_path):
    root, samples = speech
    csv = write_csv(tmp_path / "r.csv", [["s1", "dev", "", root / "speech.wav", "", ""]])
    out = tmp_path / "ds"
    assert run_build("manifest", csv, out, "--modalities", "audio", "--window", "1.0") == 0
    windows = read_windows(out, "s1")
    audio = stitched(windows, "audio").ravel()
    # Independent reference: the int16 wav samples resampled 44.1 kHz -> 16 kHz by SciPy.
    reference = resample_poly(float_to_int16(samples) / 32768.0, 160, 441)
    assert len(reference) == 112_000 and len(audio) == 175 * FRAME_SAMPLES
    np.testing.assert_allclose(audio, reference, atol=1e-6)
    manifest = read_manifest(out)
    assert manifest.shards["s1"].subject_id == "s1"  # the subject defaults to the recording
    assert not manifest.shards["s1"].has_labels and windows[0].labels is None

    out_norm = tmp_path / "norm"
    assert run_build("manifest", csv, out_norm, "--modalities", "audio", "--window", "1.0",
                     "--audio-norm", "recording") == 0
    normed = stitched(read_windows(out_norm, "s1"), "audio").ravel()
    np.testing.assert_allclose(normed, (reference - reference.mean()) / reference.std(), atol=1e-4)
    assert read_manifest(out_norm).options["audio_norm"] == "recording"


@pytest.mark.parametrize(
    "window, hop, starts, valid",
    [
        ("6.0", None, [0, 150], [150, 25]),
        ("0.2", None, list(range(0, 175, 5)), [5] * 35),
        ("6.0", "3.0", [0, 75], [150, 100]),
        ("0.24", None, list(range(0, 175, 6)), [6] * 29 + [1]),
    ],
)
def test_window_counts_and_padding(speech, tmp_path, window, hop, starts, valid):
    root, _ = speech
    csv = write_csv(tmp_path / "r.csv", [["s1", "train", "", root / "speech.wav", "", ""]])
    out = tmp_path / "ds"
    args = ["manifest", csv, out, "--modalities", "audio", "--window", window]
    if hop:
        args += ["--hop", hop]
    assert run_build(*args) == 0
    windows = read_windows(out, "s1")
    width = round(float(window) / FRAME_PERIOD)
    assert [w.start_frame for w in windows] == starts
    assert [int(w.valid.sum()) for w in windows] == valid
    for w, n in zip(windows, valid):
        assert w.valid.tolist() == [1] * n + [0] * (width - n)
        assert not w.audio[n:].any()
    shard = read_manifest(out).shards["s1"]
    assert shard.windows == len(starts) and shard.frames == 175
    assert validate_dataset(out).ok


@pytest.mark.parametrize("alignment, offset", [("end", 1), ("start", 0)])
def test_label_alignment_end_to_end(speech, tmp_path, alignment, offset):
    root, _ = speech
    # Labels every 0.1 s (not on the 40 ms grid): the build interpolates linearly.
    times = np.arange(71) * 0.1
    arousal, valence = 0.3 * np.sin(1.3 * times), 0.8 - 0.2 * times
    write_labels(tmp_path / "l.csv", times, arousal, valence)
    csv = write_csv(tmp_path / "r.csv", [["s1", "train", "p1", root / "speech.wav", "", "l.csv"]])
    out = tmp_path / "ds"
    assert run_build("manifest", csv, out, "--modalities", "audio", "--window", "2.0",
                     "--label-alignment", alignment) == 0
    labels = stitched(read_windows(out, "s1"), "labels")
    frame_times = (np.arange(175) + offset) * FRAME_PERIOD
    np.testing.assert_allclose(labels[:, 0], np.interp(frame_times, times, arousal), atol=2e-6)
    np.testing.assert_allclose(labels[:, 1], np.interp(frame_times, times, valence), atol=2e-6)
    manifest = read_manifest(out)
    assert manifest.options["label_alignment"] == alignment
    report = manifest.shards["s1"].report
    if alignment == "end":
        assert report == []  # 7 s of labels = 175 end times
    else:
        # Start times 0 .. 6.96 s: the label at 7.0 s is one frame more than needed.
        assert len(report) == 1 and "labels trimmed (1 frames)" in report[0]


def test_lengths_within_tolerance_are_padded_and_reported(speech, tmp_path):
    root, _ = speech
    times = np.arange(0, 6.81, 0.04)  # 0.2 s short of the 7 s of audio
    write_labels(tmp_path / "l.csv", times, 0.1 + 0 * times, 0.005 * np.arange(len(times)))
    csv = write_csv(tmp_path / "r.csv", [["s1", "train", "", root / "speech.wav", "", "l.csv"]])
    out = tmp_path / "ds"
    assert run_build("manifest", csv, out, "--modalities", "audio", "--tolerance", "0.3") == 0
    (line,) = read_manifest(out).shards["s1"].report
    assert "padded by holding its last value (5 frames)" in line and "l.csv" in line
    labels = stitched(read_windows(out, "s1"), "labels")
    assert labels.shape == (175, 2)
    np.testing.assert_allclose(labels[-6:, 1], 0.85, atol=1e-6)  # last label 0.005 * 170, held


def test_resume_skips_complete_recordings(speech, tmp_path, capsys):
    root, _ = speech
    csv = write_csv(tmp_path / "r.csv", [
        ["a", "train", "", root / "speech.wav", "", ""],
        ["b", "dev", "", root / "speech.wav", "", ""],
    ])
    out = tmp_path / "ds"
    args = ("manifest", csv, out, "--modalities", "audio")
    assert run_build(*args) == 0
    shard_a, shard_b = out / "train" / "a.tfrecord", out / "dev" / "b.tfrecord"
    stamps = {p: p.stat().st_mtime_ns for p in (shard_a, shard_b)}
    capsys.readouterr()
    assert run_build(*args) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    err = capsys.readouterr().err
    assert "skip train/a.tfrecord (complete)" in err and "skip dev/b.tfrecord (complete)" in err

    # A missing shard is rebuilt, the complete one left alone.
    shard_b.unlink()
    assert run_build(*args) == 0
    assert shard_a.stat().st_mtime_ns == stamps[shard_a] and shard_b.is_file()
    assert validate_dataset(out).ok

    # Other options: refused without --force, rebuilt with it.
    with pytest.raises(ConfigError):
        build.build_dataset([], out, BuildOptions(window=2.0, modalities=("audio",)), "manifest")
    capsys.readouterr()
    assert run_build(*args, "--window", "2.0") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--force" in err and "window" in err
    assert run_build(*args, "--window", "2.0", "--force") == 0
    assert read_manifest(out).options["window_frames"] == 50
    assert shard_a.stat().st_mtime_ns != stamps[shard_a]


def test_output_dir_with_user_files_is_refused(speech, tmp_path, capsys):
    root, _ = speech
    csv = write_csv(tmp_path / "r.csv", [["a", "train", "", root / "speech.wav", "", ""]])
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    for extra in ([], ["--force"]):
        assert run_build("manifest", csv, out, "--modalities", "audio", *extra) == 2
        err = capsys.readouterr().err
        assert f"error: {out}: exists, is not empty and is not an emorec dataset" in err
    # The demo command refuses before writing its media into the folder.
    assert run_build("demo", out) == 2
    assert "is not an emorec dataset" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]

    # --force on a dataset deletes only what the build wrote.
    out2 = tmp_path / "ds"
    assert run_build("manifest", csv, out2, "--modalities", "audio") == 0
    (out2 / "train" / "keep.txt").write_text("mine")
    assert run_build("manifest", csv, out2, "--modalities", "audio", "--force") == 0
    assert (out2 / "train" / "keep.txt").read_text() == "mine"


def _three_talks_csv(face_media, tmp_path):
    """One recordings CSV naming the astronaut video three times, once per partition."""
    root, _, _ = face_media
    return write_csv(tmp_path / "r.csv", [
        ["one", "train", "", "", root / "talk.mp4", root / "talk.csv"],
        ["two", "dev", "", "", root / "talk.mp4", ""],
        ["three", "test", "", "", root / "talk.mp4", ""],
    ])


@pytest.mark.slow
def test_jobs_2_gives_the_same_shards_as_jobs_1(face_media, tmp_path):
    csv = _three_talks_csv(face_media, tmp_path)
    sums = []
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        # Separate caches: each run detects faces itself (in its worker processes for --jobs 2).
        assert run_build("manifest", csv, out, "--jobs", jobs, "--window", "0.4",
                         "--cache-dir", tmp_path / f"cache{jobs}") == 0
        manifest = read_manifest(out)
        sums.append({rid: (s.sha256, file_sha256(out / s.path)) for rid, s in manifest.shards.items()})
    assert sums[0] == sums[1] and len(sums[0]) == 3


def test_threads_give_the_same_shards_as_one_thread(face_media, tmp_path):
    # The demo's media-only build runs recordings in threads sharing one traced MTCNN.
    from emorec.corpus.adapters.manifest_csv import read_recordings_csv

    sources = read_recordings_csv(_three_talks_csv(face_media, tmp_path))
    options = BuildOptions(window=0.4, face_size=48)
    sums = []
    for jobs, parallel in ((1, "processes"), (3, "threads")):
        out = tmp_path / parallel
        manifest = build.build_dataset(sources, out, options, "manifest", jobs=jobs, parallel=parallel,
                                       cache_dir=tmp_path / f"faces-{parallel}", progress=False)
        sums.append({rid: (s.sha256, file_sha256(out / s.path)) for rid, s in manifest.shards.items()})
    assert sums[0] == sums[1] and len(sums[0]) == 3


def test_parallel_kind_is_checked_before_anything_is_written(tmp_path):
    from emorec.features.sets import FeatureOptions

    with pytest.raises(ConfigError, match="parallel must be one of processes, threads"):
        build.build_dataset([], tmp_path / "a", BuildOptions(modalities=("audio",)), "manifest", parallel="fork")
    options = BuildOptions(modalities=("audio",), features=FeatureOptions(extract=("audio_lld",)))
    with pytest.raises(ConfigError, match="feature extractors may not be thread-safe"):
        build.build_dataset([], tmp_path / "b", options, "manifest", jobs=2, parallel="threads")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_subprocess(speech, tmp_path, capsys):
    root, _ = speech
    csv = write_csv(tmp_path / "r.csv", [["a", "test", "p", root / "speech.wav", "", ""]])
    out = tmp_path / "ds"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, "-m", "tfrecords_tools.build", "manifest", str(csv), str(out),
         "--modalities", "audio", "--no-progress"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()]
    assert ["test", "1", "1", "2", "175", "-", "no"] in rows
    # The validate CLI in-process (a second TensorFlow start-up would double the time).
    assert cli_main(["validate", str(out), "--no-progress"]) == 0
    assert "1 shards, 2 windows, 175 frames; 0 errors" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_build(tmp_path):
    out = tmp_path / "demo"
    assert run_build("demo", out, "--window", "2.0") == 0
    manifest = read_manifest(out)
    assert (out / ".cache" / "demo_media" / "seed0" / "recordings.csv").is_file()
    assert {s.partition for s in manifest.shards.values()} >= {"train", "dev"}
    result = validate_dataset(out)
    assert result.ok, result.errors
    # A rerun reuses the media and skips every recording.
    stamps = {rid: (out / s.path).stat().st_mtime_ns for rid, s in manifest.shards.items()}
    assert run_build("demo", out, "--window", "2.0") == 0
    assert {rid: (out / s.path).stat().st_mtime_ns for rid, s in manifest.shards.items()} == stamps


def _whole_signal_frames(path, num_frames, norm):
    """The audio frames as the whole-signal API gives them (read, normalise, frame)."""
    from emorec.media.audio import frame_audio, normalize_audio, read_audio

    whole = read_audio(path)
    return frame_audio(normalize_audio(whole[: num_frames * FRAME_SAMPLES], norm), num_frames)


@pytest.mark.parametrize("norm", ["none", "recording"])
@pytest.mark.parametrize("label_s, frames", [(None, None), (3.4, 85), (2.72, 68)])
def test_streamed_audio_frames_equal_the_whole_signal_path(tmp_path, norm, label_s, frames):
    from emorec.recording import BuildOptions, RecordingSource, prepare_recording

    # 3.013 s at 44.1 kHz: 48208 samples at 16 kHz, a partial last frame; the
    # labels (when given) make the recording longer (zero-padded) or shorter (trimmed).
    speech_wav(tmp_path / "a.wav", rate=44_100, seconds=3.013)
    labels = None
    if label_s is not None:
        times = np.arange(1, round(label_s / FRAME_PERIOD) + 1) * FRAME_PERIOD
        write_labels(tmp_path / "a.csv", times, 0 * times, 0 * times)
        labels = tmp_path / "a.csv"
    source = RecordingSource("a", "train", "s", audio=tmp_path / "a.wav", labels=labels)
    # With labels as the longer stream, audio still sets the length: pad/trim go to labels.
    options = BuildOptions(modalities=("audio",), audio_norm=norm, tolerance_s=1.0)
    prepared = prepare_recording(source, options)
    assert prepared.num_frames == 75 and prepared.audio_plan.samples == 48_208
    got = np.stack([f.audio for f in prepared.frames()])
    want = _whole_signal_frames(tmp_path / "a.wav", prepared.num_frames, norm)
    assert got.shape == want.shape == (75, FRAME_SAMPLES) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
    np.testing.assert_array_equal(prepared.audio, got)
    if norm == "recording":
        real = got.ravel()[:48_208].astype(np.float64)
        assert abs(real.mean()) < 1e-6 and abs(real.std() - 1.0) < 1e-5
    if label_s is None:
        assert prepared.report == []
    else:
        assert len(prepared.report) == 1 and f"labels {tmp_path / 'a.csv'} covers" in prepared.report[0]
        assert f"({frames} frames)" in prepared.report[0]


def test_audio_frames_pad_past_the_end_with_zeros_after_normalisation(tmp_path):
    from emorec.recording import AudioPlan, BuildOptions, PreparedRecording, RecordingSource

    speech_wav(tmp_path / "b.wav", rate=16_000, seconds=1.0)  # 16000 samples = 25 frames
    source = RecordingSource("b", "train", "s", audio=tmp_path / "b.wav")
    options = BuildOptions(modalities=("audio",))
    # Eight frames more than the audio holds (a longer reference), shifted and scaled.
    plan = AudioPlan(tmp_path / "b.wav", 16_000, mean=0.25, std=2.0)
    prepared = PreparedRecording(source, options, 33, plan, None, 0, None, [])
    got = np.stack([f.audio for f in prepared.frames()])
    whole = _whole_signal_frames(tmp_path / "b.wav", 25, "none").ravel().astype(np.float64)
    np.testing.assert_allclose(got[:25].ravel(), (whole - 0.25) / 2.0, rtol=0, atol=1e-7)
    assert got.shape == (33, FRAME_SAMPLES) and not got[25:].any()


def test_streamed_audio_memory_does_not_grow_with_the_recording(tmp_path):
    import tracemalloc

    from emorec.recording import BuildOptions, RecordingSource, prepare_recording

    options = BuildOptions(modalities=("audio",), audio_norm="recording")

    def traced_peak(seconds):
        path = tmp_path / f"{seconds}.wav"
        speech_wav(path, rate=44_100, seconds=seconds)
        source = RecordingSource("long", "train", "s", audio=path)
        tracemalloc.start()
        try:
            prepared = prepare_recording(source, options)
            frames = sum(1 for _ in prepared.frames())
            return frames, prepared.audio_plan.samples * 4, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    traced_peak(2)  # first-use allocations (filter design, imports) out of the way
    short = traced_peak(10)
    frames, whole_bytes, peak = traced_peak(40)
    # 40 s at 16 kHz is 2.56 MB as float32; about one 1 s block and the
    # resampler's run of 44.1 kHz inputs (in float64 inside upfirdn) are held.
    assert short[0] == 250 and frames == 1000 and whole_bytes == 2_560_000
    assert peak < 1.1 * short[2] and peak < 0.7 * whole_bytes, (short[2], peak)


def test_default_demo_jobs_gives_each_worker_two_recordings(monkeypatch):
    from emorec.demo.cache import default_demo_jobs

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert [default_demo_jobs(n) for n in (1, 2, 3, 6, 8)] == [1, 1, 1, 2, 2]
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert [default_demo_jobs(n) for n in (2, 6, 8, 40)] == [1, 3, 4, 4]
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert default_demo_jobs(8) == 1
